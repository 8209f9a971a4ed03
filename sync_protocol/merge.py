"""How a replica folds a change into the state it holds: the one definition of "who wins".

Theory of operation
-------------------
Every record's merge state is a join-semilattice, and merging a change is the join of the state with
the change. Joins are commutative, associative and idempotent, so any two replicas that received the
same set of changes, in any order and with any repetition, hold the same state (convergence).

- Editable job fields are registers of (value, HLC): the larger stamp wins; stamps are totally ordered
  (the node id breaks ties), and equal stamps with unequal values -- which no honest writer produces --
  are ordered by the value's canonical JSON, so even that case converges.
- Job status is the maximum of the job's status marks by (round, stage, HLC): the lifecycle order of
  `lifecycle.py`. The marks themselves are kept, so the state is the set of marks and the join is union.
- Facts (meter readings, job events) are immutable: a set keyed by id. The same id with other content is
  refused, never merged.
- Permission (which actor may write which field or status) is a pure function of the change, checked
  before merging, so it can never make the result depend on arrival order.

No silent overwrite: when a write loses to one its writer had not seen (its `base` stamp differs from
the stored one), the loser's value is returned as a Conflict, which the server stores and tells the
device. A field status recorded in a round that the office cancelled is kept and flagged the same way,
whichever of the two arrives first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from .errors import ProtocolError
from .hlc import HLC
from .lifecycle import SETTABLE_BY, STAGE, Actor, Status
from .ownership import FIELD_EDITABLE_JOB_FIELDS, JOB_FIELDS


class Outcome(StrEnum):
    APPLIED = "applied"  # the change's values are now current
    MERGED = "merged"  # accepted and kept, but newer state already outranks it (no collision)
    CONFLICT = "conflict"  # accepted; it collided with a concurrent write (see the conflicts)
    REJECTED = "rejected"  # refused with a reason; nothing changed


class ConflictKind(StrEnum):
    CONCURRENT_EDIT = "concurrent_edit"
    WORK_AFTER_CANCEL = "work_after_cancel"


def canonical_json(value: Any) -> str:
    """The one serialisation used to compare and hash payloads."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Stamped:
    value: Any
    hlc: HLC

    def rank(self) -> tuple[HLC, str]:
        return (self.hlc, canonical_json(self.value))


@dataclass(frozen=True, order=True)
class StatusMark:
    """One status event of a job, reduced to what orders it.

    Ordered by (round, stage, hlc); status, actor and event id only break exact ties. They take part in
    equality too, so two distinct events with equal stamps are two marks, and neither set union nor max
    depends on which arrived first.
    """

    round: int
    stage: int
    hlc: HLC
    status: Status
    actor: Actor
    event_id: str

    @classmethod
    def of(cls, status: Status, round_: int, hlc: HLC, actor: Actor, event_id: str) -> StatusMark:
        return cls(round_, STAGE[status], hlc, status, actor, event_id)


@dataclass(frozen=True)
class JobState:
    """The merge state of one job: editable-field registers and the set of status marks."""

    job_id: str
    fields: Mapping[str, Stamped] = field(default_factory=dict)
    marks: frozenset[StatusMark] = frozenset()

    @property
    def current(self) -> StatusMark | None:
        return max(self.marks) if self.marks else None

    @property
    def status(self) -> Status | None:
        mark = self.current
        return mark.status if mark else None

    @property
    def round(self) -> int:
        return max((mark.round for mark in self.marks), default=1)

    def value(self, name: str) -> Any:
        stamped = self.fields.get(name)
        return stamped.value if stamped else None


@dataclass(frozen=True)
class FieldEdit:
    """A change to some editable fields of a job.

    `base` holds, per field, the stamp of the value the writer saw when editing (None: never set); a
    differing stored stamp means the two writes were concurrent.
    """

    change_id: str
    job_id: str
    hlc: HLC
    actor: Actor
    values: Mapping[str, Any]
    base: Mapping[str, HLC | None] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusChange:
    """A job event that moves the job's status (the event itself is also stored as a fact)."""

    change_id: str
    job_id: str
    hlc: HLC
    actor: Actor
    status: Status
    round: int

    def mark(self) -> StatusMark:
        return StatusMark.of(self.status, self.round, self.hlc, self.actor, self.change_id)


@dataclass(frozen=True)
class Conflict:
    """A value that lost to a concurrent one, or field work in a cancelled round, kept for people."""

    kind: ConflictKind
    entity_id: str
    field: str
    winner: Any
    winner_hlc: HLC
    loser: Any
    loser_hlc: HLC
    change_id: str  # the change that lost or was flagged

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "entity_id": self.entity_id,
            "field": self.field,
            "winner": self.winner,
            "winner_hlc": str(self.winner_hlc),
            "loser": self.loser,
            "loser_hlc": str(self.loser_hlc),
            "change_id": self.change_id,
        }


@dataclass(frozen=True)
class MergeResult:
    state: Any
    outcome: Outcome
    conflicts: tuple[Conflict, ...] = ()
    error: ProtocolError | None = None


def check_field_edit(edit: FieldEdit) -> ProtocolError | None:
    """Field-ownership rule: devices write only the field-editable fields."""
    unknown = sorted(set(edit.values) - JOB_FIELDS)
    if unknown:
        return ProtocolError(
            "validation_error",
            "unknown job field",
            {f"data.{name}": ["Unknown field."] for name in unknown},
        )
    if edit.actor is Actor.FIELD:
        owned = sorted(set(edit.values) - FIELD_EDITABLE_JOB_FIELDS)
        if owned:
            return ProtocolError(
                "server_owned_field",
                f"changed only at the service centre: {', '.join(owned)}",
                {f"data.{name}": ["Changed only at the service centre."] for name in owned},
            )
    return None


def merge_field_edit(state: JobState, edit: FieldEdit) -> MergeResult:
    """Join a field edit into a job's state (per-field last writer wins by HLC)."""
    error = check_field_edit(edit)
    if error:
        return MergeResult(state, Outcome.REJECTED, error=error)
    fields = dict(state.fields)
    conflicts: list[Conflict] = []
    won = lost = 0
    for name, value in sorted(edit.values.items()):
        incoming = Stamped(value, edit.hlc)
        stored = fields.get(name)
        if stored is None or incoming.rank() > stored.rank():
            fields[name] = incoming
            won += 1
            seen = edit.base.get(name)
            if stored is not None and seen != stored.hlc and stored.value != value:
                conflicts.append(_edit_conflict(edit, name, winner=incoming, loser=stored))
        elif incoming.rank() < stored.rank():
            lost += 1
            if stored.value != value:
                conflicts.append(_edit_conflict(edit, name, winner=stored, loser=incoming))
    new_state = replace(state, fields=fields)
    if conflicts:
        outcome = Outcome.CONFLICT
    elif lost and not won:
        outcome = Outcome.MERGED
    else:
        outcome = Outcome.APPLIED
    return MergeResult(new_state, outcome, tuple(conflicts))


def _edit_conflict(edit: FieldEdit, name: str, *, winner: Stamped, loser: Stamped) -> Conflict:
    return Conflict(
        ConflictKind.CONCURRENT_EDIT,
        edit.job_id,
        name,
        winner.value,
        winner.hlc,
        loser.value,
        loser.hlc,
        edit.change_id,
    )


def check_status_change(change: StatusChange) -> ProtocolError | None:
    """Lifecycle permission: which actor may record which status, and rounds start at 1."""
    if change.status not in SETTABLE_BY[change.actor]:
        return ProtocolError(
            "transition_not_allowed",
            f"the field cannot set a job to {change.status.value}",
            {"data.status": [f"Not settable from the {change.actor.value}."]},
        )
    if change.round < 1:
        return ProtocolError("validation_error", "round starts at 1", {"data.round": ["Must be >= 1."]})
    return None


def merge_status(state: JobState, change: StatusChange) -> MergeResult:
    """Join a status event into a job's state: the furthest (round, stage, HLC) wins."""
    error = check_status_change(change)
    if error:
        return MergeResult(state, Outcome.REJECTED, error=error)
    mark = change.mark()
    if mark in state.marks:
        return MergeResult(state, Outcome.APPLIED)
    new_state = replace(state, marks=state.marks | {mark})
    conflicts = tuple(_cancel_conflicts(state, mark))
    if conflicts:
        outcome = Outcome.CONFLICT
    elif new_state.current == mark:
        outcome = Outcome.APPLIED
    else:
        outcome = Outcome.MERGED
    return MergeResult(new_state, outcome, conflicts)


def _cancel_conflicts(state: JobState, mark: StatusMark) -> list[Conflict]:
    """Field marks in a round the office cancelled, paired with that cancellation."""
    others = [m for m in state.marks if m.round == mark.round]
    if mark.status is Status.CANCELLED:
        pairs = [(mark, m) for m in others if m.actor is Actor.FIELD]
    elif mark.actor is Actor.FIELD:
        pairs = [(m, mark) for m in others if m.status is Status.CANCELLED]
    else:
        pairs = []
    return [
        Conflict(
            ConflictKind.WORK_AFTER_CANCEL,
            state.job_id,
            "status",
            cancel.status.value,
            cancel.hlc,
            work.status.value,
            work.hlc,
            work.event_id,
        )
        for cancel, work in pairs
    ]


def merge_fact(existing: Mapping[str, Any] | None, incoming: Mapping[str, Any]) -> MergeResult:
    """Facts are append-only: a new id is added, a repeat is a no-op, a reused id is refused."""
    if existing is None:
        return MergeResult(dict(incoming), Outcome.APPLIED)
    if canonical_json(existing) == canonical_json(incoming):
        return MergeResult(existing, Outcome.APPLIED)
    return MergeResult(
        existing,
        Outcome.REJECTED,
        error=ProtocolError("id_reuse", "this id was already used for a different record"),
    )


def join_jobs(a: JobState, b: JobState) -> JobState:
    """The join of two states of one job (what two replicas converge to after exchanging changes)."""
    if a.job_id != b.job_id:
        raise ValueError("cannot join states of different jobs")
    fields = dict(a.fields)
    for name, stamped in b.fields.items():
        if name not in fields or stamped.rank() > fields[name].rank():
            fields[name] = stamped
    return JobState(a.job_id, fields, a.marks | b.marks)
