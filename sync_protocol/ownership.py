"""Who may change what, as data (one table, read by the merge, the schemas and both UIs).

Entities:
- FACT entities are created by devices and never changed: meter readings and job events.
- JOB is shared: the office owns its scheduling fields; the field edits its outcome fields; its status
  moves only through job events ("status" kind) ordered by the lifecycle.
- REFERENCE entities are changed only at the service centre and flow to devices on pull.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class EntityKind(StrEnum):
    FACT = "fact"
    SHARED = "shared"
    REFERENCE = "reference"


ENTITIES: Mapping[str, EntityKind] = {
    "job": EntityKind.SHARED,
    "job_event": EntityKind.FACT,
    "meter_reading": EntityKind.FACT,
    "customer": EntityKind.REFERENCE,
    "premise": EntityKind.REFERENCE,
    "meter": EntityKind.REFERENCE,
    "route": EntityKind.REFERENCE,
}

PUSHABLE_ENTITIES = frozenset(name for name, kind in ENTITIES.items() if kind is not EntityKind.REFERENCE)

# Job fields the service centre owns: a device's change to any of them is rejected with a reason.
SERVER_OWNED_JOB_FIELDS = frozenset(
    {
        "number",
        "customer_id",
        "premise_id",
        "job_type",
        "summary",
        "priority",
        "assigned_to",
        "scheduled_start",
        "scheduled_end",
        "requires_signature",
        "created_at",
    }
)

# Job fields the crew edits (per-field last writer wins by HLC; the office may edit them too).
FIELD_EDITABLE_JOB_FIELDS = frozenset(
    {"resolution_code", "cause", "resolution_note", "follow_up_needed", "contact_name"}
)

# Status and round are not fields: they follow the job's status events.
JOB_FIELDS = SERVER_OWNED_JOB_FIELDS | FIELD_EDITABLE_JOB_FIELDS
