"""``python -m bot control status|halt|reduce|resume|flatten``: the operator's commands.

Exit codes (SPEC §11): 0 the bot acknowledged and recorded the command; 3 no
bot runs on that audit directory; 2 a usage error; 1 the command failed (the
bot refused it, answered too late, or flatten did not end flat).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from bot.config import default_audit_dir
from bot.control import protocol

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_BOT = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bot control",
        description="Command the bot running on an audit directory (SPEC §11).",
        epilog="Exit codes: 0 acknowledged and recorded, 1 failed, 2 usage error, 3 no bot.",
    )
    p.add_argument("command", choices=protocol.COMMANDS)
    p.add_argument("--reason", help="why (recorded in the trail)")
    p.add_argument(
        "--audit-dir", dest="audit_dir", help="the bot's audit directory (env AUDIT_DIR)"
    )
    p.add_argument("--json", action="store_true", help="print the bot's reply as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.reason is not None and not args.reason.strip():
        print("python -m bot control: --reason must not be empty", file=sys.stderr)
        return EXIT_USAGE
    audit_dir = args.audit_dir or default_audit_dir()
    fields = {"reason": args.reason} if args.reason else {}
    try:
        reply = protocol.request(audit_dir, args.command, **fields)
    except protocol.BotNotRunning as exc:
        print(f"python -m bot control: {exc}", file=sys.stderr)
        return EXIT_NO_BOT
    except protocol.ControlError as exc:
        print(f"python -m bot control: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(reply, indent=2))
    else:
        print(describe(args.command, reply))
    if not reply.get("ok"):
        if not args.json:
            print(f"python -m bot control: {reply.get('error')}", file=sys.stderr)
        return EXIT_FAILED
    if args.command == "flatten" and not reply.get("flat"):
        return EXIT_FAILED
    return EXIT_OK


def describe(command: str, reply: dict[str, Any]) -> str:
    """The reply for a human."""
    if not reply.get("ok"):
        return f"{command}: refused"
    by = reply.get("operator") or reply.get("rule") or reply.get("source")
    lines = [
        f"state: {reply.get('state')} (since {reply.get('since')}, by {by}: {reply.get('reason')})"
    ]
    if command == "flatten":
        if reply.get("flat"):
            lines.append(
                f"flat after {reply.get('time_to_flat_seconds')} s: "
                f"{reply.get('positions_closed')} position(s) closed, "
                f"{reply.get('orders_cancelled')} order(s) cancelled"
            )
        else:
            lines.append(f"NOT flat: {', '.join(reply.get('not_flat', []))}")
        lines.extend(f"error: {e}" for e in reply.get("errors", []))
    if command == "status":
        positions = reply.get("positions", [])
        lines.append(f"positions: {len(positions)}")
        lines.extend(
            f"  {p['symbol']} {p['amount']} @ {p['entry_price']} (unrealized {p['unrealized_pnl']})"
            for p in positions
        )
        orders = reply.get("open_orders", [])
        lines.append(f"open orders: {len(orders)}")
        lines.extend(
            f"  {o['symbol']} {o['type']} {o['side']} stop {o['stop_price']} "
            f"({o['client_order_id']})"
            for o in orders
        )
        protections = reply.get("protections", [])
        lines.append(f"protections: {len(protections)}")
        lines.extend(f"  {p['protection']} until {p['until'] or 'resumed'}" for p in protections)
        locks = reply.get("locks", [])
        lines.append(f"locks: {len(locks)}")
        lines.extend(f"  {lk['symbol']} {lk['protection']} until {lk['until']}" for lk in locks)
        lines.extend(f"error: {e}" for e in reply.get("errors", []))
    elif "changed" in reply and not reply["changed"]:
        lines.append("(unchanged)")
    lines.append(f"acknowledged after {reply.get('acked_after')} s")
    return "\n".join(lines)
