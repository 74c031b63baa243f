"""The audit event vocabulary (SPEC §5): every value written to disk, grouped by category."""

from __future__ import annotations

from enum import StrEnum


class EventCategory(StrEnum):
    """Groups used for filtering and reports ("all order events")."""

    ORDER = "order"
    QUERY = "query"
    CONFIGURATION = "configuration"
    ERROR = "error"
    RISK = "risk"
    TRADING_FLOW = "trading_flow"
    LIFECYCLE = "lifecycle"
    INTEGRITY = "integrity"
    ALERT = "alert"
    CONTROL = "control"


class AuditEventType(StrEnum):
    """The `event_type` strings on disk; the values are the contract, never rename them."""

    ORDER_PLACED = "order_placed"
    ORDER_REJECTED = "order_rejected"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_FILLED = "order_filled"
    POSITION_QUERY = "position_query"
    BALANCE_QUERY = "balance_query"
    LEVERAGE_SET = "leverage_set"
    MARGIN_TYPE_SET = "margin_type_set"
    API_ERROR = "api_error"
    RETRY_ATTEMPT = "retry_attempt"
    RATE_LIMIT = "rate_limit"
    RISK_VALIDATION = "risk_validation"
    RISK_REJECTION = "risk_rejection"
    POSITION_SIZE_CALCULATED = "position_size_calculated"
    POSITION_SIZE_CAPPED = "position_size_capped"
    SIGNAL_PROCESSING = "signal_processing"
    TRADE_EXECUTED = "trade_executed"
    TRADE_EXECUTION_FAILED = "trade_execution_failed"
    BOT_STARTED = "bot_started"
    BOT_STOPPED = "bot_stopped"
    HEARTBEAT = "heartbeat"
    AUDIT_CHECKPOINT = "audit_checkpoint"
    AUDIT_RECOVERED = "audit_recovered"
    AUDIT_GAP = "audit_gap"
    ALERT_FIRED = "alert_fired"
    ALERT_RESOLVED = "alert_resolved"
    TRADING_STATE_CHANGED = "trading_state_changed"
    PROTECTION_TRIGGERED = "protection_triggered"

    @property
    def category(self) -> EventCategory:
        return CATEGORY_OF[self]


_E = AuditEventType
CATEGORY_OF: dict[AuditEventType, EventCategory] = {
    **dict.fromkeys(
        (_E.ORDER_PLACED, _E.ORDER_REJECTED, _E.ORDER_CANCELLED, _E.ORDER_FILLED),
        EventCategory.ORDER,
    ),
    **dict.fromkeys((_E.POSITION_QUERY, _E.BALANCE_QUERY), EventCategory.QUERY),
    **dict.fromkeys((_E.LEVERAGE_SET, _E.MARGIN_TYPE_SET), EventCategory.CONFIGURATION),
    **dict.fromkeys((_E.API_ERROR, _E.RETRY_ATTEMPT, _E.RATE_LIMIT), EventCategory.ERROR),
    **dict.fromkeys(
        (
            _E.RISK_VALIDATION,
            _E.RISK_REJECTION,
            _E.POSITION_SIZE_CALCULATED,
            _E.POSITION_SIZE_CAPPED,
        ),
        EventCategory.RISK,
    ),
    **dict.fromkeys(
        (_E.SIGNAL_PROCESSING, _E.TRADE_EXECUTED, _E.TRADE_EXECUTION_FAILED),
        EventCategory.TRADING_FLOW,
    ),
    **dict.fromkeys((_E.BOT_STARTED, _E.BOT_STOPPED, _E.HEARTBEAT), EventCategory.LIFECYCLE),
    **dict.fromkeys(
        (_E.AUDIT_CHECKPOINT, _E.AUDIT_RECOVERED, _E.AUDIT_GAP), EventCategory.INTEGRITY
    ),
    **dict.fromkeys((_E.ALERT_FIRED, _E.ALERT_RESOLVED), EventCategory.ALERT),
    **dict.fromkeys((_E.TRADING_STATE_CHANGED, _E.PROTECTION_TRIGGERED), EventCategory.CONTROL),
}

EVENT_TYPE_VALUES: frozenset[str] = frozenset(e.value for e in AuditEventType)
