"""Meter-reading rules: one rollover convention, the hi/lo band, and the hard date and register rules."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.readings import (
    DEFAULT_FACTORS,
    MS_PER_DAY,
    CheckResult,
    ReadingRuleError,
    check_read_time,
    check_register_value,
    check_skip_or_value,
    consumption,
    expected_band,
    register_limit,
)

T0 = 1_700_000_000_000
RESIDENTIAL = DEFAULT_FACTORS["residential"]  # (0.5, 2.0)


def band(
    current,
    previous=1000,
    *,
    days=10,
    dials=5,
    multiplier=1.0,
    avg_daily=10.0,
    factors=RESIDENTIAL,
    previous_estimated=False,
):
    return expected_band(
        current=current,
        previous=previous,
        previous_at_ms=T0,
        read_at_ms=T0 + days * MS_PER_DAY,
        dials=dials,
        multiplier=multiplier,
        avg_daily=avg_daily,
        low_factor=factors[0],
        high_factor=factors[1],
        previous_estimated=previous_estimated,
    )


# --- rollover convention ------------------------------------------------------------------------------


def test_a_higher_value_is_plain_consumption():
    assert consumption(1000, 1250, dials=5) == (250, False)


def test_an_equal_value_is_zero_consumption_not_a_rollover():
    assert consumption(1000, 1000, dials=5) == (0, False)


def test_a_lower_value_after_an_actual_read_is_a_rollover_at_ten_to_the_dials():
    assert consumption(99_990, 15, dials=5) == (25, True)
    assert consumption(9_990, 15, dials=4) == (25, True)


def test_a_lower_value_after_an_estimated_read_is_negative_consumption_not_a_rollover():
    assert consumption(99_990, 15, dials=5, previous_estimated=True) == (15 - 99_990, False)
    assert consumption(1200, 1100, dials=5, previous_estimated=True) == (-100, False)


def test_consumption_is_scaled_by_the_multiplier_including_after_a_rollover():
    assert consumption(1000, 1250, dials=5, multiplier=40.0) == (10_000.0, False)
    assert consumption(99_990, 15, dials=5, multiplier=40.0) == (1000.0, True)


@given(
    dials=st.integers(1, 12),
    data=st.data(),
    multiplier=st.sampled_from([1.0, 0.5, 2.0, 10.0, 40.0, 80.0, 1_000.0]),
)
def test_consumption_after_a_rollover_is_within_one_turn_of_the_register(dials, data, multiplier):
    limit = register_limit(dials)
    previous = data.draw(st.integers(1, limit - 1), label="previous")
    current = data.draw(st.integers(0, previous - 1), label="current")
    used, rolled = consumption(previous, current, dials, multiplier)
    assert rolled
    assert 0 <= used < limit * multiplier
    assert used == (limit - previous + current) * multiplier


@given(dials=st.integers(1, 12), data=st.data(), estimated=st.booleans())
def test_consumption_never_rolls_over_when_the_register_did_not_go_down(dials, data, estimated):
    limit = register_limit(dials)
    previous = data.draw(st.integers(0, limit - 1), label="previous")
    current = data.draw(st.integers(previous, limit - 1), label="current")
    assert consumption(previous, current, dials, previous_estimated=estimated) == (current - previous, False)


# --- hi/lo band -----------------------------------------------------------------------------------------


def test_a_value_inside_the_band_is_in_range():
    result = band(1100)  # 100 used; expected 10/day x 10 days = 100, band [50, 200]
    assert result.result is CheckResult.IN_RANGE
    assert (result.consumption, result.expected, result.low, result.high) == (100, 100, 50, 200)
    assert result.rollover is False


@pytest.mark.parametrize(
    ("current", "expected_result"),
    [
        (1049, CheckResult.LOW),
        (1050, CheckResult.IN_RANGE),
        (1200, CheckResult.IN_RANGE),
        (1201, CheckResult.HIGH),
    ],
)
def test_the_band_edges_are_inclusive(current, expected_result):
    assert band(current).result is expected_result


@pytest.mark.parametrize("meter_class", sorted(DEFAULT_FACTORS))
def test_the_band_uses_the_configured_factors_and_its_edges_are_inclusive(meter_class):
    low_factor, high_factor = DEFAULT_FACTORS[meter_class]
    low, high = round(100 * low_factor), round(100 * high_factor)  # expected use: 10/day x 10 days = 100
    result = band(1000 + low, factors=(low_factor, high_factor))
    assert (result.result, result.low, result.high) == (CheckResult.IN_RANGE, low, high)
    assert band(1000 + high, factors=(low_factor, high_factor)).result is CheckResult.IN_RANGE
    assert band(1000 + low - 1, factors=(low_factor, high_factor)).result is CheckResult.LOW
    assert band(1000 + high + 1, factors=(low_factor, high_factor)).result is CheckResult.HIGH


def test_other_configured_factors_move_the_band():
    assert band(1150, factors=(0.5, 2.0)).result is CheckResult.IN_RANGE
    assert band(1150, factors=(0.9, 1.1)).result is CheckResult.HIGH
    assert band(1095, factors=(0.9, 1.1)).result is CheckResult.IN_RANGE
    assert band(1085, factors=(0.9, 1.1)).result is CheckResult.LOW


def test_the_multiplier_scales_consumption_before_the_band_check():
    # 100 register units x 10 = 1000 kWh against an expected 100/day x 10 days = 1000 kWh.
    assert band(1100, multiplier=10.0, avg_daily=100.0).result is CheckResult.IN_RANGE
    assert band(1100, multiplier=1.0, avg_daily=100.0).result is CheckResult.LOW
    assert band(1100, multiplier=10.0, avg_daily=100.0).consumption == 1000.0


def test_a_rollover_is_checked_as_the_consumption_it_implies():
    result = band(40, previous=99_990, days=5, avg_daily=10.0)
    assert (result.result, result.consumption, result.rollover) == (CheckResult.IN_RANGE, 50, True)


def test_a_lower_value_after_an_estimate_is_low_not_a_huge_rollover():
    result = band(900, previous=1000, previous_estimated=True)
    assert (result.result, result.consumption, result.rollover) == (CheckResult.LOW, -100, False)


def test_expected_use_grows_with_the_days_since_the_previous_read():
    assert band(1300, days=10).result is CheckResult.HIGH
    assert band(1300, days=30).result is CheckResult.IN_RANGE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"previous": None, "previous_at_ms": T0},
        {"previous": 1000, "previous_at_ms": None},
    ],
)
def test_without_a_previous_read_there_is_no_history(kwargs):
    result = expected_band(
        current=1100,
        read_at_ms=T0 + MS_PER_DAY,
        dials=5,
        multiplier=1.0,
        avg_daily=10.0,
        low_factor=0.5,
        high_factor=2.0,
        **kwargs,
    )
    assert result.result is CheckResult.NO_HISTORY
    assert (result.consumption, result.expected, result.low, result.high) == (None, None, None, None)


@pytest.mark.parametrize("avg_daily", [None, 0, 0.0, -3.0])
def test_without_an_average_there_is_no_history_but_consumption_is_still_reported(avg_daily):
    result = band(1100, avg_daily=avg_daily)
    assert result.result is CheckResult.NO_HISTORY
    assert (result.consumption, result.expected, result.low, result.high) == (100, None, None, None)


def test_the_band_check_refuses_a_value_the_register_cannot_show():
    with pytest.raises(ReadingRuleError) as caught:
        band(100_000, dials=5)
    assert caught.value.rule == "value_out_of_register"


@given(
    previous=st.integers(0, 99_999),
    current=st.integers(0, 99_999),
    avg_daily=st.floats(0.1, 1000),
    days=st.integers(0, 90),
    factors=st.sampled_from(sorted(DEFAULT_FACTORS.values())),
    multiplier=st.sampled_from([1.0, 0.5, 10.0, 40.0]),
    estimated=st.booleans(),
)
def test_the_stored_check_agrees_with_its_own_bounds(
    previous, current, avg_daily, days, factors, multiplier, estimated
):
    """A reader shown "expected low..high" is warned exactly when the consumption lies outside it."""
    result = band(
        current,
        previous,
        days=days,
        dials=5,
        multiplier=multiplier,
        avg_daily=avg_daily,
        factors=factors,
        previous_estimated=estimated,
    )
    assert result.expected == pytest.approx(avg_daily * days)
    assert result.low <= result.high
    assert result.low == pytest.approx(result.expected * factors[0], abs=1)
    assert result.high == pytest.approx(result.expected * factors[1], abs=1)
    if result.consumption < result.low:
        assert result.result is CheckResult.LOW
    elif result.consumption > result.high:
        assert result.result is CheckResult.HIGH
    else:
        assert result.result is CheckResult.IN_RANGE


# --- hard rules ----------------------------------------------------------------------------------------


def test_a_reading_dated_in_the_future_beyond_the_skew_is_refused():
    with pytest.raises(ReadingRuleError) as caught:
        check_read_time(T0 + 60_001, previous_at_ms=None, now_ms=T0, max_skew_ms=60_000)
    assert caught.value.rule == "read_in_future"


def test_a_reading_within_the_allowed_skew_is_accepted():
    check_read_time(T0 + 60_000, previous_at_ms=T0 - MS_PER_DAY, now_ms=T0, max_skew_ms=60_000)


def test_a_reading_dated_before_the_previous_read_is_refused():
    with pytest.raises(ReadingRuleError) as caught:
        check_read_time(T0 - 1, previous_at_ms=T0, now_ms=T0 + MS_PER_DAY, max_skew_ms=0)
    assert caught.value.rule == "read_before_previous"


def test_a_reading_at_the_same_time_as_the_previous_is_accepted():
    check_read_time(T0, previous_at_ms=T0, now_ms=T0, max_skew_ms=0)


@pytest.mark.parametrize(("value", "dials"), [(0, 1), (9, 1), (99_999, 5), (10**12 - 1, 12)])
def test_register_values_from_zero_to_all_nines_are_valid(value, dials):
    check_register_value(value, dials)


@pytest.mark.parametrize(("value", "dials"), [(-1, 5), (100_000, 5), (10, 1), (10**12, 12)])
def test_register_values_outside_the_dials_are_refused(value, dials):
    with pytest.raises(ReadingRuleError) as caught:
        check_register_value(value, dials)
    assert caught.value.rule == "value_out_of_register"


@pytest.mark.parametrize(("value", "skip_code"), [(None, None), (12, "dog")])
def test_a_reading_needs_exactly_one_of_value_or_skip_code(value, skip_code):
    with pytest.raises(ReadingRuleError) as caught:
        check_skip_or_value(value, skip_code)
    assert caught.value.rule == "value_or_skip"


@pytest.mark.parametrize(("value", "skip_code"), [(0, None), (None, "locked_gate")])
def test_a_value_or_a_skip_code_alone_is_accepted(value, skip_code):
    check_skip_or_value(value, skip_code)
