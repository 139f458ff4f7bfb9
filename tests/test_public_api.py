"""What a new user meets first: the public names, client construction, error text and log lines."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import connex_async
from connex_async import ConnexClient, Credentials, RetryPolicy, SessionPool, ZoomexClient
from connex_async.testing import SimulatedVenue

ROOT = Path(__file__).resolve().parent.parent
CREDS = Credentials("k" * 16, "s" * 32, label="desk-7")
PUBLIC_MODULES = ("connex_async", "connex_async.testing", "connex_async.prometheus", "connex_async.fleet")


# -- public names ------------------------------------------------------------------------------


def test_version_matches_the_distribution() -> None:
    assert connex_async.__version__ == importlib.metadata.version("connex-async")


def imported_names(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` of every ``from connex_async... import name`` in a file."""
    tree = ast.parse(path.read_text())
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("connex_async")
        for alias in node.names
    ]


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_examples_use_only_the_public_api(example: str) -> None:
    for module, name in imported_names(ROOT / "examples" / example):
        assert module in PUBLIC_MODULES, f"{example} imports {name} from internal module {module}"
        assert name in importlib.import_module(module).__all__, f"{module}.{name} is not exported"


# -- clients: explicit parameters, no silent session leak --------------------------------------


def test_a_misspelt_client_option_is_a_type_error_naming_the_client() -> None:
    with pytest.raises(TypeError, match=r"ConnexClient.__init__\(\) got an unexpected keyword argument 'base_ur'"):
        ConnexClient(CREDS, base_ur="https://example.com")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"ZoomexClient.__init__\(\) got an unexpected keyword argument 'timout'"):
        ZoomexClient(CREDS, timout=3.0)  # type: ignore[call-arg]


def test_pool_options_build_the_private_pool_and_are_refused_with_a_shared_one() -> None:
    retry = RetryPolicy(max_retries=1)
    client = ConnexClient(CREDS, timeout=3.0, connector_limit=7, max_queue_wait=2.0, retry=retry, user_agent="bot/1")
    pool = client.pool
    assert (pool.timeout, pool.connector_limit, pool.max_queue_wait, pool.retry, pool.user_agent) == (
        3.0,
        7,
        2.0,
        retry,
        "bot/1",
    )
    assert ZoomexClient(CREDS).pool.timeout == SessionPool().timeout  # None keeps the pool's default
    with pytest.raises(ValueError, match="timeout: pool options apply only to a client's private pool"):
        ConnexClient(CREDS, pool=SessionPool(), timeout=3.0)


async def test_a_standalone_client_used_without_async_with_raises_instead_of_leaking() -> None:
    async with SimulatedVenue(connex_portfolios=1, zoomex_accounts=0) as venue:
        client = ConnexClient(venue.connex_credentials[0], base_url=venue.base_url)
        with pytest.raises(RuntimeError, match=r"ConnexClient\(label='cx-0001'\) is not open: use `async with"):
            await client.get_positions()
        assert client.pool.closed  # nothing was opened behind the user's back
        async with client:
            assert isinstance(await client.get_positions(), list)
        with pytest.raises(RuntimeError, match="is not open"):  # not silently reopened after close
            await client.get_positions()
        await client.open()
        try:
            assert isinstance(await client.get_positions(), list)
        finally:
            await client.close()


# -- types: mypy catches an update's data used as the wrong endpoint's --------------------------

MISUSE = """
from connex_async import ConnexClient, Credentials, Poller, equity_of

async def consume(poller: Poller) -> None:
    async for update in poller:
        if update.endpoint == "assets" and update.data is not None:
            print(update.data.accounts)          # a list of Asset has no .accounts
        if update.endpoint == "wallet" and update.data is not None:
            print(equity_of(update.data), update.data.accounts[0].total_equity)   # fine
            print(len(update.data))             # a WalletBalance has no len()

def clients(creds: Credentials) -> list[ConnexClient]:
    return [ConnexClient(creds, base_ur="https://x"), ConnexClient(creds, timeout="3")]  # a typo, a wrong type
"""


def test_mypy_catches_an_assets_update_used_as_a_wallet_and_a_misspelt_client_option(tmp_path: Path) -> None:
    source = tmp_path / "consumer.py"
    source.write_text(textwrap.dedent(MISUSE))
    # From the project root: mypy finds connex_async there (not through the editable install's
    # import hook, which it cannot follow) and reuses `make typecheck`'s cache.
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(source)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=180,
    )
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 4, proc.stdout
    assert 'consumer.py:7: error: "list[Asset]" has no attribute "accounts"' in errors[0]
    assert 'consumer.py:10: error: Argument 1 to "len" has incompatible type "WalletBalance"' in errors[1]
    # The pool options, spelled out once (client.PoolOptions), are checked by name and by type.
    assert 'consumer.py:13: error: Unexpected keyword argument "base_ur" for "ConnexClient"' in errors[2]
    assert 'consumer.py:13: error: Argument "timeout" to "ConnexClient" has incompatible type "str"' in errors[3]
