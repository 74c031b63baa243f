"""`archive` and `verify s3://` (SPEC §12) against a real SeaweedFS S3 server with Object Lock."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from bot.audit import archive as archive_module
from bot.audit import chain
from bot.audit.digest import day_digest
from tests.archive.conftest import ROOT, RunAudit, Seaweed, make_trail, run_cli


def _keys(seaweed: Seaweed, bucket: str) -> list[str]:
    listing = seaweed.client().list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def _versions(seaweed: Seaweed, bucket: str, key: str) -> list[str]:
    listing = seaweed.client().list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == key]


def test_multi_bot_trail_is_archived_locked_and_verifies(
    tmp_path: Path, seaweed: Seaweed, run_audit: RunAudit
) -> None:
    alpha = make_trail(tmp_path / "audit" / "alpha", days=3)
    beta = make_trail(tmp_path / "audit" / "beta", days=2)
    bucket = seaweed.bucket()
    done = run_audit(
        "archive",
        str(tmp_path / "audit"),
        "--to",
        f"s3://{bucket}/trails",
        "--retain-days",
        "2",
        env=seaweed.env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "archived 5 day(s)" in done.stdout and "Object Lock COMPLIANCE" in done.stdout
    expected = sorted(
        f"trails/{bot}/{name}"
        for bot, files in (("alpha", alpha), ("beta", beta))
        for path in files
        for name in (path.name, f"digest_{path.name[6:14]}.json")
    )
    assert _keys(seaweed, bucket) == expected  # today's open file is not archived

    client = seaweed.client()
    for key in expected:
        retention = client.get_object_retention(Bucket=bucket, Key=key)["Retention"]
        assert retention["Mode"] == "COMPLIANCE"
        assert retention["RetainUntilDate"] > datetime.now(UTC) + timedelta(days=1)
    digest = json.loads(
        client.get_object(Bucket=bucket, Key=f"trails/alpha/digest_{alpha[0].name[6:14]}.json")[
            "Body"
        ].read()
    )
    assert {k: digest[k] for k in day_digest(alpha[0])} == day_digest(alpha[0])

    checked = run_audit("verify", f"s3://{bucket}/trails", env=seaweed.env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("INTACT:") == 2
    assert "alpha: 3 day file(s)" in checked.stdout and "beta: 2 day file(s)" in checked.stdout


def test_the_store_refuses_to_delete_or_shorten_an_archived_version(
    tmp_path: Path, seaweed: Seaweed, run_audit: RunAudit
) -> None:
    (first, *_) = make_trail(tmp_path / "audit", days=2)
    bucket = seaweed.bucket()
    done = run_audit(
        "archive",
        str(tmp_path / "audit"),
        "--to",
        f"s3://{bucket}/p",
        "--retain-days",
        "1",
        env=seaweed.env,
    )
    assert done.returncode == 0, done.stderr
    client = seaweed.client()
    key = f"p/{first.name}"
    (version,) = _versions(seaweed, bucket, key)
    with pytest.raises(ClientError):
        client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    with pytest.raises(ClientError):
        client.put_object_retention(
            Bucket=bucket,
            Key=key,
            VersionId=version,
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC)},
        )
    # an "overwrite" only adds a version: the archived one stays, and verify reads it
    client.put_object(Bucket=bucket, Key=key, Body=b"forged\n")
    assert version in _versions(seaweed, bucket, key)
    assert client.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read() == (
        first.read_bytes()
    )
    checked = run_audit("verify", f"s3://{bucket}/p", env=seaweed.env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"note: {first.name} has later versions" in checked.stdout


def test_rerun_skips_and_a_locally_edited_day_is_reported_not_uploaded(
    tmp_path: Path, seaweed: Seaweed, run_audit: RunAudit
) -> None:
    files = make_trail(tmp_path / "audit", days=3)
    bucket = seaweed.bucket()
    target = ("--to", f"s3://{bucket}/p", "--retain-days", "1")
    assert run_audit("archive", str(tmp_path / "audit"), *target, env=seaweed.env).returncode == 0
    again = run_audit("archive", str(tmp_path / "audit"), *target, env=seaweed.env)
    assert again.returncode == 0 and "skipped 3 already archived" in again.stdout

    edited = files[1]
    edited.write_bytes(edited.read_bytes().replace(b'"i":7}', b'"i":8}', 1))
    tampered = run_audit("archive", str(tmp_path / "audit"), *target, env=seaweed.env)
    day = edited.name[6:14]
    assert tampered.returncode == 1
    assert f"TAMPERED: bot {day}: local {edited.name} no longer matches" in tampered.stdout
    assert _versions(seaweed, bucket, f"p/{edited.name}").__len__() == 1
    assert _versions(seaweed, bucket, f"p/digest_{day}.json").__len__() == 1
    # the archive still holds what was written: verify of the bucket is intact
    assert run_audit("verify", f"s3://{bucket}/p", env=seaweed.env).returncode == 0


def test_compressed_local_day_matches_its_archived_plain_digest(
    tmp_path: Path, seaweed: Seaweed, run_audit: RunAudit
) -> None:
    files = make_trail(tmp_path / "audit", days=2)
    bucket = seaweed.bucket(locked=False)
    target = ("--to", f"s3://{bucket}/p")
    done = run_audit("archive", str(tmp_path / "audit"), *target, env=seaweed.env)
    assert done.returncode == 0 and "no Object Lock" in done.stdout
    assert "warning: bucket" in done.stdout
    assert run_audit("compress", str(tmp_path / "audit"), env=seaweed.env).returncode == 0
    assert all(p.with_name(p.name + ".gz").exists() for p in files)
    again = run_audit("archive", str(tmp_path / "audit"), *target, env=seaweed.env)
    assert again.returncode == 0 and "skipped 2 already archived" in again.stdout


def test_interrupted_run_resumes(tmp_path: Path, seaweed: Seaweed, run_audit: RunAudit) -> None:
    files = make_trail(tmp_path / "audit", days=6, per_day=400)
    bucket = seaweed.bucket()
    client = seaweed.client()
    # a run that died between a day's file and its digest left the file alone
    client.put_object(Bucket=bucket, Key=f"p/{files[0].name}", Body=files[0].read_bytes())
    argv = [sys.executable, "-m", "bot.audit", "archive", str(tmp_path / "audit")]
    argv += ["--to", f"s3://{bucket}/p", "--retain-days", "1"]
    killed = subprocess.Popen(argv, cwd=ROOT, env=seaweed.env, stdout=subprocess.PIPE, text=True)
    assert killed.stdout is not None
    first_line = killed.stdout.readline()
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(10)
    assert first_line.startswith("[1/6] archived bot")
    before = set(_keys(seaweed, bucket))
    assert f"p/digest_{files[0].name[6:14]}.json" in before

    resumed = run_audit("archive", str(tmp_path / "audit"), *argv[-4:], env=seaweed.env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    archived = resumed.stdout.count("] archived ")
    assert archived + resumed.stdout.count("] skipped ") == 6
    assert archived == 6 - sum(1 for k in before if "/digest_" in k)
    assert len(_keys(seaweed, bucket)) == 12
    for path in files:  # nothing uploaded twice
        assert len(_versions(seaweed, bucket, f"p/{path.name}")) == 1
    assert run_audit("verify", f"s3://{bucket}/p", env=seaweed.env).returncode == 0


def test_archived_day_replaced_in_an_unlocked_bucket_is_named_by_verify(
    tmp_path: Path, seaweed: Seaweed, run_audit: RunAudit
) -> None:
    files = make_trail(tmp_path / "audit", days=3)
    bucket = seaweed.bucket(locked=False)
    assert (
        run_audit(
            "archive", str(tmp_path / "audit"), "--to", f"s3://{bucket}/p", env=seaweed.env
        ).returncode
        == 0
    )
    forged = files[1].read_bytes().replace(b'"i":3}', b'"i":4}', 1)
    seaweed.client().put_object(Bucket=bucket, Key=f"p/{files[1].name}", Body=forged)
    checked = run_audit("verify", f"s3://{bucket}/p", env=seaweed.env)
    assert checked.returncode == 1
    day = files[1].name[6:14]
    assert f"NOT INTACT: {day}: {files[1].name} does not match digest_{day}.json" in checked.stdout


def test_unreachable_store_is_a_clear_error_and_loses_nothing(
    tmp_path: Path, seaweed: Seaweed, run_audit: RunAudit
) -> None:
    files = make_trail(tmp_path / "audit", days=2)
    before = {p: p.read_bytes() for p in (tmp_path / "audit").iterdir()}
    env = {**seaweed.env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # discard port: refused
    done = run_cli("archive", str(tmp_path / "audit"), "--to", "s3://b/p", env=env)
    assert done.returncode == 3
    assert "cannot use the object store" in done.stderr and "127.0.0.1:9" in done.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "audit").iterdir()} == before
    assert files[0].exists()
    checked = run_audit("verify", "s3://b/p", env=env)
    assert checked.returncode == 3 and "cannot use the object store" in checked.stderr


def test_bucket_without_default_retention_needs_retain_days(
    tmp_path: Path, seaweed: Seaweed, run_audit: RunAudit
) -> None:
    make_trail(tmp_path / "audit", days=1)
    bucket = seaweed.bucket()
    done = run_audit("archive", str(tmp_path / "audit"), "--to", f"s3://{bucket}", env=seaweed.env)
    assert done.returncode == 3 and "pass --retain-days N" in done.stderr
    assert _keys(seaweed, bucket) == []


def test_gzipped_upload_verifies(tmp_path: Path, seaweed: Seaweed, run_audit: RunAudit) -> None:
    files = make_trail(tmp_path / "audit", days=2)
    for path in files:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    bucket = seaweed.bucket()
    target = ("--to", f"s3://{bucket}/gz", "--retain-days", "1")
    assert run_audit("archive", str(tmp_path / "audit"), *target, env=seaweed.env).returncode == 0
    assert f"gz/{files[0].name}.gz" in _keys(seaweed, bucket)
    checked = run_audit("verify", f"s3://{bucket}/gz", env=seaweed.env)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_day_and_digest_both_replaced_are_caught_by_the_seal_in_the_chain(
    tmp_path: Path, seaweed: Seaweed, run_audit: RunAudit
) -> None:
    files = make_trail(tmp_path / "audit", days=3)
    bucket = seaweed.bucket(locked=False)  # without Object Lock nothing stops a rewrite
    target = ("--to", f"s3://{bucket}/p")
    assert run_audit("archive", str(tmp_path / "audit"), *target, env=seaweed.env).returncode == 0
    forged = files[0].with_name("forged") / files[0].name
    forged.parent.mkdir()
    forged.write_bytes(files[0].read_bytes().replace(b'"i":3}', b'"i":4}', 1))
    day = files[0].name[6:14]
    client = seaweed.client()
    client.put_object(Bucket=bucket, Key=f"p/{files[0].name}", Body=forged.read_bytes())
    client.put_object(
        Bucket=bucket, Key=f"p/digest_{day}.json", Body=json.dumps(day_digest(forged)).encode()
    )
    checked = run_audit("verify", f"s3://{bucket}/p", env=seaweed.env)
    assert checked.returncode == 1
    assert f"{day}: {files[0].name} does not match the digest sealed in the chain" in checked.stdout


def test_day_files_sent_in_parts_are_locked_too(
    tmp_path: Path, seaweed: Seaweed, run_audit: RunAudit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_module, "MULTIPART_THRESHOLD", 1024)  # every day in parts
    files = make_trail(tmp_path / "audit", days=2, per_day=100)
    bucket = seaweed.bucket()
    target = ("--to", f"s3://{bucket}/mp", "--retain-days", "1")
    assert run_audit("archive", str(tmp_path / "audit"), *target, env=seaweed.env).returncode == 0
    client = seaweed.client()
    for path in files:
        head = client.head_object(Bucket=bucket, Key=f"mp/{path.name}")
        assert "-" in head["ETag"]  # a multipart ETag: the file did go up in parts
        retention = client.get_object_retention(Bucket=bucket, Key=f"mp/{path.name}")
        assert retention["Retention"]["Mode"] == "COMPLIANCE"
    assert run_audit("verify", f"s3://{bucket}/mp", env=seaweed.env).returncode == 0


def _rechain(directory: Path) -> None:
    """What someone with write access and no HMAC key can do: rewrite every hash after an
    edit, and the head anchor too, so the chain alone verifies again."""
    sealer, prev = chain.Sealer(None), chain.GENESIS_HASH.encode()
    hashes: dict[int, bytes] = {}
    for path in chain.trail_files(directory):
        out = []
        for line in path.read_bytes().splitlines():
            seal = chain.parse_seal(line)
            assert seal is not None
            head = line[: line.rindex(chain.PREV_KEY)] + chain.PREV_KEY + prev
            prev = hashes[seal[0]] = sealer.digest(head + chain.LINE_END)
            out.append(head + chain.HASH_SEP + prev + chain.LINE_END + b"\n")
        path.write_bytes(b"".join(out))
    anchor = chain.read_anchor(directory)
    assert anchor is not None
    anchor["hash"] = hashes[int(anchor["seq"])].decode()  # type: ignore[call-overload]
    anchor["mac"] = sealer.digest(chain.anchor_message(anchor)).decode()
    (directory / chain.ANCHOR_FILE).write_text(json.dumps(anchor))


def test_verify_against_the_archive_names_a_day_rewritten_and_rechained(
    tmp_path: Path, seaweed: Seaweed, run_audit: RunAudit
) -> None:
    audit = tmp_path / "audit"
    files = make_trail(audit, days=3)
    bucket = seaweed.bucket()
    target = ("--to", f"s3://{bucket}/p", "--retain-days", "1")
    assert run_audit("archive", str(audit), *target, env=seaweed.env).returncode == 0
    against = ("--archive", f"s3://{bucket}/p")
    clean = run_audit("verify", str(audit), *against, env=seaweed.env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "3 closed day(s) equal to their archived digest, 0 not archived, 0 tampered" in (
        clean.stdout
    )

    edited = files[1]
    edited.write_bytes(edited.read_bytes().replace(b'"i":7}', b'"i":8}', 1))
    _rechain(audit)
    alone = run_audit("verify", str(audit), env=seaweed.env)
    assert alone.returncode == 0 and "INTACT" in alone.stdout  # the chain cannot tell
    checked = run_audit("verify", str(audit), *against, env=seaweed.env)
    assert checked.returncode == 1
    day = edited.name[6:14]
    assert f"TAMPERED: bot {day}: local {edited.name} no longer matches" in checked.stdout
