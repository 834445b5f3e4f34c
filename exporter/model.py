"""The records the monitor keeps, and their JSON shapes.

Field names and JSON keys follow the two in-house systems this replaces (the error
monitoring service's ErrorReport / Breadcrumb / ResourceSnapshot and the aggregator's
ErrorRecord / ErrorPattern), so existing consumers of their exports keep working. Every
JSON shape is defined here once and used by the file export, the API and the CLI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any


class ErrorSeverity(str, Enum):
    """How bad one error is (metric label ``severity``)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class ErrorPriority(str, Enum):
    """How urgently a group needs attention: severity raised by frequency and reach."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
PATTERN_SEVERITY_VALUE = {"none": 0, "warning": 1, "error": 2, "critical": 3}


@dataclass
class Breadcrumb:
    """One user or system action that preceded an error."""

    timestamp: float
    action: str
    component: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    level: str = "info"
    category: str = "default"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ResourceSnapshot:
    """System resources around the time of an error (psutil)."""

    timestamp: float
    cpu_percent: float = 0.0
    memory_percent: float = 0.0
    memory_used_mb: float = 0.0
    memory_available_mb: float = 0.0
    disk_io_read_mb: float = 0.0
    disk_io_write_mb: float = 0.0
    network_sent_mb: float = 0.0
    network_recv_mb: float = 0.0
    process_count: int = 0
    thread_count: int = 0
    process_cpu_percent: float = 0.0
    process_open_files: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ErrorReport:
    """The detailed report of an error group, as seed 000's service defined it."""

    error_id: str
    error_type: str
    error_message: str
    severity: ErrorSeverity
    priority: ErrorPriority
    timestamp: float
    first_occurrence: float
    occurrence_count: int
    component: str
    file_path: str | None
    line_number: int | None
    function_name: str | None
    stack_trace: str
    traceback_lines: list[str]
    environment: dict[str, Any]
    breadcrumbs: list[Breadcrumb] = field(default_factory=list)
    resource_snapshot: ResourceSnapshot | None = None
    session_id: str | None = None
    user_id: str | None = None
    affected_users: int = 0
    frequency_per_hour: float = 0.0
    recovery_attempted: bool = False
    recovery_successful: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    # additions of this monitor
    plugin: str = ""
    operation: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    error_class: str = ""
    exception_chain: list[dict[str, Any]] = field(default_factory=list)
    handled: bool = True
    mechanism: str = "record_error"
    thread_name: str = ""
    last_occurrence: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items()}
        data["severity"] = self.severity.value
        data["priority"] = self.priority.value
        data["breadcrumbs"] = [b.to_dict() for b in self.breadcrumbs]
        data["resource_snapshot"] = (
            self.resource_snapshot.to_dict() if self.resource_snapshot else None
        )
        return data


@dataclass
class ErrorRecord:
    """One occurrence, as seed 003's aggregator defined it (plus the group it belongs to)."""

    error_type: str
    message: str
    timestamp: datetime
    context: dict[str, Any] = field(default_factory=dict)
    plugin_id: str | None = None
    operation: str | None = None
    stack_trace: str | None = None
    error_id: str = ""
    severity: str = "medium"
    component: str = ""
    user_id: str | None = None
    session_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "error_type": self.error_type,
            "message": self.message,
            "timestamp": self.timestamp.isoformat(),
            "context": self.context,
            "plugin_id": self.plugin_id,
            "operation": self.operation,
            "stack_trace": self.stack_trace,
            "error_id": self.error_id,
            "severity": self.severity,
            "component": self.component,
            "user_id": self.user_id,
            "session_id": self.session_id,
        }


@dataclass
class ErrorPattern:
    """A recurring error in the sliding window, as seed 003's aggregator defined it."""

    error_type: str
    count: int
    first_seen: datetime
    last_seen: datetime
    affected_plugins: list[str] = field(default_factory=list)
    sample_messages: list[str] = field(default_factory=list)
    severity: str = "warning"
    key: str = ""
    kind: str = "type"

    def to_dict(self) -> dict[str, Any]:
        return {
            "error_type": self.error_type,
            "count": self.count,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "affected_plugins": sorted(set(self.affected_plugins)),
            "sample_messages": self.sample_messages[:3],
            "severity": self.severity,
            "key": self.key,
            "kind": self.kind,
        }
