"""A record's fields as JSON bytes: serialization and redaction of secrets.

`RecordEncoder.encode` turns ``log_event``'s arguments into the record's members
between the timestamp and the chain fields (``"event_type":..,"operation":..,...``)
with one ``orjson.dumps`` call. Secrets never reach the trail (SPEC §4):

* the value of every key whose name looks secret (api key, signature, token, ...)
  is replaced at any depth. Walking every record would cost more than writing
  it, so keys already seen to be harmless are remembered (`_SAFE_KEYS`): a record
  whose data objects are flat and use only such keys needs no walk;
* configured secret values (the API key and secret themselves) are replaced
  wherever they appear in the bytes.

Anything orjson cannot write (an unknown type, a >64-bit int) is converted or
stringified and noted in ``audit_note`` instead of losing the record.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import orjson

from bot.audit.stats import AuditStats
from bot.audit.tracing import TRACE

log = logging.getLogger("bot.audit")

JsonObject = Mapping[str, Any]
REDACTED = "[REDACTED]"
OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_SECRET_KEY_RE = re.compile(
    r"api[_-]?key|secret|signature|password|passphrase|token|hmac|private[_-]?key|auth", re.I
)
_CONTAINERS = (dict, list, tuple)
_MEMO_LIMIT = 10_000
_KEY_IS_SECRET: dict[Any, bool] = {}  # memo: record keys repeat, the regex is slow
_SAFE_KEYS: set[str] = set()  # keys known not to be secret, for the one-call pre-check
_dumps = orjson.dumps


class RecordEncoder:
    """Serializes records; counts fallbacks and redactions in ``stats``."""

    def __init__(self, stats: AuditStats, redact_values: tuple[str, ...] = ()) -> None:
        self._stats = stats
        self._redact_values = tuple(v.encode() for v in redact_values if v)

    def encode(
        self,
        kind: str,
        operation: str,
        symbol: str | None,
        order_data: JsonObject | None,
        response: JsonObject | None,
        error: JsonObject | None,
        additional_data: JsonObject | None,
        trace_id: str | None,
    ) -> bytes:
        """The record's members without braces; the trace id defaults to the current one."""
        record: dict[str, Any] = {
            "event_type": kind,
            "operation": operation if type(operation) is str else str(operation),
        }
        if symbol is not None:
            record["symbol"] = symbol if type(symbol) is str else str(symbol)
        if trace_id is None:
            trace_id = TRACE.get()
        if trace_id is not None:
            record["trace_id"] = trace_id if type(trace_id) is str else str(trace_id)
        # Written out for each object rather than looped: a loop over (name, value) pairs
        # costs ~0.4 us per record here, ~4 % of log_event (docs/benchmarks.md).
        objects = 0
        known = True  # every data object a plain dict of keys known to be harmless
        if order_data is not None:
            if type(order_data) is not dict:
                order_data, known = as_object(order_data), False
            elif not _SAFE_KEYS.issuperset(order_data):
                known = False
            record["order_data"] = order_data
            objects += 1
        if response is not None:
            if type(response) is not dict:
                response, known = as_object(response), False
            elif known and not _SAFE_KEYS.issuperset(response):
                known = False
            record["response"] = response
            objects += 1
        if error is not None:
            if type(error) is not dict:
                error, known = as_object(error), False
            elif known and not _SAFE_KEYS.issuperset(error):
                known = False
            record["error"] = error
            objects += 1
        if additional_data is not None:
            if type(additional_data) is not dict:
                additional_data, known = as_object(additional_data), False
            elif known and not _SAFE_KEYS.issuperset(additional_data):
                known = False
            record["additional_data"] = additional_data
            objects += 1
        try:
            # Without options first: they change nothing for the plain types orjson takes
            # alone, and anything else raises, so the second call writes the same bytes.
            rest = _dumps(record)
        except TypeError:
            try:
                rest = _dumps(record, default=json_default, option=OPTIONS)
            except TypeError:
                rest = self._serialize_fallback(record)
                known = False
        # Known keys and no nested object (exactly one `{` per object): nothing to
        # redact. Otherwise walk the record; a `{` inside a string only costs the walk.
        if objects and not (known and rest.count(b"{") == objects + 1):
            rest = self._redact_keys(rest)
        for secret in self._redact_values:
            if secret in rest:
                rest = rest.replace(secret, REDACTED.encode())
                self._stats.redactions += 1
        return rest[1:-1]

    def _serialize_fallback(self, record: dict[str, Any]) -> bytes:
        stringified: list[str] = []
        safe = _sanitize(record, stringified, depth=0)
        safe["audit_note"] = {"stringified_types": sorted(set(stringified))}
        self._stats.serialization_fallbacks += 1
        log.warning("audit record had unserializable values: %s", sorted(set(stringified)))
        return orjson.dumps(safe, option=OPTIONS)

    def _redact_keys(self, payload: bytes) -> bytes:
        """``payload`` with the value of every secret-named key, at any depth, replaced."""
        record = orjson.loads(payload)
        if not _has_secret_key(record):
            return payload
        self._stats.redactions += 1
        return orjson.dumps(_redact(record))


def as_object(value: Any) -> Any:
    """SPEC §4 wants JSON objects in the data fields: wrap anything else."""
    return value if isinstance(value, Mapping) else {"value": value}


def json_default(obj: Any) -> Any:
    """orjson handles str/int/float/bool/None/dict/list/tuple/datetime/date/enum/UUID/numpy."""
    if isinstance(obj, Decimal):
        # Exact digits as a JSON number; NaN/Infinity become null like floats do.
        return orjson.Fragment(str(obj).encode()) if obj.is_finite() else None
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError


def _sanitize(value: Any, stringified: list[str], depth: int) -> Any:
    """JSON-safe deep copy: known types converted, anything else stringified and noted."""
    if depth > 32:
        stringified.append("nesting_too_deep")
        return "<nesting too deep>"
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:  # what orjson writes as a number
            return value
        stringified.append("int beyond 64 bits")
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {_key(k): _sanitize(v, stringified, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_sanitize(v, stringified, depth + 1) for v in value]
    try:
        return orjson.loads(orjson.dumps(value, default=json_default, option=OPTIONS))
    except (TypeError, orjson.JSONEncodeError):
        stringified.append(type(value).__name__)
        try:
            return str(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"


def _key(key: Any) -> Any:
    return key if isinstance(key, (str, int, float, bool)) or key is None else str(key)


def _is_secret_key(key: Any) -> bool:
    known = _KEY_IS_SECRET.get(key)
    if known is None:
        known = isinstance(key, str) and bool(_SECRET_KEY_RE.search(key))
        if len(_KEY_IS_SECRET) < _MEMO_LIMIT:
            _KEY_IS_SECRET[key] = known
            if not known and isinstance(key, str):
                _SAFE_KEYS.add(key)
    return known


def _has_secret_key(value: Any) -> bool:
    if type(value) is dict:
        for key, inner in value.items():
            if _is_secret_key(key) or (type(inner) in _CONTAINERS and _has_secret_key(inner)):
                return True
        return False
    if type(value) in _CONTAINERS:
        return any(_has_secret_key(v) for v in value)
    return False


def _redact(value: Any) -> Any:
    if type(value) is dict:
        return {k: REDACTED if _is_secret_key(k) else _redact(v) for k, v in value.items()}
    if type(value) is list:
        return [_redact(v) for v in value]
    return value
