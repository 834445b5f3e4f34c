"""What the task-queue integrations (Celery, RQ) share: the trace a job is enqueued with,
time limits grouped by what struck, one report per failure however it is logged, and the
settings every such integration takes."""

from __future__ import annotations

import logging
from collections.abc import Callable

from exporter.capture.trace_context import current_trace_ids
from exporter.capture.work_unit import current_work
from exporter.integrations import Hub
from exporter.integrations.logging_handler import REPORTED_ATTRIBUTE
from exporter.integrations.scope import WorkScope


class TaskQueueIntegration:
    """The settings of a task-queue integration, and its hook into a monitor.

    ``component`` and ``plugin`` label what its jobs record; ``sessions`` gives each job a
    session; ``capture_body`` lists a failed job's arguments (scrubbed) in its report.
    """

    def __init__(
        self, component: str, plugin: str = "", sessions: bool = True, capture_body: bool = False
    ) -> None:
        self.component = component
        self.plugin = plugin
        self.sessions = sessions
        self.capture_body = capture_body
        self.hub: Hub | None = None
        self._cancel: Callable[[], None] = lambda: None


def traceparent_now(hub: Hub) -> str | None:
    """The W3C ``traceparent`` of the code running now (None: no trace, or the option off)."""
    if not hub.config.capture_trace_context:
        return None
    ids = current_trace_ids()
    if ids is None:
        return None
    return f"00-{ids[0]:032x}-{ids[1]:016x}-01"


def interrupted_standin(error: BaseException, key: str) -> BaseException:
    """An exception that interrupts the code anywhere (a time limit), grouped by ``key``
    rather than by where it struck; its report still shows that place. ``error`` itself
    when its type cannot be built again."""
    from exporter.capture.signature import GROUP_KEY_ATTRIBUTE, PLACE_ATTRIBUTE

    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code, tb.tb_lineno or 0))
        tb = tb.tb_next
    try:
        standin = type(error)(*error.args)
        setattr(standin, GROUP_KEY_ATTRIBUTE, key)
        if frames:
            setattr(standin, PLACE_ATTRIBUTE, tuple(frames))
    except Exception:
        return error
    return standin


class ReportedFilter(logging.Filter):
    """Marks (never drops) the log record of a failure the current unit already reported.

    Celery logs a failed task right after ``task_failure`` (RQ: its worker, inside
    ``handle_exception``); the logging hook then skips the marked record, so the failure is
    one report even when the logged exception is another object than the one reported.
    """

    def __init__(self, unit_type: type[WorkScope]) -> None:
        super().__init__()
        self.unit_type = unit_type

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            unit = current_work.get()
            if (
                isinstance(unit, self.unit_type)
                and record.levelno >= logging.ERROR
                and getattr(unit, "quiet_logs", False)
            ):
                setattr(record, REPORTED_ATTRIBUTE, unit.error_id or "")
        except Exception:
            pass
        return True
