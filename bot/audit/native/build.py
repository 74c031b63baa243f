"""Compile the C modules next to their sources: ``python -m bot.audit.native.build [--quiet]``.

A plain compiler call per module rather than a setuptools project: ``_chain.c`` (linked to
the OpenSSL libcrypto that Python's own hashlib uses). Exits 0 without
building when no compiler or header is available (the pure-Python code then runs),
printing why.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = {"_chain": ["-lcrypto"]}
"""Each module's name (its source is ``<name>.c``) and the libraries it links."""


def target(name: str = "_chain") -> Path:
    return HERE / f"{name}{sysconfig.get_config_var('EXT_SUFFIX')}"


def build_module(name: str, libraries: list[str]) -> str:
    """Build ``name`` if its source is newer than the module; return what happened."""
    out, source = target(name), HERE / f"{name}.c"
    if out.exists() and out.stat().st_mtime >= source.stat().st_mtime:
        return f"up to date: {out.name}"
    cc = shutil.which(str(sysconfig.get_config_var("CC") or "cc").split()[0]) or shutil.which("cc")
    include = sysconfig.get_paths()["include"]
    if cc is None or not Path(include, "Python.h").exists():
        return "not built: no C compiler or Python headers (the Python implementation runs)"
    tmp = out.with_suffix(".tmp")
    cmd = [cc, "-O2", "-fPIC", "-shared", "-Wall", f"-I{include}", str(source), "-o", str(tmp)]
    result = subprocess.run([*cmd, *libraries], capture_output=True, text=True)
    if result.returncode != 0:
        return "not built (the Python implementation runs):\n" + result.stderr.strip()
    tmp.replace(out)  # atomic: a running process keeps its mapped copy
    return f"built {out.name}"


def build() -> str:
    return "\n".join(build_module(name, libraries) for name, libraries in MODULES.items())


def main() -> None:
    for message in build().splitlines():
        if "--quiet" not in sys.argv or not message.startswith("up to date"):
            print(f"audit native accelerator: {message}")


if __name__ == "__main__":
    main()
