"""Deterministic, realistic payloads for the simulated venues, drifting over time.

Everything derives from ``(seed, api_key)`` and a drift *step* (elapsed time divided by the drift
interval), so two runs with one seed serve the same values at the same step. Amounts are computed in
integers scaled by 10**22 and rendered as decimal strings with 18-22 fractional digits, as ConneX does;
Zoomex amounts have up to 8 digits and many ``""`` fields. Encoded rows are cached per step.
"""

from __future__ import annotations

import hashlib
import math
import random
import zlib
from typing import Any

import msgspec

__all__ = [
    "ConnexPortfolio",
    "Market",
    "ZoomexAccount",
    "derive_credentials",
]

_D = 22
SCALE: int = 10**_D
_POW10: list[int] = [10**i for i in range(_D + 1)]
_WAVE_N = 720
_WAVE = [round(math.sin(2 * math.pi * k / _WAVE_N) * 1_000_000) for k in range(_WAVE_N)]
_encode = msgspec.json.encode

# Real coins with a rough USD price; synthetic coins (T0001, ...) follow when a portfolio needs more rows.
_COIN_PRICES: dict[str, str] = {
    "USDT": "1",
    "BTC": "67012.5",
    "ETH": "3488.21",
    "USDC": "1",
    "SOL": "151.37",
    "BNB": "583.4",
    "XRP": "0.5231",
    "DOGE": "0.12345",
    "ADA": "0.4512",
    "AVAX": "35.12",
    "LINK": "14.233",
    "DOT": "7.012",
    "TRX": "0.1211",
    "TON": "6.523",
    "LTC": "80.31",
    "EOS": "0.8012",
    "OP": "2.341",
    "ARB": "1.1023",
    "SUI": "1.0234",
    "APT": "8.512",
}
_STABLE = frozenset({"USDT", "USDC"})
_REAL_COINS = list(_COIN_PRICES)
_EXCHANGES = ("BINANCE", "OKX")
_PERP_COINS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "BNB", "AVAX", "LINK")


def _scaled(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * SCALE + (int(frac.ljust(_D, "0")) if frac else 0)


def fmt(value: int, digits: int) -> str:
    """Render ``value`` (scaled by 10**22) with exactly ``digits`` fractional digits, truncating."""
    q = abs(value) // _POW10[_D - digits]
    if digits == 0:
        text = str(q)
    else:
        whole, frac = divmod(q, _POW10[digits])
        text = f"{whole}.{frac:0{digits}d}"
    return "-" + text if value < 0 and q else text


def fmt_short(value: int, digits: int = 8) -> str:
    """Like :func:`fmt` but without trailing zeros (``"37.3"``, ``"0"``)."""
    text = fmt(value, digits)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def wave(step: int, phase: int, amplitude_ppm: int) -> int:
    """A drift factor in ppm: ``1e6 + amplitude * sin(2 pi (step + phase) / 720)``."""
    return 1_000_000 + amplitude_ppm * _WAVE[(step + phase) % _WAVE_N] // 1_000_000


def derive_credentials(venue: str, seed: int, index: int) -> tuple[str, str]:
    """Deterministic ``(api_key, secret)`` for the ``index``-th account of ``venue``."""
    key = hashlib.sha256(f"{venue}:key:{seed}:{index}".encode()).hexdigest()
    secret = hashlib.sha256(f"{venue}:secret:{seed}:{index}".encode()).hexdigest()
    if venue == "zoomex":  # Bybit-style: 18-character key, 36-character secret
        return key[:18].upper(), secret[:36]
    return key[:32], secret


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


class Market:
    """Index and mark prices per coin, drifting +-2 % on a slow sine per drift step."""

    __slots__ = ("_base", "_phase", "_seed", "_text")

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._base: dict[str, int] = {c: _scaled(p) for c, p in _COIN_PRICES.items()}
        self._phase: dict[str, int] = {}
        self._text: dict[str, tuple[int, str]] = {}

    def price_text(self, coin: str, step: int) -> str:
        """:meth:`price` as a short decimal string (up to 8 digits), cached per step."""
        cached = self._text.get(coin)
        if cached is None or cached[0] != step:
            cached = (step, fmt_short(self.price(coin, step), 8))
            self._text[coin] = cached
        return cached[1]

    def base(self, coin: str) -> int:
        """The undrifted price of ``coin`` (scaled)."""
        price = self._base.get(coin)
        if price is None:  # synthetic coin: 0.01 .. 100 USD
            price = (_crc(f"{self._seed}:{coin}") % 10_000_000 + 10_000) * _POW10[_D - 5]
            self._base[coin] = price
        return price

    def price(self, coin: str, step: int) -> int:
        """The price of ``coin`` at drift ``step`` (scaled by 10**22)."""
        base = self.base(coin)
        if coin in _STABLE:
            return base
        phase = self._phase.get(coin)
        if phase is None:
            phase = _crc(f"{self._seed}:phase:{coin}") % _WAVE_N
            self._phase[coin] = phase
        return base * wave(step, phase, 20_000) // 1_000_000


def _coins_needed(n: int) -> list[str]:
    extra = max(0, (n + 1) // 2 - len(_REAL_COINS))
    return _REAL_COINS + [f"T{i:04d}" for i in range(1, extra + 1)]


def _amount(rng: random.Random, usd: float, price: int) -> int:
    """A random scaled amount worth about ``usd``, with random digits down to 10**-22."""
    units = int(usd * 10**8) * SCALE // price
    return units * _POW10[_D - 8] + rng.randrange(_POW10[_D - 8])


class _AssetRow:
    __slots__ = (
        "balance",
        "coin",
        "create_at",
        "debt",
        "digits",
        "discount",
        "exchange",
        "frozen",
        "phase",
        "static",
        "upnl_row",
    )

    def __init__(self, rng: random.Random, coin: str, exchange: str, price: int, now_ms: int) -> None:
        self.coin = coin
        self.exchange = exchange
        self.digits = rng.randint(18, 22)
        self.balance = _amount(rng, rng.uniform(5.0, 50_000.0), price)
        roll = rng.random()
        self.frozen = self.balance * rng.randint(1, 30) // 100 if roll < 0.2 else 0
        self.debt = self.balance * rng.randint(1, 10) // 100 if 0.2 <= roll < 0.3 else 0
        self.discount = 1_000_000 if coin in _STABLE else rng.choice((950_000, 900_000, 800_000))
        self.phase = rng.randrange(_WAVE_N)
        self.create_at = now_ms - rng.randint(86_400_000, 200 * 86_400_000)
        self.upnl_row = coin == "USDT" and exchange == "BINANCE"
        self.static: dict[str, Any] = {}


class _PositionSpec:
    __slots__ = (
        "avg",
        "coin",
        "create_at",
        "digits",
        "exchange",
        "fee",
        "funding",
        "leverage",
        "liq_null",
        "max_leverage",
        "position_id",
        "qty",
        "side",
        "sym",
        "tpsl",
    )

    def __init__(self, rng: random.Random, coin: str, exchange: str, market: Market, now_ms: int) -> None:
        self.coin = coin
        self.exchange = exchange
        self.sym = f"{exchange}_PERP_{coin}_USDT"
        self.position_id = str(rng.randrange(10**16, 10**17))
        self.side = rng.choice(("LONG", "SHORT", "NONE", "NET"))
        price = market.base(coin)
        qty = _amount(rng, rng.uniform(50.0, 20_000.0), price)
        qty = qty // _POW10[_D - 3] * _POW10[_D - 3] or _POW10[_D - 3]  # 3 decimals, never 0
        short = self.side == "SHORT" or (self.side in ("NONE", "NET") and rng.random() < 0.5)
        self.qty = -qty if short else qty
        self.avg = price * rng.randint(970_000, 1_030_000) // 1_000_000 // _POW10[_D - 4] * _POW10[_D - 4]
        self.leverage = rng.choice((1, 2, 3, 5, 10, 20, 25, 50))
        self.max_leverage = max(self.leverage, rng.choice((20, 50, 75, 100, 125)))
        self.fee = _amount(rng, rng.uniform(0.01, 20.0), SCALE)
        self.funding = _amount(rng, rng.uniform(0.0, 3.0), SCALE) * rng.choice((1, -1, 0))
        self.digits = rng.randint(8, 18)
        self.liq_null = self.leverage <= 2 or rng.random() < 0.15
        self.tpsl = rng.choice((0, 1, 1, 2))  # absent, [], [algo order]
        self.create_at = now_ms - rng.randint(60_000, 30 * 86_400_000)


class ConnexPortfolio:
    """One ConneX (sub-)portfolio: its key, its asset rows and positions, encoded once per step."""

    __slots__ = (
        "_asset_bytes",
        "_asset_step",
        "_by_exchange",
        "_extras",
        "_pos_cache",
        "_pos_step",
        "_zero_syms",
        "api_key",
        "code_prefix",
        "label",
        "market",
        "portfolio_id",
        "positions",
        "rows",
        "secret",
    )

    def __init__(
        self,
        api_key: str,
        secret: str,
        label: str,
        seed: int,
        *,
        market: Market,
        n_assets: int,
        n_positions: int,
        now_ms: int,
        code_variants: bool,
    ) -> None:
        rng = random.Random(f"connex:{seed}:{api_key}")
        self.api_key = api_key
        self.secret = secret
        self.label = label
        self.market = market
        self.portfolio_id = str(rng.randrange(10**15, 3 * 10**15))
        code = "200000"
        if code_variants:
            roll = rng.random()
            code = "200" if roll < 0.1 else '"200000"' if roll < 0.2 else "200000"
        self.code_prefix = f'{{"code":{code},"message":"Success","data":'.encode()
        pairs = [(c, e) for c in _coins_needed(n_assets) for e in _EXCHANGES]
        chosen = rng.sample(pairs[:40], n_assets) if n_assets <= 40 else pairs[:n_assets]
        self.rows = [_AssetRow(rng, c, e, market.base(c), now_ms) for c, e in chosen]
        self._by_exchange = {ex: [i for i, r in enumerate(self.rows) if r.exchange == ex] for ex in _EXCHANGES}
        # Unknown fields that only some portfolios carry: usd/btc values, legacy total, borrow fields.
        self._extras = (rng.random() < 0.5, rng.random() < 0.3, rng.random() < 0.3)
        perps = [(c, e) for c in _PERP_COINS for e in _EXCHANGES]
        open_pairs = rng.sample(perps, min(n_positions, len(perps)))
        self.positions = [_PositionSpec(rng, c, e, market, now_ms) for c, e in open_pairs]
        rest = [p for p in perps if p not in open_pairs]
        self._zero_syms = [f"{e}_PERP_{c}_USDT" for c, e in rng.sample(rest, min(len(rest), rng.randint(1, 3)))]
        self._asset_step = -1
        self._asset_bytes: list[bytes] = []
        self._pos_step = -1
        self._pos_cache: list[tuple[str, str, bool, bytes]] = []

    def asset_rows(self, step: int, now_ms: int, exchange: str | None) -> list[bytes]:
        """The encoded asset rows at ``step``, in stable order, optionally of one exchange."""
        if step != self._asset_step:
            self._asset_bytes = [self._encode_asset(r, step, now_ms) for r in self.rows]
            self._asset_step = step
        if exchange is None:
            return self._asset_bytes
        rows = self._asset_bytes
        return [rows[i] for i in self._by_exchange.get(exchange, ())]

    def _static_asset(self, r: _AssetRow) -> dict[str, Any]:
        """The fields of a row that do not drift (balances move only with trades), in wire order."""
        d = r.digits
        available = r.balance - r.frozen
        debt = fmt(r.debt, d) if r.debt else "0"
        row: dict[str, Any] = {
            "portfolioId": self.portfolio_id,
            "coin": r.coin,
            "exchangeType": r.exchange,
            "balance": fmt(r.balance, d),
            "available": fmt(available, d),
            "frozen": fmt(r.frozen, d) if r.frozen else "0",
            "debt": debt,
            "equity": fmt(r.balance, d),
            "createAt": str(r.create_at),
            "updateAt": "",
            "borrow": debt,
            "overdraw": "0",
            "indexPrice": "",
            "marginValue": "",
            "virtualBorrow": "0",
            "upnl": "0",
            "debtMargin": fmt(r.debt * self.market.base(r.coin) // SCALE, d) if r.debt else "0",
            "perpMargin": fmt(r.balance // 10, d) if r.upnl_row else "0",
            "maxTransferable": fmt(max(0, available - r.debt), d),
            "equityValue": "",
        }
        usd, legacy, borrow = self._extras
        if usd:
            row["usdtValue"] = row["btcValue"] = ""
        if legacy:
            row["total"] = row["balance"]
        if borrow:
            row["borrowAmount"] = debt
            row["interest"] = "0"
        return row

    def _encode_asset(self, r: _AssetRow, step: int, now_ms: int) -> bytes:
        if not r.static:
            r.static = self._static_asset(r)
        row = dict(r.static)
        d = r.digits
        market = self.market
        equity = r.balance
        if r.upnl_row:
            upnl = r.balance * _WAVE[(3 * step + r.phase) % _WAVE_N] // 50_000_000
            equity += upnl
            row["upnl"] = fmt(upnl, d)
            row["equity"] = fmt(equity, d)
        value = equity * market.price(r.coin, step) // SCALE
        row["updateAt"] = str(now_ms - r.phase)
        row["indexPrice"] = market.price_text(r.coin, step)
        row["marginValue"] = fmt(value * r.discount // 1_000_000, 22)
        row["equityValue"] = fmt(value, d)
        if "usdtValue" in row:
            row["usdtValue"] = fmt(value, 18)
            row["btcValue"] = fmt(value * SCALE // market.price("BTC", step), 18)
        return _encode(row)

    def position_rows(self, step: int, now_ms: int) -> list[tuple[str, str, bool, bytes]]:
        """``(sym, exchange, is_zero, encoded row)`` for every position at ``step``."""
        if step != self._pos_step:
            rows = [(p.sym, p.exchange, False, self._encode_position(p, step, now_ms)) for p in self.positions]
            for sym in self._zero_syms:
                exchange = sym.partition("_")[0]
                rows.append((sym, exchange, True, self._encode_zero_position(sym, step, now_ms)))
            self._pos_cache = rows
            self._pos_step = step
        return self._pos_cache

    def _encode_position(self, p: _PositionSpec, step: int, now_ms: int) -> bytes:
        d = p.digits
        mark = self.market.price(p.coin, step)
        qty = p.qty
        upnl = (mark - p.avg) * qty // SCALE
        value = abs(qty) * mark // SCALE
        margin = value // p.leverage
        mm = value * 8 // 1000
        row: dict[str, Any] = {
            "positionId": p.position_id,
            "portfolioId": self.portfolio_id,
            "sym": p.sym,
            "positionSide": p.side,
            "positionMargin": fmt(margin, d),
            "positionMM": fmt(mm, d),
            "positionQty": fmt_short(qty, 3),
            "positionValue": fmt(value, d),
            "unrealizedPNL": fmt(upnl, d),
            "unrealizedPNLRate": fmt(upnl * SCALE // margin if margin else 0, 18),
            "avgPrice": fmt_short(p.avg, 4),
            "markPrice": fmt(mark, 8),
            "leverage": str(p.leverage),
            "maxLeverage": str(p.max_leverage),
            "riskLevel": "1" if p.leverage < 20 else "2",
            "fee": fmt(p.fee, 8),
            "fundingFee": fmt_short(p.funding, 8),
            "createAt": str(p.create_at),
            "updateAt": str(now_ms - 17),
            "liqPrice": None,
        }
        if not p.liq_null:
            factor = 1_000_000 - 900_000 // p.leverage if qty > 0 else 1_000_000 + 900_000 // p.leverage
            row["liqPrice"] = fmt(p.avg * factor // 1_000_000, 18)
        if p.tpsl == 1:
            row["tpslOrder"] = []
        elif p.tpsl == 2:
            row["tpslOrder"] = [
                {
                    "algoOrderId": str(int(p.position_id) + 7),
                    "algoOrderType": "TPSL",
                    "sym": p.sym,
                    "side": "SELL" if qty > 0 else "BUY",
                    "orderQty": fmt_short(abs(qty), 3),
                    "orderState": "NEW",
                    "tpTriggerPrice": fmt_short(p.avg * (11 if qty > 0 else 9) // 10, 4),
                    "slTriggerPrice": fmt_short(p.avg * (9 if qty > 0 else 11) // 10, 4),
                    "createAt": str(p.create_at + 1000),
                }
            ]
        return _encode(row)

    def _encode_zero_position(self, sym: str, step: int, now_ms: int) -> bytes:
        coin = sym.split("_")[2]
        return _encode(
            {
                "positionId": "",
                "portfolioId": self.portfolio_id,
                "sym": sym,
                "positionSide": "NONE",
                "positionMargin": "0",
                "positionMM": "0",
                "positionQty": "0",
                "positionValue": "0",
                "unrealizedPNL": "0",
                "unrealizedPNLRate": "0",
                "avgPrice": "0",
                "markPrice": fmt(self.market.price(coin, step), 8),
                "leverage": "10",
                "maxLeverage": "75",
                "riskLevel": "1",
                "fee": "0",
                "fundingFee": "0",
                "createAt": str(now_ms - 86_400_000),
                "updateAt": str(now_ms - 86_400_000),
                "liqPrice": None,
                "tpslOrder": [],
            }
        )


_WALLET_COINS = ("BTC", "ETH", "USDT", "USDC", "XRP", "EOS", "SOL", "DOGE")


class _WalletCoin:
    __slots__ = ("coin", "cum_realised", "order_im", "phase", "position_im", "upnl_amp", "wallet")

    def __init__(self, rng: random.Random, coin: str, market: Market, zero: bool) -> None:
        self.coin = coin
        self.phase = rng.randrange(_WAVE_N)
        if zero:
            self.wallet = self.order_im = self.position_im = self.upnl_amp = 0
        else:
            self.wallet = _amount(rng, rng.uniform(10.0, 80_000.0), market.base(coin))
            self.position_im = self.wallet * rng.randint(0, 20) // 100
            self.order_im = self.wallet * rng.randint(0, 3) // 100
            self.upnl_amp = self.wallet // rng.randint(50, 400) if self.position_im else 0
        self.cum_realised = _amount(rng, rng.uniform(0.0, 5_000.0), market.base(coin)) * rng.choice((1, -1))


class ZoomexAccount:
    """One Zoomex account (UID): its key and coin holdings, answered for UNIFIED or CONTRACT."""

    __slots__ = ("_cache", "_cache_step", "api_key", "coins", "has_bonus", "label", "market", "secret")

    def __init__(self, api_key: str, secret: str, label: str, seed: int, market: Market) -> None:
        rng = random.Random(f"zoomex:{seed}:{api_key}")
        self.api_key = api_key
        self.secret = secret
        self.label = label
        self.market = market
        held = rng.sample(_WALLET_COINS, rng.randint(3, 6))
        if "USDT" not in held:
            held[0] = "USDT"
        zero = set(rng.sample(held[1:], min(2, len(held) - 1)))
        self.coins = {c: _WalletCoin(rng, c, market, c in zero) for c in held}
        self.has_bonus = rng.random() < 0.5
        self._cache_step = -1
        self._cache: dict[tuple[str, str | None], bytes] = {}

    def wallet_result(self, account_type: str, coins: str | None, step: int) -> bytes:
        """The encoded ``result`` object for ``accountType`` and the raw ``coin`` parameter."""
        if step != self._cache_step:
            self._cache.clear()
            self._cache_step = step
        key = (account_type, coins)
        body = self._cache.get(key)
        if body is None:
            body = self._encode(account_type, coins, step)
            if len(self._cache) < 64:
                self._cache[key] = body
        return body

    def _unheld(self, coin: str) -> _WalletCoin:
        row = _WalletCoin(random.Random(coin), coin, self.market, True)
        row.cum_realised = 0
        return row

    def _encode(self, account_type: str, coin_param: str | None, step: int) -> bytes:
        unified = account_type == "UNIFIED"
        if coin_param:
            names = [c for c in coin_param.split(",") if c]
            holdings = [self.coins.get(c) or self._unheld(c) for c in names]
        else:
            holdings = [c for c in self.coins.values() if c.wallet]
        rows: list[dict[str, Any]] = []
        totals = [0, 0, 0, 0]  # wallet, upnl, initial margin, maintenance margin (USD, scaled)
        for h in holdings:
            price = self.market.price(h.coin, step)
            wallet = h.wallet * wave(step, h.phase, 500) // 1_000_000
            upnl = h.upnl_amp * _WAVE[(5 * step + h.phase) % _WAVE_N] // 1_000_000
            equity = wallet + upnl
            mm = h.position_im // 4
            row: dict[str, Any] = {
                "coin": h.coin,
                "equity": fmt_short(equity),
                "usdValue": fmt_short(equity * price // SCALE) if unified else "",
                "walletBalance": fmt_short(wallet),
                "borrowAmount": "0" if unified else "",
                "availableToBorrow": "",
                "availableToWithdraw": "" if unified else fmt_short(wallet - h.position_im - h.order_im),
                "accruedInterest": "0" if unified else "",
                "totalOrderIM": fmt_short(h.order_im),
                "totalPositionIM": fmt_short(h.position_im),
                "totalPositionMM": fmt_short(mm) if unified else "",
                "unrealisedPnl": fmt_short(upnl),
                "cumRealisedPnl": fmt_short(h.cum_realised),
            }
            if self.has_bonus:
                row["bonus"] = "0"
            if unified:
                row.update(locked="0", collateralSwitch=True, marginCollateral=True, spotHedgingQty="0")
            rows.append(row)
            totals[0] += wallet * price // SCALE
            totals[1] += upnl * price // SCALE
            totals[2] += (h.position_im + h.order_im) * price // SCALE
            totals[3] += mm * price // SCALE
        account: dict[str, Any] = {"accountType": account_type}
        if unified:
            wallet_usd, upl, im, mm_total = totals
            margin = wallet_usd + upl
            account.update(
                accountIMRate=fmt_short(im * SCALE // margin, 4) if margin > 0 else "0",
                accountMMRate=fmt_short(mm_total * SCALE // margin, 4) if margin > 0 else "0",
                totalEquity=fmt_short(margin),
                totalWalletBalance=fmt_short(wallet_usd),
                totalMarginBalance=fmt_short(margin),
                totalAvailableBalance=fmt_short(margin - im),
                totalPerpUPL=fmt_short(upl),
                totalInitialMargin=fmt_short(im),
                totalMaintenanceMargin=fmt_short(mm_total),
                accountLTV="0",
            )
        else:
            for name in (
                "accountIMRate",
                "accountMMRate",
                "totalEquity",
                "totalWalletBalance",
                "totalMarginBalance",
                "totalAvailableBalance",
                "totalPerpUPL",
                "totalInitialMargin",
                "totalMaintenanceMargin",
                "accountLTV",
            ):
                account[name] = ""
        account["coin"] = rows
        return _encode({"list": [account]})
