"""The account side of the venue: wallet, margin, positions and the account's modes.

Answers the balance, account and positionRisk queries from the positions and
current prices (cross margin: losses count against the available balance,
gains do not), and takes the per-symbol settings (leverage, margin type) with
Binance's refusals. The account's modes are switches a test sets:
``dual_side`` (hedge mode: -4061 without positionSide, -1106 for reduceOnly,
two legs in positionRisk) and ``multi_assets`` (-4168 for ISOLATED).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.fakebinance.params import Params, VenueError, fmt, mandatory
from tests.fakebinance.state import VenueState


class Account(VenueState):
    """Balance, account and positionRisk answers; leverage, margin type and position side."""

    def unrealized(self, symbol: str) -> Decimal:
        pos = self.positions[symbol]
        return (self.prices[symbol] - pos.entry_price) * pos.amount if pos.amount else Decimal(0)

    def used_margin(self) -> Decimal:
        return sum(
            (abs(p.amount) * p.entry_price / p.leverage for p in self.positions.values()),
            Decimal(0),
        )

    def available(self) -> Decimal:
        with self.lock:
            upnl = sum((self.unrealized(s) for s in self.symbols), Decimal(0))
            return self.wallet + min(upnl, Decimal(0)) - self.used_margin()

    def balances(self) -> list[dict[str, Any]]:
        with self.lock:
            upnl = sum((self.unrealized(s) for s in self.symbols), Decimal(0))
            available = self.available()
            return [
                {
                    "accountAlias": "SgsR",
                    "asset": "USDT",
                    "balance": str(self.wallet),
                    "crossWalletBalance": str(self.wallet),
                    "crossUnPnl": str(upnl),
                    "availableBalance": str(available),
                    "maxWithdrawAmount": str(available),
                    "marginAvailable": True,
                    "updateTime": self._clock(),
                }
            ]

    def position_risk(self, symbol: str | None, *, only_open: bool) -> list[dict[str, Any]]:
        with self.lock:
            if symbol:
                self.spec(symbol)
            out = []
            for pos in self.positions.values():
                if symbol and pos.symbol != symbol:
                    continue
                if only_open and not pos.amount:
                    continue
                mark = self.prices[pos.symbol]
                out.append(
                    {
                        "symbol": pos.symbol,
                        "positionSide": "BOTH",
                        "positionAmt": fmt(pos.amount),
                        "entryPrice": fmt(pos.entry_price),
                        "breakEvenPrice": fmt(pos.entry_price),
                        "markPrice": str(mark),
                        "unRealizedProfit": fmt(self.unrealized(pos.symbol)),
                        "liquidationPrice": "0",
                        "isolatedMargin": "0",
                        "notional": fmt(pos.amount * mark),
                        "marginAsset": "USDT",
                        "isolatedWallet": "0",
                        "initialMargin": fmt(abs(pos.amount) * mark / pos.leverage),
                        "maintMargin": "0",
                        "positionInitialMargin": fmt(abs(pos.amount) * mark / pos.leverage),
                        "openOrderInitialMargin": "0",
                        "adl": 0,
                        "bidNotional": "0",
                        "askNotional": "0",
                        "leverage": str(pos.leverage),
                        "marginType": "cross" if pos.margin_type == "CROSSED" else "isolated",
                        "isAutoAddMargin": "false",
                        "maxNotionalValue": "1000000",
                        "updateTime": pos.update_time,
                    }
                )
            return [leg for row in out for leg in self._legs(row)] if self.dual_side else out

    @staticmethod
    def _legs(row: dict[str, Any]) -> list[dict[str, Any]]:
        """Hedge mode: a LONG and a SHORT row per symbol; the one-way amount sits in its leg."""
        amount = Decimal(row["positionAmt"])
        long_leg = {**row, "positionSide": "LONG", "positionAmt": fmt(max(amount, Decimal(0)))}
        short_leg = {**row, "positionSide": "SHORT", "positionAmt": fmt(min(amount, Decimal(0)))}
        return [short_leg, long_leg]

    def account(self) -> dict[str, Any]:
        with self.lock:
            bal = self.balances()[0]
            return {
                "totalInitialMargin": str(self.used_margin()),
                "totalMaintMargin": "0",
                "totalWalletBalance": bal["balance"],
                "totalUnrealizedProfit": bal["crossUnPnl"],
                "totalMarginBalance": str(self.wallet + Decimal(bal["crossUnPnl"])),
                "totalPositionInitialMargin": str(self.used_margin()),
                "totalOpenOrderInitialMargin": "0",
                "totalCrossWalletBalance": bal["balance"],
                "totalCrossUnPnl": bal["crossUnPnl"],
                "availableBalance": bal["availableBalance"],
                "maxWithdrawAmount": bal["maxWithdrawAmount"],
                "assets": [
                    {
                        "asset": "USDT",
                        "walletBalance": bal["balance"],
                        "unrealizedProfit": bal["crossUnPnl"],
                        "marginBalance": str(self.wallet + Decimal(bal["crossUnPnl"])),
                        "availableBalance": bal["availableBalance"],
                        "maxWithdrawAmount": bal["maxWithdrawAmount"],
                        "updateTime": bal["updateTime"],
                    }
                ],
                "positions": self.position_risk(None, only_open=True),
            }

    def change_leverage(self, params: Params) -> dict[str, Any]:
        with self.lock:
            spec = self.spec(params.get("symbol"))
            raw = params.get("leverage")
            if not raw:
                raise mandatory("leverage")
            if not raw.isdigit() or not 1 <= int(raw) <= 125:
                raise VenueError(-4028, f"Leverage {raw} is not valid")
            pos = self.positions[spec.symbol]
            if pos.amount and pos.margin_type == "ISOLATED" and int(raw) < pos.leverage:
                raise VenueError(
                    -4161,
                    "Leverage reduction is not supported in Isolated Margin Mode "
                    "with open positions.",
                )
            pos.leverage = int(raw)
            return {"leverage": int(raw), "maxNotionalValue": "1000000", "symbol": spec.symbol}

    def change_margin_type(self, params: Params) -> dict[str, Any]:
        with self.lock:
            spec = self.spec(params.get("symbol"))
            wanted = (params.get("marginType") or "").upper()
            if wanted == "CROSS":
                wanted = "CROSSED"
            if wanted not in ("ISOLATED", "CROSSED"):
                raise mandatory("marginType")
            pos = self.positions[spec.symbol]
            if pos.margin_type == wanted:
                raise VenueError(-4046, "No need to change margin type.")
            if self.multi_assets and wanted == "ISOLATED":
                raise VenueError(
                    -4168, "Unable to adjust to isolated-margin mode under the Multi-Assets mode."
                )
            if pos.amount:
                raise VenueError(-4048, "Margin type cannot be changed if there exists position.")
            pos.margin_type = wanted
            return {"code": 200, "msg": "success"}

    def position_mode(self) -> dict[str, Any]:
        return {"dualSidePosition": self.dual_side}

    def multi_assets_mode(self) -> dict[str, Any]:
        return {"multiAssetsMargin": self.multi_assets}

    def _check_position_side(self, params: Params) -> None:
        """Hedge mode wants LONG/SHORT on every order and refuses reduceOnly."""
        side = params.get("positionSide", "BOTH")
        if self.dual_side and side not in ("LONG", "SHORT"):
            raise VenueError(-4061, "Order's position side does not match user's setting.")
        if not self.dual_side and side != "BOTH":
            raise VenueError(-4061, "Order's position side does not match user's setting.")
        if self.dual_side and "reduceOnly" in params:
            raise VenueError(-1106, "Parameter 'reduceOnly' sent when not required.")
