"""FieldSync's sync protocol: wire schemas, versions, hybrid logical clocks and merge rules.

Pure Python (sans-I/O): no HTTP, no database, no UI. The server and the handheld both call these
functions, so there is exactly one definition of the wire format and of who wins a conflict.
"""

from .errors import ERRORS, ProtocolError, flatten_messages
from .hlc import HLC, ClockDriftError, HLCClock, HLCFormatError, bound_skew
from .lifecycle import Actor, Status
from .merge import (
    Conflict,
    ConflictKind,
    FieldEdit,
    JobState,
    MergeResult,
    Outcome,
    StatusChange,
    canonical_json,
    merge_fact,
    merge_field_edit,
    merge_status,
)
from .schemas import Change, UnknownEntity, load_change, load_record
from .versions import (
    OLDEST_SUPPORTED_VERSION,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    SUPPORTED,
    UnsupportedVersion,
    VersionRange,
    negotiate,
)

__all__ = [
    "ERRORS",
    "HLC",
    "OLDEST_SUPPORTED_VERSION",
    "PROTOCOL_HEADER",
    "PROTOCOL_VERSION",
    "SUPPORTED",
    "Actor",
    "Change",
    "ClockDriftError",
    "Conflict",
    "ConflictKind",
    "FieldEdit",
    "HLCClock",
    "HLCFormatError",
    "JobState",
    "MergeResult",
    "Outcome",
    "ProtocolError",
    "Status",
    "StatusChange",
    "UnknownEntity",
    "UnsupportedVersion",
    "VersionRange",
    "bound_skew",
    "canonical_json",
    "flatten_messages",
    "load_change",
    "load_record",
    "merge_fact",
    "merge_field_edit",
    "merge_status",
    "negotiate",
]
