"""The audit trail: an append-only, hash-chained JSON Lines record of every decision.

Imports nothing from the rest of the bot, so the dashboard and third-party
tools can depend on it alone.
"""

from bot.audit.events import AuditEventType, EventCategory
from bot.audit.logger import AuditLogger
from bot.audit.startup import AuditDirectoryLocked
from bot.audit.stats import AuditStats
from bot.audit.tracing import current_trace_id, new_trace_id, trace

__all__ = [
    "AuditDirectoryLocked",
    "AuditEventType",
    "AuditLogger",
    "AuditStats",
    "EventCategory",
    "current_trace_id",
    "new_trace_id",
    "trace",
]
