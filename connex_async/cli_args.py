"""Argument parsing for ``connex-async``: one-line errors and small typed value checkers.

Every command parser is a :class:`CommandParser`: a usage error is one line on stderr,
``connex-async <command>: <message>``, and exit status 2. Each checker below is an ``argparse``
``type=`` function that returns the parsed value or raises :class:`argparse.ArgumentTypeError`,
so that a new option gets the same treatment by naming its checker::

    poll.add_argument("--redis", type=url("redis", "rediss", "unix"), help="...")
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn
from urllib.parse import urlsplit

__all__ = [
    "OFF",
    "CommandParser",
    "count",
    "http_url",
    "interval",
    "non_negative_float",
    "port",
    "positive_float",
    "url",
]

OFF = "off"
"""The value that turns an endpoint's polling off (``--positions-every off``)."""


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``<prog>: <message>``) and exit status 2.

    argparse's own error output is the usage followed by the message; a script reading stderr, or a
    person scanning it, gets the one line that matters. ``--help`` still shows the usage.
    """

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: <message>`` on one line to stderr and exit 2."""
        one_line = "; ".join(part.strip() for part in message.splitlines() if part.strip())
        self.exit(2, f"{self.prog}: {one_line}\n")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (seconds, say)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def interval(text: str) -> float | None:
    """Seconds between polls (a finite number > 0), or ``off`` (``None``: do not poll)."""
    if text.strip().lower() == OFF:
        return None
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected seconds > 0 or 'off', got {text!r}") from None


def count(text: str) -> int:
    """A whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port, 0-65535 (0: any free port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port in 0-65535, got {text!r}")
    return value


def url(*schemes: str) -> Callable[[str], str]:
    """A checker for URLs with one of ``schemes`` and a host (``unix`` URLs need only a path)."""

    def check(text: str) -> str:
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a valid URL ({exc}): {text!r}") from None
        if parts.scheme.lower() not in schemes:
            allowed = " or ".join(f"{s}://" for s in schemes)
            raise argparse.ArgumentTypeError(f"expected a URL starting with {allowed}, got {text!r}")
        if not parts.hostname and not (parts.scheme == "unix" and parts.path):
            raise argparse.ArgumentTypeError(f"expected a URL with a host, got {text!r}")
        return text

    check.__name__ = "url"  # argparse names the checker in some messages
    return check


http_url = url("http", "https")
"""A base URL: ``http://`` or ``https://`` and a host."""
