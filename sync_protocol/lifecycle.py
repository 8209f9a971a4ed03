"""The repair-job lifecycle, as tables.

New -> Assigned -> En route -> On site <-> On hold -> Completed | Cannot complete -> Closed, or Cancelled
(-> Closed, once the office has reviewed it).

Statuses are ordered by (round, stage): the office may return a finished job to the field, which opens a
new round, so the order stays monotonic across corrections. On site and On hold share a stage (the later
stamp wins between them), as do Completed and Cannot complete. Cancelled ranks above every field status of
its round, so a cancellation by the office wins; only Closed (the office's review, which ends the job)
ranks higher.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum


class Status(StrEnum):
    NEW = "new"
    ASSIGNED = "assigned"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    ON_HOLD = "on_hold"
    COMPLETED = "completed"
    CANNOT_COMPLETE = "cannot_complete"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Actor(StrEnum):
    FIELD = "field"  # a handheld, on behalf of its user
    OFFICE = "office"  # service-centre staff, through the server


STAGE: Mapping[Status, int] = {
    Status.NEW: 0,
    Status.ASSIGNED: 1,
    Status.EN_ROUTE: 2,
    Status.ON_SITE: 3,
    Status.ON_HOLD: 3,
    Status.COMPLETED: 4,
    Status.CANNOT_COMPLETE: 4,
    Status.CANCELLED: 5,
    Status.CLOSED: 6,
}

# Statuses each actor may record at all. Checked by the merge, independent of arrival order.
SETTABLE_BY: Mapping[Actor, frozenset[Status]] = {
    Actor.FIELD: frozenset(
        {Status.EN_ROUTE, Status.ON_SITE, Status.ON_HOLD, Status.COMPLETED, Status.CANNOT_COMPLETE}
    ),
    Actor.OFFICE: frozenset(Status),
}

# Transitions an actor may start from a status it currently sees (the UIs offer only these).
# A transition to ASSIGNED from a finished status opens a new round.
TRANSITIONS: Mapping[Actor, Mapping[Status, frozenset[Status]]] = {
    Actor.FIELD: {
        Status.ASSIGNED: frozenset({Status.EN_ROUTE, Status.ON_SITE}),
        Status.EN_ROUTE: frozenset({Status.ON_SITE, Status.CANNOT_COMPLETE}),
        Status.ON_SITE: frozenset({Status.ON_HOLD, Status.COMPLETED, Status.CANNOT_COMPLETE}),
        Status.ON_HOLD: frozenset({Status.ON_SITE, Status.CANNOT_COMPLETE}),
    },
    Actor.OFFICE: {
        Status.NEW: frozenset({Status.ASSIGNED, Status.CANCELLED}),
        Status.ASSIGNED: frozenset({Status.ASSIGNED, Status.CANCELLED}),
        Status.EN_ROUTE: frozenset({Status.CANCELLED}),
        Status.ON_SITE: frozenset({Status.CANCELLED}),
        Status.ON_HOLD: frozenset({Status.CANCELLED}),
        Status.COMPLETED: frozenset({Status.CLOSED, Status.ASSIGNED}),
        Status.CANNOT_COMPLETE: frozenset({Status.CLOSED, Status.ASSIGNED}),
        Status.CANCELLED: frozenset({Status.ASSIGNED, Status.CLOSED}),
    },
}

OPENS_NEW_ROUND: frozenset[Status] = frozenset(
    {Status.COMPLETED, Status.CANNOT_COMPLETE, Status.CANCELLED}
)  # ... when the office moves a job from one of these back to ASSIGNED

FINISHED: frozenset[Status] = frozenset(
    {Status.COMPLETED, Status.CANNOT_COMPLETE, Status.CLOSED, Status.CANCELLED}
)
OPEN_FOR_FIELD: frozenset[Status] = frozenset(TRANSITIONS[Actor.FIELD])


def allowed_next(actor: Actor, current: Status) -> frozenset[Status]:
    """The statuses `actor` may move a job to from `current`."""
    return TRANSITIONS[actor].get(current, frozenset())


def next_round(current: Status, target: Status, round_: int) -> int:
    """The round a transition lands in: returning a finished job to the field starts a new round."""
    if target is Status.ASSIGNED and current in OPENS_NEW_ROUND:
        return round_ + 1
    return round_


def time_on_site_ms(marks: Iterable[tuple[Status, int]]) -> int | None:
    """Time on site of one round: first arrival to completion, less time on hold.

    `marks` are (status, device time in ms) of the round's status events, in any order. None until the
    crew has arrived; while the job is still open the clock runs to the last recorded mark.
    """
    # Ties in time are ordered by the lifecycle, so the result does not depend on the order given.
    ordered = sorted(marks, key=lambda mark: (mark[1], STAGE[mark[0]], mark[0].value))
    arrived_at: int | None = None
    held_since: int | None = None
    held_ms = 0
    end: int | None = None
    for status, at in ordered:
        if status is Status.ON_SITE:
            if arrived_at is None:
                arrived_at = at
            if held_since is not None:
                held_ms += at - held_since
                held_since = None
        elif status is Status.ON_HOLD and arrived_at is not None and held_since is None:
            held_since = at
        elif status in (Status.COMPLETED, Status.CANNOT_COMPLETE) and arrived_at is not None:
            if held_since is not None:
                held_ms += at - held_since
                held_since = None
            end = at
            break
        end = at
    if arrived_at is None or end is None:
        return None
    if held_since is not None:  # still on hold: marks after the hold started are not time on site
        held_ms += end - held_since
    return max(0, end - arrived_at - held_ms)
