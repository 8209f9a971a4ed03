"""Hybrid logical clocks (Kulkarni et al., 2014).

An HLC stamp is (wall_ms, counter, node). Stamps issued by one clock strictly increase even when the
wall clock jumps backwards; stamps from different nodes are totally ordered, the node id breaking ties.
The string form sorts exactly like the stamps, so stores can order by a plain text column.

A remote stamp far in the future (a handheld whose clock is a day ahead) is not allowed to drag a clock
forward: `HLCClock.observe` refuses it with `ClockDriftError`, and `bound_skew` lets the server replace
such a stamp with its own time, so a bad clock cannot win every future conflict.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

WALL_DIGITS = 13  # milliseconds since the epoch fit in 13 digits until the year 2286
COUNTER_MAX = 0xFFFF  # four hex digits; on overflow the logical time moves to the next millisecond
NODE_PATTERN = r"[A-Za-z0-9_\-]{1,40}"
DEFAULT_MAX_DRIFT_MS = 5 * 60 * 1000  # how far ahead of our wall clock a remote stamp may be

# ASCII digits only (\d also matches other scripts' digits) and \Z, not $ (which allows a trailing "\n"):
# a stamp has exactly one spelling.
STAMP_PATTERN = rf"^([0-9]{{{WALL_DIGITS}}})-([0-9a-f]{{4}})-({NODE_PATTERN})\Z"  # the whole string form
_HLC_RE = re.compile(STAMP_PATTERN)
_NODE_RE = re.compile(rf"^{NODE_PATTERN}\Z")


class HLCFormatError(ValueError):
    """A string that is not a valid HLC stamp."""


class ClockDriftError(ValueError):
    """A remote stamp lies further in the future than the allowed drift."""

    def __init__(self, remote: HLC, physical_ms: int, max_drift_ms: int) -> None:
        self.remote = remote
        self.ahead_ms = remote.wall_ms - physical_ms
        super().__init__(
            f"remote clock is {self.ahead_ms} ms ahead of ours (allowed {max_drift_ms} ms)"
        )


@dataclass(frozen=True, order=True)
class HLC:
    """One hybrid-logical-clock stamp; compares by (wall_ms, counter, node)."""

    wall_ms: int
    counter: int
    node: str

    def __post_init__(self) -> None:
        if not 0 <= self.wall_ms < 10**WALL_DIGITS:
            raise HLCFormatError(f"wall_ms out of range: {self.wall_ms}")
        if not 0 <= self.counter <= COUNTER_MAX:
            raise HLCFormatError(f"counter out of range: {self.counter}")
        if not _NODE_RE.match(self.node):
            raise HLCFormatError(f"invalid node id: {self.node!r}")

    def __str__(self) -> str:
        return f"{self.wall_ms:0{WALL_DIGITS}d}-{self.counter:04x}-{self.node}"

    @classmethod
    def parse(cls, text: str) -> HLC:
        """Parse the string form; raises HLCFormatError on anything else."""
        match = _HLC_RE.match(text) if isinstance(text, str) else None
        if match is None:
            raise HLCFormatError(f"not an HLC stamp: {text!r}")
        return cls(int(match.group(1)), int(match.group(2), 16), match.group(3))

    def with_node(self, node: str) -> HLC:
        return HLC(self.wall_ms, self.counter, node)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class HLCClock:
    """Issues monotonic HLC stamps for one node. Thread-safe.

    `last` restores a clock from a persisted stamp, so a restarted app never reissues an older stamp.
    """

    def __init__(
        self,
        node: str,
        *,
        physical: Callable[[], int] = wall_clock_ms,
        last: HLC | None = None,
        max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
    ) -> None:
        if not _NODE_RE.match(node):
            raise HLCFormatError(f"invalid node id: {node!r}")
        self.node = node
        self.max_drift_ms = max_drift_ms
        self._physical = physical
        self._wall = last.wall_ms if last else 0
        self._counter = last.counter if last else 0
        self._lock = threading.Lock()

    @property
    def last(self) -> HLC:
        return HLC(self._wall, self._counter, self.node)

    def now(self) -> HLC:
        """A stamp for a local event, greater than every stamp this clock issued or observed."""
        with self._lock:
            self._advance(self._physical(), 0, 0)
            return self.last

    def observe(self, remote: HLC) -> HLC:
        """Merge a received stamp; the next local stamp will be greater than it.

        Raises ClockDriftError, leaving the clock untouched, when `remote` is more than
        `max_drift_ms` ahead of our wall clock.
        """
        with self._lock:
            physical = self._physical()
            if remote.wall_ms - physical > self.max_drift_ms:
                raise ClockDriftError(remote, physical, self.max_drift_ms)
            self._advance(physical, remote.wall_ms, remote.counter)
            return self.last

    def _advance(self, physical: int, remote_wall: int, remote_counter: int) -> None:
        wall = max(self._wall, physical, remote_wall)
        if wall == self._wall and wall == remote_wall:
            counter = max(self._counter, remote_counter) + 1
        elif wall == self._wall:
            counter = self._counter + 1
        elif wall == remote_wall:
            counter = remote_counter + 1
        else:
            counter = 0
        if counter > COUNTER_MAX:  # the logical part is exhausted: borrow the next millisecond
            wall, counter = wall + 1, 0
        self._wall, self._counter = wall, counter


def bound_skew(stamp: HLC, *, physical_ms: int, max_skew_ms: int, replacement: HLC) -> tuple[HLC, bool]:
    """Limit how far a received stamp may lie ahead of the receiver's wall clock.

    Returns (stamp, False) when `stamp` is at most `max_skew_ms` ahead of `physical_ms` (the receiver's
    wall clock, never its logical clock: accepted stamps advance that, so measuring against it would
    let a chain of devices ratchet the bound forward); otherwise (`replacement` -- the receiver's freshly
    issued stamp -- re-tagged with the sender's node, True). The caller keeps the data and records the
    flag: the change still applies, it just cannot win on a wrong clock.
    """
    if stamp.wall_ms - physical_ms <= max_skew_ms:
        return stamp, False
    return replacement.with_node(stamp.node), True
