"""connex-async: asyncio SDK for ConneX (LiquidityTech) and Zoomex account data.

Every request is signed, limited per key by a window-safe limiter, retried when that can help,
and decoded into exact ``Decimal`` amounts. See the README for the picture.

The public API is what this module exports (``__all__``), plus :mod:`connex_async.testing` (the
simulated venues and the pytest fixture) and :mod:`connex_async.prometheus` (the metrics exporter).
Other modules are internal and may change.
"""

from connex_async.client import BaseClient, PoolOptions
from connex_async.config import ConfigError, PortfolioConfig, load_portfolios
from connex_async.credentials import Credentials
from connex_async.dashboard import equity_of, upnl_of
from connex_async.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConnexAsyncError,
    DecodeError,
    LimiterTimeoutError,
    LimiterUnavailableError,
    PagingError,
    PermissionDeniedError,
    PoolClosedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TimestampError,
    TransportError,
)
from connex_async.jsonl import update_to_json
from connex_async.limiter_backend import LimiterBackend
from connex_async.limits import LimiterRegistry
from connex_async.metrics import AttemptEvent, EndpointSnapshot, MarginSnapshot, MetricsSnapshot, PathSnapshot
from connex_async.poller import (
    AssetsUpdate,
    PollCancelledError,
    Poller,
    PollerStats,
    PollUpdate,
    PositionsUpdate,
    Update,
    WalletUpdate,
)
from connex_async.pool import SessionPool
from connex_async.rate_limit import RateLimit
from connex_async.redis_limits import RedisLimiter
from connex_async.retry import RetryPolicy
from connex_async.venues.connex.client import ConnexClient
from connex_async.venues.connex.models import Asset, AssetsPage, Position, PositionSide, TpslOrder
from connex_async.venues.zoomex.client import ZoomexClient
from connex_async.venues.zoomex.models import ServerTime, WalletAccount, WalletBalance, WalletCoin

__all__ = [
    "APIError",
    "Asset",
    "AssetsPage",
    "AssetsUpdate",
    "AttemptEvent",
    "AuthenticationError",
    "BadRequestError",
    "BaseClient",
    "CircuitOpenError",
    "ConfigError",
    "ConnexAsyncError",
    "ConnexClient",
    "Credentials",
    "DecodeError",
    "EndpointSnapshot",
    "LimiterBackend",
    "LimiterRegistry",
    "LimiterTimeoutError",
    "LimiterUnavailableError",
    "MarginSnapshot",
    "MetricsSnapshot",
    "PagingError",
    "PathSnapshot",
    "PermissionDeniedError",
    "PollCancelledError",
    "PollUpdate",
    "Poller",
    "PollerStats",
    "PoolClosedError",
    "PoolOptions",
    "PortfolioConfig",
    "Position",
    "PositionSide",
    "PositionsUpdate",
    "RateLimit",
    "RateLimitError",
    "RedisLimiter",
    "RequestTimeoutError",
    "RetryPolicy",
    "ServerError",
    "ServerTime",
    "SessionPool",
    "TimestampError",
    "TpslOrder",
    "TransportError",
    "Update",
    "WalletAccount",
    "WalletBalance",
    "WalletCoin",
    "WalletUpdate",
    "ZoomexClient",
    "equity_of",
    "load_portfolios",
    "update_to_json",
    "upnl_of",
]
__version__ = "0.1.0"
