"""Compile ``_chain.c`` next to itself: ``python -m bot.audit.native.build [--quiet]``.

A plain compiler call rather than a setuptools project: one C file, linked to the
OpenSSL libcrypto that Python's own hashlib uses. Exits 0 without building when no
compiler or header is available (the pure-Python reference then runs), printing why.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "_chain.c"


def target() -> Path:
    return HERE / f"_chain{sysconfig.get_config_var('EXT_SUFFIX')}"


def build() -> str:
    """Build if the source is newer than the module; return what happened."""
    out = target()
    if out.exists() and out.stat().st_mtime >= SOURCE.stat().st_mtime:
        return f"up to date: {out.name}"
    cc = shutil.which(str(sysconfig.get_config_var("CC") or "cc").split()[0]) or shutil.which("cc")
    include = sysconfig.get_paths()["include"]
    if cc is None or not Path(include, "Python.h").exists():
        return "not built: no C compiler or Python headers (the Python implementation runs)"
    tmp = out.with_suffix(".tmp")
    cmd = [cc, "-O2", "-fPIC", "-shared", "-Wall", f"-I{include}", str(SOURCE), "-o", str(tmp)]
    result = subprocess.run([*cmd, "-lcrypto"], capture_output=True, text=True)
    if result.returncode != 0:
        return "not built (the Python implementation runs):\n" + result.stderr.strip()
    tmp.replace(out)  # atomic: a running process keeps its mapped copy
    return f"built {out.name}"


def main() -> None:
    message = build()
    if "--quiet" not in sys.argv or not message.startswith("up to date"):
        print(f"audit native accelerator: {message}")


if __name__ == "__main__":
    main()
