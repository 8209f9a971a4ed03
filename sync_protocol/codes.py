"""Code lists shared by the handheld and the service centre.

Codes are the stable identifiers stored and sent on the wire; labels are English msgids that each UI
translates through gettext. Adding a code is backwards compatible; removing one is a protocol change.
"""

from __future__ import annotations

from collections.abc import Mapping

READING_TYPES: Mapping[str, str] = {
    "regular": "Regular read",
    "verified": "Verified read (entered twice)",
    "customer_read": "Customer read",
    "estimated": "Estimated",
    "re_read": "Re-read",
}

# Why a meter could not be read: the reading is recorded with no value and this code.
SKIP_CODES: Mapping[str, str] = {
    "locked_gate": "Locked gate",
    "dog": "Dog on premises",
    "no_access": "No access",
    "extreme_weather": "Extreme weather",
    "meter_obstructed": "Meter obstructed",
    "unsafe": "Unsafe to approach",
    "customer_refused": "Customer refused access",
    "meter_not_found": "Meter not found",
}

# The meter's condition, recorded beside a value or a skip.
TROUBLE_CODES: Mapping[str, str] = {
    "broken_glass": "Broken glass",
    "dead_meter": "Dead meter (display blank)",
    "leaking": "Leaking",
    "tamper": "Signs of tampering",
    "meter_not_listed": "Meter not listed",
    "seal_missing": "Seal missing",
    "reverse_running": "Running backwards",
    "dial_damaged": "Dial damaged",
}

# Free remarks a reader picks instead of typing.
COMMENT_CODES: Mapping[str, str] = {
    "high_use_confirmed": "High use confirmed with customer",
    "low_use_vacant": "Low use: premises vacant",
    "new_dog": "New dog at premises",
    "gate_code_changed": "Gate code changed",
    "meter_moved": "Meter moved",
    "check_next_cycle": "Check again next cycle",
}

# Shown before the reader or crew arrives.
HAZARD_CODES: Mapping[str, str] = {
    "dog": "Dog",
    "unsafe_access": "Unsafe access",
    "aggressive_occupant": "Aggressive occupant",
    "electrical_hazard": "Electrical hazard",
    "confined_space": "Confined space",
}

JOB_TYPES: Mapping[str, str] = {
    "outage": "Outage",
    "line_repair": "Line repair",
    "meter_fault": "Meter fault",
    "connection": "New connection",
    "disconnection": "Disconnection",
    "inspection": "Safety inspection",
    "complaint": "Customer complaint",
}

RESOLUTION_CODES: Mapping[str, str] = {
    "repaired": "Repaired",
    "replaced": "Part replaced",
    "made_safe": "Made safe, follow-up needed",
    "no_fault_found": "No fault found",
    "customer_side": "Fault on customer's side",
    "no_access": "No access",
    "referred": "Referred to another team",
}

CUSTOMER_SEGMENTS: Mapping[str, str] = {
    "safety": "Safety value (hospital, water works, grid-critical)",
    "social": "Social value",
    "profit": "Profit value",
    "standard": "Standard",
}

PRIORITIES: Mapping[int, str] = {1: "Emergency", 2: "High", 3: "Normal", 4: "Low"}
