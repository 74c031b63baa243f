"""Optional C modules, each a stateless function over bytes with a Python reference.

``lib`` (``_chain.c``: verify's line scan, the reference is ``verify._scan_lines``)
is the compiled module, or None when it is not built (``make`` builds it with
``python -m bot.audit.native.build``; a machine without a C compiler or OpenSSL
headers runs the Python reference) or when ``AUDIT_NATIVE=0`` asks for the
reference. ``unavailable`` says why it is None.
"""

from __future__ import annotations

import os
from types import ModuleType

lib: ModuleType | None = None
unavailable = ""

if os.environ.get("AUDIT_NATIVE", "1") == "0":
    unavailable = "disabled by AUDIT_NATIVE=0"
else:
    try:
        from bot.audit.native import _chain as lib  # type: ignore[attr-defined, no-redef]  # noqa: F401
    except ImportError as exc:  # not built here: the Python reference is used
        unavailable = f"not built ({exc}); run: python -m bot.audit.native.build"
