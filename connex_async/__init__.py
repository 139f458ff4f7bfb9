"""connex-async: asyncio SDK for ConneX and Zoomex account data."""

from connex_async.credentials import Credentials

__all__ = ["Credentials"]
__version__ = "0.1.0"
