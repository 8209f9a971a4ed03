"""Hybrid logical clocks: monotonic stamps, bounded drift, a string form that sorts like the stamps."""

import itertools
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol import HLC, ClockDriftError, HLCClock, HLCFormatError, bound_skew
from sync_protocol.hlc import COUNTER_MAX, DEFAULT_MAX_DRIFT_MS

T0 = 1_700_000_000_000  # a plausible wall clock in ms (Nov 2023)
MAX_WALL = 10**13 - 1

NODE_CHARS = string.ascii_letters + string.digits + "_-"
nodes = st.text(alphabet=NODE_CHARS, min_size=1, max_size=8) | st.text(alphabet=NODE_CHARS, min_size=39, max_size=40)
few_nodes = st.sampled_from(["a", "b", "A", "a-1", "a_1", "dev-0042", "server"])
walls = st.one_of(st.integers(T0, T0 + 3), st.integers(0, MAX_WALL))
counters = st.one_of(st.integers(0, 3), st.integers(COUNTER_MAX - 2, COUNTER_MAX), st.integers(0, COUNTER_MAX))
hlcs = st.builds(HLC, wall_ms=walls, counter=counters, node=st.one_of(few_nodes, nodes))

# A wall clock that mostly ticks forward by a few ms, stalls, and sometimes jumps back (NTP, user edits).
wall_steps = st.one_of(
    st.integers(0, 3),  # stall or small tick
    st.integers(-5, -1),  # small step back
    st.integers(-86_400_000, -1),  # up to a day back
    st.integers(1, 60_000),  # a jump forward
)


class FakeWall:
    """A settable physical clock for HLCClock."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@given(steps=st.lists(wall_steps, min_size=1, max_size=60))
def test_stamps_from_one_clock_strictly_increase_even_when_wall_clock_jumps_back(steps):
    wall = FakeWall(T0)
    clock = HLCClock("dev1", physical=wall)
    issued = [clock.now()]
    for step in steps:
        wall.ms += step
        issued.append(clock.now())
    assert all(earlier < later for earlier, later in itertools.pairwise(issued))
    assert all(stamp.node == "dev1" for stamp in issued)


@given(
    events=st.lists(
        st.tuples(wall_steps, st.one_of(st.none(), st.tuples(st.integers(-100_000, 10_000), counters, few_nodes))),
        min_size=1,
        max_size=40,
    )
)
def test_clock_stays_monotonic_when_local_events_and_observed_stamps_interleave(events):
    wall = FakeWall(T0)
    clock = HLCClock("dev1", physical=wall)
    previous = clock.now()
    for step, remote_parts in events:
        wall.ms += step
        if remote_parts is None:
            stamp = clock.now()
        else:
            offset, counter, node = remote_parts
            remote = HLC(wall.ms + offset, counter, node)
            stamp = clock.observe(remote)
            assert stamp > remote
        assert stamp > previous
        previous = stamp


@given(
    local_wall=st.integers(T0 - 10_000, T0 + 10_000),
    remote_offset=st.integers(-1_000_000, DEFAULT_MAX_DRIFT_MS),
    remote_counter=counters,
    remote_node=few_nodes,
    later_wall_step=st.integers(-1_000_000, 10),
)
def test_observe_makes_the_next_stamp_greater_than_the_remote_stamp(
    local_wall, remote_offset, remote_counter, remote_node, later_wall_step
):
    wall = FakeWall(local_wall)
    clock = HLCClock("dev1", physical=wall)
    before = clock.now()
    remote = HLC(local_wall + remote_offset, remote_counter, remote_node)
    merged = clock.observe(remote)
    assert merged > remote
    assert merged > before
    wall.ms += later_wall_step  # even if our wall clock then goes back
    after = clock.now()
    # Greater by the logical time itself, not merely thanks to a node id that sorts higher.
    assert (after.wall_ms, after.counter) > (remote.wall_ms, remote.counter)
    assert after > merged


@given(
    local_wall=st.integers(T0 - 10_000, T0 + 10_000),
    max_drift=st.integers(0, 10 * 60_000),
    excess=st.integers(1, 10**9),
    remote_counter=counters,
)
def test_observe_refuses_a_stamp_beyond_max_drift_and_leaves_the_clock_unchanged(
    local_wall, max_drift, excess, remote_counter
):
    wall = FakeWall(local_wall)
    clock = HLCClock("dev1", physical=wall, max_drift_ms=max_drift)
    clock.now()
    clock.now()
    before = clock.last
    remote = HLC(local_wall + max_drift + excess, remote_counter, "fast")
    with pytest.raises(ClockDriftError) as caught:
        clock.observe(remote)
    assert caught.value.ahead_ms == max_drift + excess
    assert caught.value.remote == remote
    assert clock.last == before
    # The refused stamp did not drag the clock forward.
    twin = HLCClock("dev1", physical=wall, last=before)
    assert clock.now() == twin.now()


def test_observe_accepts_a_stamp_exactly_at_the_drift_limit():
    clock = HLCClock("dev1", physical=lambda: T0, max_drift_ms=1000)
    remote = HLC(T0 + 1000, 5, "fast")
    assert clock.observe(remote) == HLC(T0 + 1000, 6, "dev1")
    with pytest.raises(ClockDriftError):
        clock.observe(HLC(T0 + 1001, 0, "fast"))


@given(stamps=st.lists(hlcs, min_size=2, max_size=12))
def test_string_form_sorts_exactly_like_the_stamps(stamps):
    assert [str(stamp) for stamp in sorted(stamps)] == sorted(str(stamp) for stamp in stamps)
    for a, b in itertools.pairwise(stamps):
        assert (a < b) == (str(a) < str(b))
        assert (a == b) == (str(a) == str(b))


@given(a=hlcs, b=hlcs)
def test_string_form_orders_pairs_with_equal_wall_time_like_the_stamps(a, b):
    b = HLC(a.wall_ms, b.counter, b.node)
    assert (a < b) == (str(a) < str(b))
    assert (a > b) == (str(a) > str(b))


@given(stamp=hlcs)
def test_parse_inverts_str(stamp):
    assert HLC.parse(str(stamp)) == stamp


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1-0-a",
        "0000000000001-0000-",
        "0000000000001-0000-a b",
        "0000000000001-0000-a.b",
        "0000000000001-00000-a",
        "0000000000001-000-a",
        "0000000000001-000g-a",
        "0000000000001-00FF-a",  # the counter is lower-case hex, or the text order breaks
        "00000000000001-0000-a",
        "000000000001-0000-a",
        "-000000000001-0000-a",
        " 0000000000001-0000-a",
        "0000000000001-0000-a ",
        "0000000000001-0000-a\n",
        "0000000000001-0000-a\nb",
        "0000000000001_0000_a",
        "0000000000001-0000-" + "a" * 41,
        "\u0660" * 12 + "\u0661-0000-a",  # Arabic-Indic digits are digits to \d, not to the wire format
        "\uff10" * 12 + "\uff11-0000-a",  # fullwidth digits
    ],
)
def test_parse_rejects_malformed_strings(text):
    with pytest.raises(HLCFormatError):
        HLC.parse(text)


@pytest.mark.parametrize("value", [None, 1, b"0000000000001-0000-a", ["0000000000001-0000-a"]])
def test_parse_rejects_non_strings(value):
    with pytest.raises(HLCFormatError):
        HLC.parse(value)


@st.composite
def mutated_stamp_strings(draw):
    text = str(draw(hlcs))
    char = draw(st.one_of(st.characters(), st.sampled_from("-_0aF\n \u0660")))
    index = draw(st.integers(0, len(text)))
    how = draw(st.sampled_from(["insert", "replace", "delete"]))
    if how == "insert":
        return text[:index] + char + text[index:]
    if how == "replace":
        return text[:index] + char + text[index + 1 :]
    return text[:index] + text[index + 1 :]


@given(text=st.one_of(mutated_stamp_strings(), st.text(max_size=60)))
def test_parse_accepts_only_the_canonical_string_form(text):
    """Whatever parses must print back as the very same text: one stamp, one spelling."""
    try:
        stamp = HLC.parse(text)
    except HLCFormatError:
        return
    assert str(stamp) == text


@pytest.mark.parametrize(
    ("wall", "counter", "node"),
    [
        (-1, 0, "a"),
        (10**13, 0, "a"),
        (0, -1, "a"),
        (0, COUNTER_MAX + 1, "a"),
        (0, 0, ""),
        (0, 0, "a b"),
        (0, 0, "a\n"),
        (0, 0, "x" * 41),
    ],
)
def test_hlc_rejects_out_of_range_parts(wall, counter, node):
    with pytest.raises(HLCFormatError):
        HLC(wall, counter, node)


@pytest.mark.parametrize("node", ["", "a b", "dev\n", "é"])
def test_clock_rejects_an_invalid_node_id(node):
    with pytest.raises(HLCFormatError):
        HLCClock(node)


@given(wall=st.integers(T0 - 5, T0 + 5), back=st.integers(0, 1000))
def test_counter_overflow_moves_to_the_next_millisecond(wall, back):
    clock = HLCClock("dev1", physical=lambda: wall - back, last=HLC(wall, COUNTER_MAX, "dev1"))
    assert clock.now() == HLC(wall + 1, 0, "dev1")


@given(wall=st.integers(T0 - 5, T0 + 5), local_counter=counters)
def test_observing_a_stamp_with_an_exhausted_counter_moves_to_the_next_millisecond(wall, local_counter):
    clock = HLCClock("dev1", physical=lambda: wall - 1, last=HLC(wall, local_counter, "dev1"))
    remote = HLC(wall, COUNTER_MAX, "other")
    merged = clock.observe(remote)
    assert merged == HLC(wall + 1, 0, "dev1")
    assert merged > remote


@given(
    first_steps=st.lists(wall_steps, min_size=1, max_size=20),
    restart_jump=st.integers(-86_400_000, 10),
    later_steps=st.lists(wall_steps, min_size=1, max_size=20),
)
def test_a_clock_restored_from_last_never_reissues_an_older_stamp(first_steps, restart_jump, later_steps):
    wall = FakeWall(T0)
    clock = HLCClock("dev1", physical=wall)
    issued = []
    for step in first_steps:
        wall.ms += step
        issued.append(clock.now())
    persisted = clock.last

    wall.ms += restart_jump  # the app restarts, perhaps after the clock was set back
    restored = HLCClock("dev1", physical=wall, last=persisted)
    for step in later_steps:
        wall.ms += step
        stamp = restored.now()
        assert stamp > max(issued)
        issued.append(stamp)


@given(stamp=hlcs, replacement=hlcs, max_skew=st.integers(0, 10**9))
def test_bound_skew_keeps_stamps_within_the_bound_and_replaces_and_flags_the_rest(stamp, replacement, max_skew):
    physical = replacement.wall_ms
    bounded, flagged = bound_skew(stamp, physical_ms=physical, max_skew_ms=max_skew, replacement=replacement)
    assert bounded.wall_ms - physical <= max_skew
    assert bounded.node == stamp.node
    assert flagged == (stamp.wall_ms - physical > max_skew)
    if flagged:
        assert bounded == HLC(replacement.wall_ms, replacement.counter, stamp.node)
    else:
        assert bounded == stamp


def test_bound_skew_lets_a_far_future_device_stamp_lose_to_a_later_honest_one():
    server_now = HLC(T0, 0, "server")
    day_ahead = HLC(T0 + 86_400_000, 0, "dev-fast")
    bounded, flagged = bound_skew(day_ahead, physical_ms=T0, max_skew_ms=60_000, replacement=server_now)
    assert flagged
    assert bounded < HLC(T0 + 1, 0, "dev-honest")


def test_bound_skew_measures_against_the_wall_clock_so_accepted_stamps_cannot_ratchet_it():
    """A server whose logical clock was pulled ahead by an accepted stamp still bounds the next device
    by real time: two devices each just under the bound ahead of the other do not both pass."""
    logical = HLC(T0 + 59_000, 0, "server")  # advanced by a device 59 s ahead
    further = HLC(T0 + 118_000, 0, "dev-b")  # 59 s ahead of the logical clock, 118 s of real time
    bounded, flagged = bound_skew(further, physical_ms=T0, max_skew_ms=60_000, replacement=logical)
    assert flagged and bounded.wall_ms == logical.wall_ms
