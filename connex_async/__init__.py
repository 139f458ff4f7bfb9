"""connex-async: asyncio SDK for ConneX (LiquidityTech) and Zoomex account data.

Every request is signed, limited per key by a window-safe limiter, retried when that can help,
and decoded into exact ``Decimal`` amounts. See the README for the picture.
"""

from connex_async.credentials import Credentials
from connex_async.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConnexAsyncError,
    DecodeError,
    LimiterTimeoutError,
    PagingError,
    PermissionDeniedError,
    PoolClosedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TimestampError,
    TransportError,
)
from connex_async.limits import RateLimit
from connex_async.metrics import AttemptEvent, MetricsSnapshot
from connex_async.poller import PollCancelledError, Poller, PollerStats, Update
from connex_async.pool import SessionPool
from connex_async.retry import RetryPolicy
from connex_async.venues.connex.client import ConnexClient
from connex_async.venues.connex.models import Asset, AssetsPage, Position, PositionSide, TpslOrder
from connex_async.venues.zoomex.client import ZoomexClient
from connex_async.venues.zoomex.models import ServerTime, WalletAccount, WalletBalance, WalletCoin

__all__ = [
    "APIError",
    "Asset",
    "AssetsPage",
    "AttemptEvent",
    "AuthenticationError",
    "BadRequestError",
    "CircuitOpenError",
    "ConnexAsyncError",
    "ConnexClient",
    "Credentials",
    "DecodeError",
    "LimiterTimeoutError",
    "MetricsSnapshot",
    "PagingError",
    "PermissionDeniedError",
    "PollCancelledError",
    "Poller",
    "PollerStats",
    "PoolClosedError",
    "Position",
    "PositionSide",
    "RateLimit",
    "RateLimitError",
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
    "ZoomexClient",
]
__version__ = "0.1.0"
