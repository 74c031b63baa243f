"""WORM archive of closed day files in S3-compatible object storage (SPEC §12).

``python -m bot.audit archive [DIR] --to s3://BUCKET/PREFIX [--retain-days N]``
copies every closed day file not yet archived, then its digest
``digest_YYYYMMDD.json`` beside it. The digest is written last: it is the mark
that a day is archived, so a run stopped at any point is resumed by running it
again. A day whose digest is already in the bucket is compared, not copied: equal
means done, different means the local file changed after it was archived — that
day is reported by its date and nothing of it is uploaded (exit 1).

With Object Lock on the bucket every object gets retention in COMPLIANCE mode
(``--retain-days``, else the bucket's default retention period): nobody, root
account included, can delete or overwrite that version before it expires.

``python -m bot.audit verify s3://BUCKET/PREFIX`` downloads each archived trail
(the first, locked, version of every object) to a temporary directory, checks
every day against its digest and then the chain as `verify DIR` does.

A directory holding several bots' trails (``bot.audit.trails.discover``) is
archived under one prefix per bot: ``PREFIX/<bot>/``; a flat trail directly
under ``PREFIX``. Endpoint from ``AWS_ENDPOINT_URL``, credentials from the
standard AWS variables (boto3 reads both).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from bot.audit import chain, compress, trails
from bot.audit.digest import day_digest, digest_name
from bot.audit.reader import open_trail_file

DIGEST_KEYS = (
    "date",
    "records",
    "first_seq",
    "first_hash",
    "last_seq",
    "last_hash",
    "sha256",
    "bytes",
)
LOCK_MODE = "COMPLIANCE"
MULTIPART_THRESHOLD = 8 * 1024 * 1024  # larger day files go up in parts (boto3's default)


class ArchiveError(Exception):
    """The object store cannot be used (unreachable, refused, no such bucket)."""


@dataclass(frozen=True)
class Location:
    bucket: str
    prefix: str  # "" or ends with "/"

    @classmethod
    def parse(cls, url: str) -> Location:
        """``s3://BUCKET[/PREFIX]``; ValueError naming what is wrong otherwise."""
        if not url.startswith("s3://"):
            raise ValueError(f"not an s3:// URL: {url!r}")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {url!r} (s3://BUCKET/PREFIX)")
        prefix = prefix.strip("/")
        return cls(bucket, prefix + "/" if prefix else "")

    def child(self, name: str) -> Location:
        return Location(self.bucket, f"{self.prefix}{name}/")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


# -------------------------------------------------------------------- progress


class Progress:
    """Bytes done of a known total: a bar redrawn in place on a terminal, plain lines
    (one per finished file, written by the caller through ``line``) otherwise."""

    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._drawn = 0.0
        self.label = ""

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.tty and now - self._drawn >= 0.1:
            self._drawn = now
            self._draw()

    def line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        if self.tty:
            self._draw()
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def _draw(self) -> None:
        share = min(self.done / self.total, 1.0)
        bar = "#" * int(share * 30)
        self.stream.write(
            f"\r[{bar:<30}] {share:4.0%} {self.done / 1e6:,.1f}/{self.total / 1e6:,.1f} MB "
            f"{self.rate() / 1e6:,.1f} MB/s {self.label}\x1b[K"
        )
        self.stream.flush()


# ---------------------------------------------------------------------- store


def s3_client() -> Any:
    """A boto3 S3 client: endpoint and credentials from the standard AWS variables,
    short connect timeout and few retries so an unreachable store is reported soon."""
    import boto3  # deferred: only the archive commands need it
    from botocore.config import Config

    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        request_checksum_calculation="when_required",
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("s3", config=config, region_name=region)


@contextlib.contextmanager
def store_errors(where: Location) -> Iterator[None]:
    """Turn the client's exceptions into one ArchiveError naming the store and the cause."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", "")
        raise ArchiveError(f"{where}: the object store refused: {code} {message}".strip()) from exc
    except BotoCoreError as exc:
        raise ArchiveError(f"{where}: cannot use the object store: {exc}") from exc


def _missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


def _get(client: Any, bucket: str, key: str, version: str | None = None) -> bytes | None:
    """The object's bytes, None when there is no such object."""
    from botocore.exceptions import ClientError

    extra = {"VersionId": version} if version else {}
    try:
        body: bytes = client.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
    except ClientError as exc:
        if _missing(exc):
            return None
        raise
    return body


def _lock_days(client: Any, location: Location, retain_days: int | None) -> int | None:
    """Retention days for new objects: None when the bucket has no Object Lock."""
    from botocore.exceptions import ClientError

    try:
        answer = client.get_object_lock_configuration(Bucket=location.bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ObjectLockConfigurationNotFoundError":
            return None
        raise
    config = answer.get("ObjectLockConfiguration", {})
    if config.get("ObjectLockEnabled") != "Enabled":
        return None
    if retain_days is not None:
        return retain_days
    default = config.get("Rule", {}).get("DefaultRetention", {})
    days = int(default.get("Days") or 0) or 365 * int(default.get("Years") or 0)
    if not days:
        raise ArchiveError(
            f"bucket {location.bucket} has Object Lock but no default retention: "
            "pass --retain-days N"
        )
    return days


# -------------------------------------------------------------------- archive


@dataclass
class DayOutcome:
    bot: str
    date: str
    status: str  # archived | skipped | tampered
    detail: str = ""


@dataclass
class ArchiveResult:
    outcomes: list[DayOutcome] = field(default_factory=list)
    locked: bool = False
    bytes_sent: int = 0
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


def closed_day_files(directory: Path, now_ns: int | None = None) -> list[Path]:
    """Day files no writer appends to any more: the ones `compress` may compress (the
    same rule) and the ones it already did."""
    closed = set(compress.closed_days(directory, now_ns))
    closed.update(p for p in chain.trail_files(directory) if p.name.endswith(".gz"))
    return sorted(closed, key=lambda p: chain.day_of_file(p) or "")


def trail_locations(directory: Path, location: Location) -> dict[str, tuple[Path, Location]]:
    """Bot -> (its local directory, its archive location): a flat trail goes to the
    prefix itself, each bot's subdirectory to ``PREFIX/<bot>/``."""
    return {
        bot: (path, location if path == directory else location.child(path.name))
        for bot, path in trails.discover(directory).items()
    }


def archive(
    directory: str | os.PathLike[str],
    url: str,
    *,
    retain_days: int | None = None,
    client: Any = None,
    out: IO[str] | None = None,
    now_ns: int | None = None,
) -> ArchiveResult:
    """Archive every closed day of every trail under ``directory`` to ``url``.

    Raises ArchiveError when the store cannot be used; ValueError for a bad URL."""
    root = Path(directory)
    location = Location.parse(url)
    client = client if client is not None else s3_client()
    result = ArchiveResult()
    started = time.monotonic()
    plan = [
        (bot, path, where)
        for bot, (folder, where) in trail_locations(root, location).items()
        for path in closed_day_files(folder, now_ns)
    ]
    progress = Progress(sum(_size(path) for _, path, _ in plan), out)
    with store_errors(location):
        lock_days = _lock_days(client, location, retain_days)
        result.locked = lock_days is not None
        if lock_days is None:
            progress.line(
                f"warning: bucket {location.bucket} has no Object Lock: archived objects "
                "can be deleted or overwritten (not WORM)"
            )
        for index, (bot, path, where) in enumerate(plan, start=1):
            progress.label = path.name
            outcome = _archive_day(client, bot, path, where, lock_days, progress)
            result.outcomes.append(outcome)
            if outcome.status == "archived":
                result.bytes_sent += path.stat().st_size
            detail = "" if outcome.status == "tampered" else f": {outcome.detail}"
            progress.line(f"[{index}/{len(plan)}] {outcome.status} {bot} {outcome.date}{detail}")
    progress.close()
    result.seconds = time.monotonic() - started
    return result


def _archive_day(
    client: Any,
    bot: str,
    path: Path,
    where: Location,
    lock_days: int | None,
    progress: Progress,
) -> DayOutcome:
    local, known = _check_day(client, bot, path, where)
    if known is not None:
        progress.advance(_size(path))
        return known
    day, digest_key = local["date"], where.prefix + digest_name(local["date"])
    lock = _lock_args(lock_days)
    key = where.prefix + path.name
    if _exists(client, where.bucket, key):  # a run stopped between file and digest
        progress.advance(_size(path))
        differences = _differences(_archived_digest(client, where.bucket, key), local)
        if differences:
            return DayOutcome(bot, day, "tampered", _tamper_text(path, differences))
    else:
        client.upload_file(
            str(path),
            where.bucket,
            key,
            ExtraArgs=dict(lock),  # multipart uploads carry the retention too
            Callback=progress.advance,
            Config=_transfer_config(),
        )
    document = {**local, "object": path.name, "bot": bot, "archived_at": _now_text()}
    client.put_object(
        Bucket=where.bucket,
        Key=digest_key,
        Body=orjson.dumps(document, option=orjson.OPT_INDENT_2),
        ContentType="application/json",
        **lock,
    )
    return DayOutcome(bot, day, "archived", path.name)


def _check_day(
    client: Any, bot: str, path: Path, where: Location
) -> tuple[dict[str, Any], DayOutcome | None]:
    """(the local digest, the day's outcome when it is archived already: skipped or tampered)."""
    local = day_digest(path)
    day = local["date"]
    archived = _get(client, where.bucket, where.prefix + digest_name(day))
    if archived is None:
        return local, None
    differences = _differences(_load_digest(archived), local)
    if differences:
        return local, DayOutcome(bot, day, "tampered", _tamper_text(path, differences))
    return local, DayOutcome(bot, day, "skipped", "already archived, digest equal")


def compare(
    directory: str | os.PathLike[str], url: str, *, client: Any = None, now_ns: int | None = None
) -> list[DayOutcome]:
    """Each closed local day against its archived digest, uploading nothing: outcomes
    ``skipped`` (equal), ``tampered`` or ``missing`` (not archived yet). This catches a
    local trail rewritten and re-chained after archiving, which the chain alone cannot."""
    root = Path(directory)
    location = Location.parse(url)
    client = client if client is not None else s3_client()
    outcomes = []
    with store_errors(location):
        for bot, (folder, where) in trail_locations(root, location).items():
            for path in closed_day_files(folder, now_ns):
                local, known = _check_day(client, bot, path, where)
                outcomes.append(known or DayOutcome(bot, local["date"], "missing", "not archived"))
    return outcomes


def _transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_THRESHOLD)


def _lock_args(lock_days: int | None) -> dict[str, Any]:
    if lock_days is None:
        return {}
    until = datetime.now(UTC) + timedelta(days=lock_days)
    return {"ObjectLockMode": LOCK_MODE, "ObjectLockRetainUntilDate": until}


def _exists(client: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _missing(exc):
            return False
        raise
    return True


def _archived_digest(client: Any, bucket: str, key: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="audit-archive-") as scratch:
        target = Path(scratch) / key.rsplit("/", 1)[-1]
        client.download_file(bucket, key, str(target))
        return day_digest(target)


def _load_digest(raw: bytes) -> dict[str, Any]:
    """An archived digest document; an unreadable one is empty (so it matches nothing)."""
    try:
        value = orjson.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _differences(archived: dict[str, Any], local: dict[str, Any]) -> list[str]:
    """What differs between a reference digest and a file's; the reference's keys are
    compared (a digest sealed by an older writer may lack some), sha256 always."""
    return [
        f"{name} {archived.get(name)!r} archived, {local.get(name)!r} local"
        for name in DIGEST_KEYS
        if (name in archived or name == "sha256") and archived.get(name) != local.get(name)
    ]


def _tamper_text(path: Path, differences: list[str]) -> str:
    return (
        f"local {path.name} no longer matches its archived digest ({'; '.join(differences)}); "
        "not uploaded"
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _now_text() -> str:
    return chain.format_timestamp(time.time_ns())


# --------------------------------------------------------------------- fetch


@dataclass
class FetchedTrail:
    bot: str
    location: Location
    directory: Path
    problems: list[str] = field(default_factory=list)
    overwritten: list[str] = field(default_factory=list)  # keys with later versions
    days: int = 0


def fetch(
    url: str,
    scratch: Path,
    *,
    client: Any = None,
    out: IO[str] | None = None,
) -> list[FetchedTrail]:
    """Download every archived trail under ``url`` into ``scratch`` (the first version
    of each object: the one written, and locked, by `archive`) and check each day
    file against its digest. Raises ArchiveError when the store cannot be used."""
    location = Location.parse(url)
    client = client if client is not None else s3_client()
    with store_errors(location):
        objects = _first_versions(client, location)
        groups = _group_by_trail(location, objects)
        progress = Progress(sum(size for _, size, _ in objects.values()), out)
        fetched = []
        for number, (bot, (where, names)) in enumerate(groups.items()):
            target = scratch / f"trail-{number}"  # bot names may be anything, even "bot" twice
            target.mkdir(parents=True)
            trail = FetchedTrail(bot or trails.DEFAULT_BOT, where, target)
            _fetch_trail(client, trail, names, objects, progress)
            fetched.append(trail)
        progress.close()
    return fetched


def _first_versions(client: Any, location: Location) -> dict[str, tuple[str, int, int]]:
    """key -> (first version id, its size, number of versions) under the prefix. S3 lists
    the versions of a key newest first, so the first version is the last one listed."""
    found: dict[str, tuple[str, int, int]] = {}
    paginator = client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=location.bucket, Prefix=location.prefix):
        for version in page.get("Versions", []):
            key = version["Key"]
            count = found[key][2] + 1 if key in found else 1
            found[key] = (version["VersionId"], int(version["Size"]), count)
    return found


def _group_by_trail(
    location: Location, objects: dict[str, tuple[str, int, int]]
) -> dict[str, tuple[Location, list[str]]]:
    """Sub-prefix ("" for the prefix itself) -> (location, object names in it)."""
    groups: dict[str, tuple[Location, list[str]]] = {}
    for key in sorted(objects):
        rest = key[len(location.prefix) :]
        bot, _, name = rest.rpartition("/")
        if "/" in bot:
            continue  # deeper than one bot level: not ours
        if chain.day_of_file(Path(name)) is None and not name.startswith("digest_"):
            continue
        where = location.child(bot) if bot else location
        groups.setdefault(bot, (where, []))[1].append(name)
    return groups


def _fetch_trail(
    client: Any,
    trail: FetchedTrail,
    names: list[str],
    objects: dict[str, tuple[str, int, int]],
    progress: Progress,
) -> None:
    where = trail.location
    days = {d: n for n in names if (d := chain.day_of_file(Path(n))) is not None}
    digests = {n[len("digest_") : -len(".json")]: n for n in names if n.startswith("digest_")}
    for day in sorted(set(days) | set(digests)):
        if day not in days:
            trail.problems.append(f"{day}: digest without its day file (day file deleted?)")
            continue
        key = where.prefix + days[day]
        version, size, count = objects[key]
        if count > 1:
            trail.overwritten.append(days[day])
        target = trail.directory / days[day]
        progress.label = days[day]
        client.download_file(
            where.bucket,
            key,
            str(target),
            ExtraArgs={"VersionId": version},
            Callback=progress.advance,
        )
        trail.days += 1
        if day not in digests:
            trail.problems.append(f"{day}: {days[day]} has no digest_{day}.json")
            continue
        digest_key = where.prefix + digests[day]
        raw = _get(client, where.bucket, digest_key, objects[digest_key][0])
        differences = _differences(_load_digest(raw or b""), day_digest(target))
        if differences:
            trail.problems.append(
                f"{day}: {days[day]} does not match digest_{day}.json ({'; '.join(differences)})"
            )
        progress.line(f"fetched {trail.bot} {days[day]} ({size / 1e6:,.1f} MB)")


def sealed_digests(directory: Path) -> dict[str, dict[str, Any]]:
    """Day -> the digest the bot sealed into its chain at rollover (SPEC §12)."""
    sealed: dict[str, dict[str, Any]] = {}
    for path in chain.trail_files(directory):
        with open_trail_file(path) as fh:
            for line in fh:
                if b'"seal_day"' not in line or b'"audit_checkpoint"' not in line:
                    continue
                with contextlib.suppress(ValueError):
                    record = orjson.loads(line)
                    digest = (record.get("additional_data") or {}).get("digest")
                    if record.get("operation") == "seal_day" and isinstance(digest, dict):
                        sealed[str(digest.get("date"))] = digest
    return sealed


def check_seals(trail: FetchedTrail) -> None:
    """Each archived day against the digest sealed for it in the chain, when sealed."""
    files = {chain.day_of_file(p): p for p in chain.trail_files(trail.directory)}
    for day, sealed in sealed_digests(trail.directory).items():
        path = files.get(day)
        if path is None:
            continue
        differences = _differences(sealed, day_digest(path))
        if differences:
            trail.problems.append(
                f"{day}: {path.name} does not match the digest sealed in the chain "
                f"({'; '.join(differences)})"
            )
