"""Loading portfolios for ``connex-async poll``: a JSON or TOML file, or environment variables.

File: a list of entries (JSON array, or TOML ``[[portfolio]]`` tables), each with ``label``,
``venue`` (``connex`` or ``zoomex``), ``api_key``, ``secret`` and optionally ``limit_group`` and
``account_type`` (Zoomex). Environment: ``CONNEX_API_KEY`` / ``CONNEX_API_SECRET`` and
``ZOOMEX_API_KEY`` / ``ZOOMEX_API_SECRET`` for one portfolio each. Any error names the entry at
fault and nothing starts; no error message ever contains a secret.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connex_async.credentials import Credentials

__all__ = ["ConfigError", "PortfolioConfig", "load_env", "load_file", "load_portfolios"]

VENUES = ("connex", "zoomex")
_ALLOWED = {"label", "venue", "api_key", "secret", "limit_group", "account_type"}


class ConfigError(ValueError):
    """The credentials file or environment is unusable; the message names the entry at fault."""


@dataclass(frozen=True, slots=True)
class PortfolioConfig:
    """One portfolio to poll."""

    venue: str
    credentials: Credentials
    account_type: str = "UNIFIED"


def load_file(path: str | Path) -> list[PortfolioConfig]:
    """Read a ``.json`` or ``.toml`` credentials file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if path.suffix.lower() == ".toml":
        try:
            raw: Any = tomllib.loads(text).get("portfolio")
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        if raw is None:
            raise ConfigError(f"{path}: expected [[portfolio]] tables")
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: expected a non-empty list of portfolio entries")
    entries = [_entry(f"{path}: entry {i + 1}", item) for i, item in enumerate(raw)]
    _check_unique(str(path), entries)
    return entries


def load_env(environ: Mapping[str, str] | None = None) -> list[PortfolioConfig]:
    """One portfolio per venue whose ``<VENUE>_API_KEY`` and ``<VENUE>_API_SECRET`` are set."""
    env = os.environ if environ is None else environ
    found = []
    for venue in VENUES:
        key, secret = env.get(f"{venue.upper()}_API_KEY"), env.get(f"{venue.upper()}_API_SECRET")
        if key is None and secret is None:
            continue
        item = {"venue": venue, "api_key": key, "secret": secret, "label": env.get(f"{venue.upper()}_LABEL", venue)}
        found.append(_entry(f"environment {venue.upper()}_*", item))
    return found


def load_portfolios(path: str | Path | None, environ: Mapping[str, str] | None = None) -> list[PortfolioConfig]:
    """The portfolios of ``path`` if given, else of the environment; none at all is a ``ConfigError``.

    What every command needs before it starts: each key read and checked, or one clear error.
    """
    found = load_file(path) if path else load_env(environ)
    if not found:
        raise ConfigError(
            "no portfolios: pass a credentials file (--credentials FILE) or set CONNEX_API_KEY / CONNEX_API_SECRET"
        )
    return found


def _entry(where: str, item: Any) -> PortfolioConfig:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a table/object, got {type(item).__name__}")
    unknown = set(item) - _ALLOWED
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_ALLOWED)}")
    venue = item.get("venue")
    if venue not in VENUES:
        raise ConfigError(f"{where}: venue must be one of {list(VENUES)}, got {venue!r}")
    for name in ("api_key", "secret"):
        if item.get(name) is None:
            raise ConfigError(f"{where}: missing {name}")
    try:
        credentials = Credentials(
            item["api_key"], item["secret"], label=item.get("label"), limit_group=item.get("limit_group")
        )
    except ValueError as exc:  # Credentials' messages name the field, never the value
        raise ConfigError(f"{where}: {exc}") from None
    account_type = item.get("account_type", "UNIFIED")
    if account_type not in ("UNIFIED", "CONTRACT"):
        raise ConfigError(f"{where}: account_type must be UNIFIED or CONTRACT, got {account_type!r}")
    return PortfolioConfig(venue, credentials, account_type)


def _check_unique(where: str, entries: list[PortfolioConfig]) -> None:
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries, 1):
        label = entry.credentials.label
        if label in seen:
            raise ConfigError(f"{where}: entry {i}: label {label!r} already used by entry {seen[label]}")
        seen[label] = i
