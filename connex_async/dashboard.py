"""Turning a stream of poll updates into per-portfolio rows and a terminal table."""

from __future__ import annotations

import shutil
import statistics
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TextIO

from connex_async.errors import ConnexAsyncError, one_line
from connex_async.metrics import MetricsSnapshot
from connex_async.poller import PollUpdate
from connex_async.venues.connex.models import Asset, Position
from connex_async.venues.zoomex.models import WalletBalance

__all__ = ["VENUE_NAMES", "Dashboard", "PortfolioRow", "describe_error", "equity_of", "plural", "upnl_of"]

_CLEAR = "\x1b[H\x1b[2J"
VENUE_NAMES = {"connex": "ConneX", "zoomex": "Zoomex"}
"""How each venue is spelled for people."""
_ERROR_TEXT = 72  # characters of an error message in a table row


def equity_of(data: list[Asset] | WalletBalance | None) -> Decimal | None:
    """USD equity of a ConneX asset list or a Zoomex wallet (``None`` if the venue gives none).

    ConneX: the sum of each asset's ``equity_value`` (else ``equity`` x ``index_price``). Zoomex:
    the accounts' ``total_equity``, else the sum of the coins' ``usd_value``.
    """
    if isinstance(data, WalletBalance):
        totals = [a.total_equity for a in data.accounts if a.total_equity is not None]
        if totals:
            return sum(totals, Decimal(0))
        values = [c.usd_value for a in data.accounts for c in a.coins if c.usd_value is not None]
        return sum(values, Decimal(0)) if values else None
    if isinstance(data, list):
        total = Decimal(0)
        for asset in data:
            if asset.equity_value is not None:
                total += asset.equity_value
            elif asset.index_price is not None:
                total += asset.equity * asset.index_price
        return total
    return None


def upnl_of(data: list[Position] | WalletBalance | None) -> Decimal | None:
    """Unrealized PnL of a ConneX position list or a Zoomex wallet (``None`` if the venue gives none)."""
    if isinstance(data, WalletBalance):
        values = [a.total_perp_upl for a in data.accounts if a.total_perp_upl is not None]
        return sum(values, Decimal(0)) if values else None
    if isinstance(data, list):
        return sum((p.unrealized_pnl or Decimal(0) for p in data), Decimal(0))
    return None


def describe_error(error: ConnexAsyncError, limit: int = _ERROR_TEXT) -> str:
    """``"<ErrorClass>: <message>"`` on one line, cut to ``limit`` characters."""
    return one_line(f"{type(error).__name__}: {error.detail}", limit)


def plural(n: int, word: str, words: str | None = None) -> str:
    """``"1 portfolio"``, ``"2 portfolios"``."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


@dataclass(slots=True)
class PortfolioRow:
    """What the table shows for one portfolio."""

    label: str
    venue: str
    equity: Decimal | None = None
    upnl: Decimal | None = None
    positions: int | None = None
    last_latency: float = 0.0
    updates: int = 0
    errors: int = 0
    last_error: str = ""
    """The newest error, ``"<ErrorClass>: <message>"``; empty once a later poll succeeds."""
    quarantined: bool = False


@dataclass(slots=True)
class Dashboard:
    """Folds updates into rows; renders a live table (TTY) or plain progress lines (pipes, CI).

    ``expected`` is how many portfolios each venue has (``{"connex": 300, "zoomex": 50}``), for
    progress lines such as ``12 of 350 portfolios polled (300 ConneX + 50 Zoomex)``.
    """

    expected: Mapping[str, int] = field(default_factory=dict)
    rows: dict[str, PortfolioRow] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    updates: int = 0
    errors: int = 0
    error_classes: Counter[str] = field(default_factory=Counter)
    last_error: str = ""
    """The newest error of any portfolio, ``"<ErrorClass>: <message>"`` (up to 200 characters)."""
    started: float = field(default_factory=time.monotonic)

    @property
    def ok_updates(self) -> int:
        """Updates that carried data."""
        return self.updates - self.errors

    def apply(self, update: PollUpdate) -> None:
        """Record one update."""
        row = self.rows.get(update.portfolio)
        if row is None:
            row = self.rows[update.portfolio] = PortfolioRow(update.portfolio, update.venue)
        row.updates += 1
        row.last_latency = update.latency
        self.updates += 1
        self.latencies.append(update.latency)
        if len(self.latencies) > 100_000:
            del self.latencies[:50_000]
        if update.error is not None:
            row.errors += 1
            self.errors += 1
            self.error_classes[type(update.error).__name__] += 1
            row.last_error = describe_error(update.error)
            self.last_error = describe_error(update.error, 200)
            row.quarantined = row.quarantined or update.quarantined
            return
        row.last_error = ""
        if update.endpoint == "assets":
            row.equity = equity_of(update.data)
        elif update.endpoint == "positions":
            row.upnl = upnl_of(update.data)
            row.positions = None if update.data is None else len(update.data)
        else:
            row.equity = equity_of(update.data)
            row.upnl = upnl_of(update.data)

    # -- text ------------------------------------------------------------------------------

    def venue_mix(self) -> str:
        """``"300 ConneX + 50 Zoomex"`` from ``expected`` (else from the rows seen so far)."""
        counts = dict(self.expected) or Counter(r.venue for r in self.rows.values())
        return " + ".join(f"{n:,} {VENUE_NAMES.get(v, v)}" for v, n in counts.items() if n)

    def errors_by_class(self, top: int = 3) -> str:
        """``"TransportError 28, ServerError 2"``: the commonest error classes."""
        return ", ".join(f"{name} {n:,}" for name, n in self.error_classes.most_common(top))

    def progress_line(self) -> str:
        """One line for logs and pipes: how many portfolios reported, updates, errors, latency."""
        elapsed = time.monotonic() - self.started
        total = sum(self.expected.values())
        if total:
            polled = f"{len(self.rows):,} of {plural(total, 'portfolio')} polled ({self.venue_mix()})"
        else:
            polled = f"{plural(len(self.rows), 'portfolio')} polled"
        errors = plural(self.errors, "error")
        if self.errors:
            errors += f" ({self.errors_by_class()})"
        return (
            f"[{elapsed:6.1f}s] {polled}: {plural(self.updates, 'update')}, {errors}, "
            f"p50 {self.quantile(0.5) * 1000:.1f} ms"
        )

    def failing_lines(self, limit: int = 10) -> list[str]:
        """``failing: <label> (<venue>): <why>`` for each portfolio whose newest poll failed, ``limit`` at most."""
        rows = sorted((r for r in self.rows.values() if r.last_error), key=lambda r: (r.venue, r.label))
        lines = [
            f"failing: {r.label} ({VENUE_NAMES.get(r.venue, r.venue)}): "
            f"{'quarantined: ' if r.quarantined else ''}{r.last_error}"
            for r in rows[:limit]
        ]
        if len(rows) > limit:
            lines.append(f"failing: ... and {len(rows) - limit:,} more")
        return lines

    def _visible(self, limit: int) -> list[PortfolioRow]:
        """Failing portfolios first, then the rest shared fairly between venues, ``limit`` in all."""
        ordered = sorted(self.rows.values(), key=lambda r: (r.venue, r.label))
        failing = [r for r in ordered if r.last_error][:limit]
        by_venue: dict[str, list[PortfolioRow]] = {}
        for row in ordered:
            if not row.last_error:
                by_venue.setdefault(row.venue, []).append(row)
        shown: list[PortfolioRow] = []
        queues = [rows[::-1] for rows in by_venue.values()]
        while len(failing) + len(shown) < limit and any(queues):
            for queue in queues:
                if queue and len(failing) + len(shown) < limit:
                    shown.append(queue.pop())
        return failing + sorted(shown, key=lambda r: (r.venue, r.label))

    def table(self, metrics: MetricsSnapshot | None = None, limit: int = 20, title: str = "") -> str:
        """The table as text: up to ``limit`` portfolios (failing ones first, every venue shown) and totals."""
        elapsed = max(1e-9, time.monotonic() - self.started)
        head = f"{'portfolio':<12} {'venue':<7} {'equity ≈USD':>18} {'uPnL':>14} {'pos':>4} {'last ms':>8} {'err':>4}"
        lines = [title, head, "-" * len(head)] if title else [head, "-" * len(head)]
        visible = self._visible(limit)
        for row in visible:
            why = ("  quarantined: " if row.quarantined else "  ") + row.last_error if row.last_error else ""
            lines.append(
                f"{row.label:<12} {row.venue:<7} {_fmt(row.equity):>18} {_fmt(row.upnl):>14} "
                f"{'-' if row.positions is None else row.positions:>4} {row.last_latency * 1000:>8.1f} "
                f"{row.errors:>4}{why}"
            )
        hidden = Counter(r.venue for r in self.rows.values()) - Counter(r.venue for r in visible)
        if hidden:
            mix = ", ".join(f"{n:,} {VENUE_NAMES.get(v, v)}" for v, n in sorted(hidden.items()))
            lines.append(f"... and {plural(hidden.total(), 'more portfolio')} ({mix})")
        lines.append("-" * len(head))
        for venue in sorted({r.venue for r in self.rows.values()}):
            rows = [r for r in self.rows.values() if r.venue == venue]
            equity = sum((r.equity for r in rows if r.equity is not None), Decimal(0))
            failing = sum(1 for r in rows if r.last_error)
            lines.append(
                f"{VENUE_NAMES.get(venue, venue)}: {plural(len(rows), 'portfolio')}, equity ≈{_fmt(equity)} USD"
                + (f", {failing:,} failing" if failing else "")
            )
        total = sum((r.equity for r in self.rows.values() if r.equity is not None), Decimal(0))
        errors = plural(self.errors, "error") + (f" ({self.errors_by_class()})" if self.errors else "")
        lines.append(
            f"{plural(len(self.rows), 'portfolio')}, total equity ≈{_fmt(total)} USD, "
            f"{plural(self.updates, 'update')} ({self.updates / elapsed:.0f}/s), {errors}, "
            f"p50 {self.quantile(0.5) * 1000:.1f} ms"
        )
        if metrics is not None:
            lines.append(
                f"requests {metrics.requests:,}, retries {metrics.retries:,}, cooldowns {metrics.cooldowns:,}, "
                f"failed attempts {metrics.errors:,}"
            )
        return "\n".join(lines)

    def quantile(self, q: float) -> float:
        """Quantile of poll latency in seconds."""
        if not self.latencies:
            return 0.0
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[min(98, max(0, int(q * 100) - 1))]

    def render(self, out: TextIO, tty: bool, metrics: MetricsSnapshot | None = None, title: str = "") -> None:
        """Redraw the table in place on a terminal (as many rows as fit); otherwise print a progress line."""
        if tty:
            rows = max(5, shutil.get_terminal_size((120, 40)).lines - 10)
            out.write(_CLEAR + self.table(metrics, limit=rows, title=title) + "\n")
        else:
            out.write(self.progress_line() + "\n")
        out.flush()


def _fmt(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"
