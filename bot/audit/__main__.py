"""Command line for the audit trail (SPEC §8): verify, tail, summary, compress.

    python -m bot.audit verify  [DIR]                 exit 0 intact, 1 not intact, 2 usage
    python -m bot.audit tail    [DIR] [--raw] [-n N] [--no-follow]
    python -m bot.audit summary [DIR] [--since T] [--until T] [--symbol S]
    python -m bot.audit compress [DIR]
    python -m bot.audit archive [DIR] --to s3://BUCKET/PREFIX [--retain-days N]
    python -m bot.audit verify  s3://BUCKET/PREFIX     an archived trail (SPEC §12)

DIR defaults to $AUDIT_DIR, else logs/audit. $AUDIT_HMAC_KEY is the key of an
HMAC-sealed trail. This module is the only reader of the environment in
bot.audit; the library functions take their inputs as arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from bot.audit import archive, chain
from bot.audit.compress import compress_closed_days
from bot.audit.indexcache import default_cache_dir
from bot.audit.reader import TrailFollower, open_trail_file
from bot.audit.summary import RATES, summarize
from bot.audit.verify import verify_trail

EXIT_OK, EXIT_NOT_INTACT, EXIT_USAGE = 0, 1, 2
EXIT_STORE = 3  # the object store is unreachable or refuses (archive, verify s3://)
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class UsageError(Exception):
    """Bad input from the user: exit code 2 with the message."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if (args.dir or "").startswith("s3://"):
            if args.command != "verify":
                raise UsageError(f"{args.command} takes a local directory, not {args.dir}")
            return _verify_s3(args)
        directory = _directory(args.dir)
        code: int = args.run(args, directory)
        if args.command == "verify" and args.archive:
            code = max(code, _against_archive(args, directory))
        return code
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except archive.ArchiveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STORE
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # `... | head`
        sys.stderr.close()
        return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot.audit",
        description="Inspect the hash-chained audit trail. DIR defaults to $AUDIT_DIR or "
        "logs/audit; set $AUDIT_HMAC_KEY for an HMAC-sealed trail.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    verify = commands.add_parser(
        "verify",
        help="check the hash chain of every day file and the head anchor",
        description="Check every record's hash, seq and prev, across day files and restarts, "
        "and the head anchor (which detects a truncated tail). Exit 0 when intact, 1 when not "
        "(naming the first bad file and line and what is wrong), 2 on a usage error. "
        "audit_gap and audit_recovered records are reported but are not tampering.",
    )
    verify.add_argument("--workers", type=int, default=None, help="processes (default: CPUs)")
    verify.add_argument(
        "--prefix",
        default=chain.FILE_PREFIX,
        choices=chain.TRAIL_PREFIXES,
        help="day file prefix: audit_ (default), or alerts_ for the alerts process's trail",
    )
    verify.set_defaults(run=_verify)
    verify.epilog = "DIR may be s3://BUCKET/PREFIX: verify an archived trail (see archive)."
    verify.add_argument(
        "--archive",
        metavar="s3://BUCKET/PREFIX",
        help="also compare each closed day with its archived digest (names edited days)",
    )

    tail = commands.add_parser(
        "tail",
        help="print the last records and follow new ones",
        description="Print the last N records, then follow the trail live (day rollover, "
        "compression and replacement included) until interrupted.",
    )
    tail.add_argument("--raw", action="store_true", help="print the JSON lines unchanged")
    tail.add_argument("-n", "--lines", type=int, default=10, help="records shown first (10)")
    tail.add_argument("--no-follow", action="store_true", help="print and exit")
    tail.add_argument("--interval", type=float, default=0.5, help="poll interval in seconds")
    tail.set_defaults(run=_tail)

    summary = commands.add_parser(
        "summary",
        help="counts by event type, rejection rates, capping frequency, top reasons",
        description="Counts by event type, the rates of SPEC §9, capping frequency and the "
        "top rejection reasons over a time range. --since/--until take an ISO-8601 UTC time "
        "or prefix (2026-11-26, 2026-11-26T15:00) or a duration back from now (30m, 6h, 7d); "
        "the range is since <= timestamp < until.",
    )
    summary.add_argument("--since", help="start of the range (inclusive)")
    summary.add_argument("--until", help="end of the range (exclusive)")
    summary.add_argument("--symbol", help="only this symbol, e.g. BTCUSDT")
    summary.add_argument("--top", type=int, default=5, help="rejection reasons shown (5)")
    summary.add_argument("--workers", type=int, default=None, help="processes (default: CPUs)")
    summary.add_argument(
        "--cache-dir",
        help="where day indexes are kept (default $AUDIT_CACHE_DIR, else ~/.cache/audited-bot)",
    )
    summary.set_defaults(run=_summary)

    compress = commands.add_parser(
        "compress",
        help="gzip closed day files (older than yesterday, UTC)",
        description="Replace closed day files by audit_YYYYMMDD.jsonl.gz. Every reader and "
        "verify read them transparently; the bytes, and so the chain, are unchanged.",
    )
    compress.set_defaults(run=_compress)

    archiving = commands.add_parser(
        "archive",
        help="copy closed day files and their digests to S3 object storage (WORM)",
        description="Copy every closed day file not yet archived to s3://BUCKET/PREFIX, then "
        "its digest_YYYYMMDD.json; with Object Lock retention in COMPLIANCE mode when the "
        "bucket has Object Lock. Idempotent and resumable. A day whose local file no longer "
        "matches its archived digest is reported and not uploaded (exit 1); exit 3 when the "
        "object store cannot be used. Endpoint: $AWS_ENDPOINT_URL; credentials: the standard "
        "AWS variables. Several bots' trails go to PREFIX/<bot>/.",
    )
    archiving.add_argument("--to", required=True, metavar="s3://BUCKET/PREFIX")
    archiving.add_argument(
        "--retain-days",
        type=int,
        default=None,
        help="Object Lock retention from now (default: the bucket's default retention)",
    )
    archiving.set_defaults(run=_archive)

    for sub in (verify, tail, summary, compress, archiving):
        sub.add_argument("dir", nargs="?", metavar="DIR", help="audit directory")
    return parser


def _directory(arg: str | None) -> Path:
    directory = Path(arg or os.environ.get("AUDIT_DIR") or "logs/audit")
    if not directory.is_dir():
        raise UsageError(f"no such audit directory: {directory}")
    return directory


def _key() -> bytes | None:
    key = os.environ.get("AUDIT_HMAC_KEY")
    return key.encode() if key else None


# ------------------------------------------------------------------ verify


def _verify(args: argparse.Namespace, directory: Path) -> int:
    if not chain.trail_files(directory, args.prefix):
        others = [p for p in chain.TRAIL_PREFIXES if chain.trail_files(directory, p)]
        if others:
            raise UsageError(
                f"no {args.prefix}* day files in {directory}; it holds {others[0]}* files: "
                f"add --prefix {others[0]}"
            )
    started = time.perf_counter()
    report = verify_trail(directory, _key(), workers=args.workers, prefix=args.prefix)
    elapsed = time.perf_counter() - started
    for note in report.notes:
        print(f"note: {note.file} line {note.line}: {note.event_type} {_describe(note.data)}")
    if report.needs_key:
        print(f"error: {report.problem}", file=sys.stderr)
        return EXIT_USAGE
    if report.problem is not None:
        print(f"NOT INTACT: {report.problem}")
        print(f"  {report.records} records verified before it")
        return EXIT_NOT_INTACT
    gaps = [n for n in report.notes if n.event_type == "audit_gap"]
    dropped = sum(int(n.data.get("dropped_records", 0) or 0) for n in gaps)
    recovered = sum(1 for n in report.notes if n.event_type == "audit_recovered")
    keyed = "HMAC-SHA256" if _key() else "SHA-256"
    print(
        f"INTACT: {report.records} records in {report.files} file(s), seq 0..{report.last_seq}, "
        f"{keyed} chain; head anchor {report.anchor}"
    )
    print(
        f"  recorded gaps: {len(gaps)} ({dropped} records dropped); crash/file recoveries: "
        f"{recovered}; {report.records / max(elapsed, 1e-9):,.0f} lines/s"
    )
    return EXIT_OK


def _describe(data: dict[str, object]) -> str:
    keys = ("reason", "dropped_records", "held_then_written", "file", "torn_bytes")
    return " ".join(f"{k}={data[k]}" for k in keys if k in data)


# -------------------------------------------------------------------- tail


def _tail(args: argparse.Namespace, directory: Path) -> int:
    out = sys.stdout
    for raw in _last_lines(directory, max(args.lines, 0)):
        out.write(_render(raw, args.raw) + "\n")
    out.flush()
    if args.no_follow:
        return EXIT_OK
    follower = TrailFollower(directory)
    follower.skip_existing()
    while True:
        lines = follower.poll_lines()
        for line in lines:
            out.write(_render(line.raw, args.raw) + "\n")
        if lines:
            out.flush()
        time.sleep(args.interval)


def _last_lines(directory: Path, count: int) -> list[bytes]:
    if count == 0:
        return []
    found: list[bytes] = []
    for path in reversed(chain.trail_files(directory)):
        with open_trail_file(path) as fh:
            data: bytes = fh.read()
        lines = data.split(b"\n")[:-1]
        found = lines[-(count - len(found)) :] + found
        if len(found) >= count:
            break
    return found


def _render(raw: bytes, as_raw: bool) -> str:
    text = raw.decode("utf-8", errors="replace")
    if as_raw:
        return text
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return f"(malformed) {text[:200]}"
    if not isinstance(record, dict):
        return f"(malformed) {text[:200]}"
    parts = [
        str(record.get("timestamp", "?")),
        f"{record.get('event_type', '?'):<24}",
        f"{record.get('symbol') or '-':<9}",
        str(record.get("operation", "")),
    ]
    if record.get("trace_id"):
        parts.append(f"trace={record['trace_id']}")
    for name in ("order_data", "response", "error", "additional_data"):
        if record.get(name) is not None:
            parts.append(f"{name}={orjson.dumps(record[name]).decode()}")
    parts.append(f"seq={record.get('seq')}")
    return "  ".join(parts)


# ----------------------------------------------------------------- summary


def _summary(args: argparse.Namespace, directory: Path) -> int:
    since = _when(args.since, "--since")
    until = _when(args.until, "--until")
    started = time.perf_counter()
    result = summarize(
        directory,
        since,
        until,
        args.symbol,
        workers=args.workers,
        cache_dir=Path(args.cache_dir) if args.cache_dir else default_cache_dir(os.environ),
        hmac_key=_key(),
        progress=sys.stderr,
    )
    elapsed = time.perf_counter() - started
    scope = f"{since or 'start'} .. {until or 'end'}" + (f", {args.symbol}" if args.symbol else "")
    print(f"audit summary of {directory} ({scope})")
    print(f"records: {result.records}  first: {result.first or '-'}  last: {result.last or '-'}")
    if result.malformed:
        print(f"malformed lines: {result.malformed}")
    print("\ncounts by event type:")
    for kind, count in sorted(result.counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {kind:<26}{count:>10}")
    print("\nrates:")
    for name in RATES:
        num, den, value = result.rate(name)
        shown = f"{value:7.2%}" if value is not None else "    n/a"
        print(f"  {name:<26}{shown}   ({num}/{den})")
    capped = result.counts.get("position_size_capped", 0)
    hours = _hours(result.first, result.last)
    per_hour = f"{capped / hours:.2f}/hour" if hours else "n/a"
    print(f"\ncapping frequency: {capped} capped sizes, {per_hour}")
    _top("top risk rejection reasons (.error.reason)", result.risk_reasons, args.top)
    _top("top order rejections (.error.error_code, message)", result.order_errors, args.top)
    print(f"\n({result.records / max(elapsed, 1e-9):,.0f} records/s, {elapsed:.2f}s)")
    return EXIT_OK


def _top(title: str, counter: dict[str, int], top: int) -> None:
    if not counter:
        return
    print(f"\n{title}:")
    for reason, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
        print(f"  {count:>8}  {reason}")


def _hours(first: str | None, last: str | None) -> float:
    if first is None or last is None:
        return 0.0
    span = chain.parse_timestamp(last) - chain.parse_timestamp(first)
    return span.total_seconds() / 3600


def _when(text: str | None, option: str) -> str | None:
    """An ISO-8601 UTC bound (compared as a string prefix) or a duration back from now."""
    if text is None:
        return None
    match = _DURATION.match(text.strip())
    if match:
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        moment = datetime.now(UTC) - timedelta(seconds=seconds)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    value = text.strip().removesuffix("Z").replace(" ", "T")
    try:
        datetime.fromisoformat(value if len(value) != 13 else value + ":00")
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: expected an ISO-8601 UTC time such as 2026-11-26 or "
            "2026-11-26T15:00:00, or a duration such as 30m, 6h, 7d"
        ) from None
    if "+" in value[10:] or value[10:].count("-"):
        raise UsageError(f"{option} {text!r}: give the time in UTC, without an offset")
    return value


# ---------------------------------------------------------------- compress


def _compress(args: argparse.Namespace, directory: Path) -> int:
    done = compress_closed_days(directory)
    for path in done:
        print(f"compressed {path.name}")
    if not done:
        print("nothing to compress (only today's and yesterday's files are open)")
    return EXIT_OK


# ----------------------------------------------------------------- archive


def _archive(args: argparse.Namespace, directory: Path) -> int:
    if args.retain_days is not None and args.retain_days < 1:
        raise UsageError(f"--retain-days must be at least 1, not {args.retain_days}")
    try:
        archive.Location.parse(args.to)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result = archive.archive(directory, args.to, retain_days=args.retain_days)
    tampered = [o for o in result.outcomes if o.status == "tampered"]
    mode = f"Object Lock {archive.LOCK_MODE}" if result.locked else "no Object Lock"
    print(
        f"archived {result.count('archived')} day(s), skipped {result.count('skipped')} "
        f"already archived, {len(tampered)} tampered; {result.bytes_sent / 1e6:,.1f} MB in "
        f"{result.seconds:.1f}s to {args.to} ({mode})"
    )
    for outcome in tampered:
        print(f"TAMPERED: {outcome.bot} {outcome.date}: {outcome.detail}")
    return EXIT_NOT_INTACT if tampered else EXIT_OK


def _against_archive(args: argparse.Namespace, directory: Path) -> int:
    try:
        archive.Location.parse(args.archive)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    outcomes = archive.compare(directory, args.archive)
    tampered = [o for o in outcomes if o.status == "tampered"]
    missing = [o for o in outcomes if o.status == "missing"]
    print(
        f"archive {args.archive}: {len(outcomes) - len(tampered) - len(missing)} closed day(s) "
        f"equal to their archived digest, {len(missing)} not archived, {len(tampered)} tampered"
    )
    for outcome in tampered:
        print(f"TAMPERED: {outcome.bot} {outcome.date}: {outcome.detail}")
    return EXIT_NOT_INTACT if tampered else EXIT_OK


def _verify_s3(args: argparse.Namespace) -> int:
    import tempfile

    try:
        archive.Location.parse(args.dir)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="audit-verify-") as scratch:
        fetched = archive.fetch(args.dir, Path(scratch))
        if not fetched:
            raise UsageError(f"no archived day files under {args.dir}")
        code = EXIT_OK
        for trail in fetched:
            archive.check_seals(trail)
            print(f"{trail.bot}: {trail.days} day file(s) at {trail.location}")
            for key in trail.overwritten:
                print(f"note: {key} has later versions; the first (archived) one is verified")
            for problem in trail.problems:
                print(f"NOT INTACT: {problem}")
            verdict = _verify(args, trail.directory)
            code = max(code, verdict, EXIT_NOT_INTACT if trail.problems else EXIT_OK)
    return code


if __name__ == "__main__":
    sys.exit(main())
