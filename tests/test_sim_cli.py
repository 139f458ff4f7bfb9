"""``serve_main`` as a process: prints the URL, writes credentials, serves, stops on SIGINT."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
import sys
import time
from pathlib import Path

import aiohttp

from connex_async.testing.cli import build_parser

SCRIPT = "import sys; from connex_async.testing.cli import serve_main; sys.exit(serve_main(sys.argv[1:]))"


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["--portfolios", "5", "--credentials-out", "x.json"])
    assert (args.portfolios, args.zoomex, args.port, args.host, args.seed) == (5, 10, 8080, "127.0.0.1", 0)
    assert args.credentials_out == "x.json"


async def test_serve_process(tmp_path: Path) -> None:
    creds_file = tmp_path / "creds.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SCRIPT,
        "--portfolios",
        "3",
        "--zoomex",
        "2",
        "--port",
        "0",
        "--seed",
        "4",
        "--credentials-out",
        str(creds_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        base_url = line.decode().strip()
        assert base_url.startswith("http://127.0.0.1:")
        rows = json.loads(creds_file.read_text())
        assert [r["label"] for r in rows] == ["cx-0001", "cx-0002", "cx-0003", "zx-0001", "zx-0002"]
        assert {r["venue"] for r in rows} == {"connex", "zoomex"}
        assert creds_file.stat().st_mode & 0o077 == 0
        cx = rows[0]
        nonce = str(int(time.time()))
        sig = hmac.new(cx["secret"].encode(), f"&{nonce}".encode(), hashlib.sha256).hexdigest()
        headers = {"X-MBX-APIKEY": cx["api_key"], "nonce": nonce, "signature": sig}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(base_url + "/api/v1/trading/position", headers=headers) as resp,
        ):
            assert resp.status == 200
            assert int((await resp.json())["code"]) in (200, 200000)
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
