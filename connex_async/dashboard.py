"""Turning a stream of poll updates into per-portfolio rows and a terminal table."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TextIO

from connex_async.metrics import MetricsSnapshot
from connex_async.poller import Update
from connex_async.venues.connex.models import Asset, Position
from connex_async.venues.zoomex.models import WalletBalance

__all__ = ["Dashboard", "PortfolioRow", "equity_of", "upnl_of"]

_CLEAR = "\x1b[H\x1b[2J"


def equity_of(data: Any) -> Decimal | None:
    """USD equity of a ConneX asset list or a Zoomex wallet (``None`` if the venue gives none)."""
    if isinstance(data, WalletBalance):
        totals = [a.total_equity for a in data.accounts if a.total_equity is not None]
        if totals:
            return sum(totals, Decimal(0))
        values = [c.usd_value for a in data.accounts for c in a.coins if c.usd_value is not None]
        return sum(values, Decimal(0)) if values else None
    if isinstance(data, list) and (not data or isinstance(data[0], Asset)):
        total = Decimal(0)
        for asset in data:
            if asset.equity_value is not None:
                total += asset.equity_value
            elif asset.index_price is not None:
                total += asset.equity * asset.index_price
        return total
    return None


def upnl_of(data: Any) -> Decimal | None:
    """Unrealized PnL of a ConneX position list or a Zoomex wallet."""
    if isinstance(data, WalletBalance):
        values = [a.total_perp_upl for a in data.accounts if a.total_perp_upl is not None]
        return sum(values, Decimal(0)) if values else None
    if isinstance(data, list) and (not data or isinstance(data[0], Position)):
        return sum((p.unrealized_pnl or Decimal(0) for p in data), Decimal(0))
    return None


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


@dataclass(slots=True)
class Dashboard:
    """Folds updates into rows; renders a live table (TTY) or plain lines (pipes, CI)."""

    rows: dict[str, PortfolioRow] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    updates: int = 0
    errors: int = 0
    started: float = field(default_factory=time.monotonic)

    def apply(self, update: Update) -> None:
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
            row.last_error = type(update.error).__name__
            return
        if update.endpoint in ("assets", "wallet"):
            row.equity = equity_of(update.data)
        if update.endpoint == "positions":
            row.upnl = upnl_of(update.data)
            row.positions = len(update.data)
        elif update.endpoint == "wallet":
            row.upnl = upnl_of(update.data)

    def table(self, metrics: MetricsSnapshot | None = None, limit: int = 20, title: str = "") -> str:
        """The table as text: the first ``limit`` portfolios and a totals line."""
        elapsed = max(1e-9, time.monotonic() - self.started)
        head = f"{'portfolio':<12} {'venue':<7} {'equity ≈USD':>18} {'uPnL':>14} {'pos':>4} {'last ms':>8} {'err':>4}"
        lines = [title, head, "-" * len(head)] if title else [head, "-" * len(head)]
        for row in sorted(self.rows.values(), key=lambda r: r.label)[:limit]:
            lines.append(
                f"{row.label:<12} {row.venue:<7} {_fmt(row.equity):>18} {_fmt(row.upnl):>14} "
                f"{'-' if row.positions is None else row.positions:>4} {row.last_latency * 1000:>8.1f} "
                f"{row.errors:>4}{'  ' + row.last_error if row.last_error else ''}"
            )
        if len(self.rows) > limit:
            lines.append(f"... and {len(self.rows) - limit} more portfolios")
        total = sum((r.equity for r in self.rows.values() if r.equity is not None), Decimal(0))
        lines.append("-" * len(head))
        lines.append(
            f"{len(self.rows)} portfolios, total equity ≈{_fmt(total)} USD, {self.updates} updates "
            f"({self.updates / elapsed:.0f}/s), {self.errors} errors, p50 {self.quantile(0.5) * 1000:.1f} ms"
        )
        if metrics is not None:
            lines.append(
                f"requests {metrics.requests}, retries {metrics.retries}, cooldowns {metrics.cooldowns}, "
                f"failed attempts {metrics.errors}"
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
        """Redraw in place on a terminal; otherwise print one summary line."""
        if tty:
            out.write(_CLEAR + self.table(metrics, title=title) + "\n")
        else:
            elapsed = time.monotonic() - self.started
            out.write(
                f"[{elapsed:6.1f}s] {len(self.rows)} portfolios, {self.updates} updates, {self.errors} errors, "
                f"p50 {self.quantile(0.5) * 1000:.1f} ms\n"
            )
        out.flush()


def _fmt(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"
