"""The ABC rule as a pure function (services.analysis.classify): properties over generated customers, and
the worked examples of docs/analysis.md. No database, no app."""

from __future__ import annotations

import math
import random
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from server.services.analysis import AbcClass, Rule, Variant, classify, to_share

ORDER = {AbcClass.A: 0, AbcClass.B: 1, AbcClass.C: 2}

# volumes: small integers make ties common; floats and fractions test exactness; some zero and negative
volume = st.one_of(
    st.integers(min_value=-3, max_value=12),
    st.integers(min_value=0, max_value=10**6),
    st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False),
    st.fractions(min_value=0, max_value=1000, max_denominator=50),
)
account = st.text(alphabet="0123456789", min_size=1, max_size=6)
customers = st.dictionaries(account, volume, max_size=40)
share = st.fractions(min_value=Fraction(1, 100), max_value=1, max_denominator=1000)


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    variant = draw(st.sampled_from(Variant))
    a, b = draw(share), draw(share)
    if variant is Variant.CUMULATIVE:
        a, b = min(a, b), max(a, b)
    return Rule(variant, a, b)


def exact(value) -> Fraction:
    return Fraction(value)


def consuming(volumes) -> dict[str, Fraction]:
    return {key: exact(v) for key, v in volumes.items() if exact(v) > 0}


def tie_groups(volumes, keys) -> list[list[str]]:
    """Consecutive groups of equal volume among `keys` (already in rank order)."""
    groups: list[list[str]] = []
    for key in keys:
        if groups and exact(volumes[groups[-1][0]]) == exact(volumes[key]):
            groups[-1].append(key)
        else:
            groups.append([key])
    return groups


# --- properties --------------------------------------------------------------------------------------


@given(customers, rules())
def test_every_customer_gets_exactly_one_class_and_one_rank(volumes, rule):
    result = classify(volumes, rule)
    keys = [ranked.key for ranked in result.ranking]
    assert sorted(keys) == sorted(volumes)
    assert [ranked.rank for ranked in result.ranking] == list(range(1, len(volumes) + 1))
    assert all(ranked.abc in AbcClass for ranked in result.ranking)
    assert sum(t.customers for t in result.totals) == len(volumes)


@given(customers, rules())
def test_ranking_is_by_volume_descending_then_key(volumes, rule):
    result = classify(volumes, rule)
    order = [(-exact(volumes[r.key]), r.key) for r in result.ranking]
    assert order == sorted(order)


@given(customers, rules())
def test_classes_are_monotone_in_volume_and_equal_volumes_share_a_class(volumes, rule):
    result = classify(volumes, rule)
    ranked = result.ranking
    for x in ranked:
        for y in ranked:
            vx, vy = exact(volumes[x.key]), exact(volumes[y.key])
            if vx > vy:
                assert ORDER[x.abc] <= ORDER[y.abc], (x, y)
            if vx == vy:
                assert x.abc is y.abc, (x, y)


@given(customers, rules())
def test_customers_without_consumption_are_c_and_not_counted(volumes, rule):
    result = classify(volumes, rule)
    positive = consuming(volumes)
    assert result.consuming == len(positive)
    assert result.total_volume == pytest.approx(float(sum(positive.values(), Fraction(0))))
    for ranked in result.ranking:
        if ranked.key not in positive:
            assert ranked.abc is AbcClass.C and ranked.cumulative_share == 0.0
    # the consuming customers come first
    places = [ranked.key in positive for ranked in result.ranking]
    assert places == sorted(places, reverse=True)


@given(customers, st.fractions(min_value=Fraction(1, 100), max_value=1, max_denominator=1000))
def test_count_rule_makes_the_first_ceil_share_of_consumers_a_and_extends_only_over_ties(volumes, a):
    rule = Rule(Variant.COUNT, a, Fraction(95, 100))
    result = classify(volumes, rule)
    n = result.consuming
    target = math.ceil(a * n)  # exact: a is a Fraction
    in_a = [r.key for r in result.ranking if r.abc is AbcClass.A]
    assert len(in_a) >= target
    if n:
        assert target >= 1
        boundary = exact(volumes[result.ranking[target - 1].key])
        # every A beyond the first `target` ties with the last of them
        assert all(exact(volumes[key]) == boundary for key in in_a[target:])


@given(st.lists(st.integers(min_value=1, max_value=10**9), unique=True, max_size=40), share)
def test_count_rule_with_distinct_volumes_has_exactly_ceil_share_of_a(values, a):
    volumes = {f"{i:04d}": v for i, v in enumerate(values)}
    result = classify(volumes, Rule(Variant.COUNT, a, Fraction(95, 100)))
    assert result.total(AbcClass.A).customers == math.ceil(a * len(values))


@given(customers, rules())
def test_a_and_b_reach_the_b_threshold_and_no_b_group_beyond_it(volumes, rule):
    """C holds only what lies wholly beyond b of the volume: A and B together reach b·T whenever anyone consuming
    is C, and without its last tie group B would not have reached it."""
    result = classify(volumes, rule)
    positive = consuming(volumes)
    total = sum(positive.values(), Fraction(0))
    ranked = [r for r in result.ranking if r.key in positive]
    upper = [r.key for r in ranked if r.abc is not AbcClass.C]
    upper_volume = sum((positive[k] for k in upper), Fraction(0))
    if any(r.abc is AbcClass.C for r in ranked):
        assert upper_volume >= rule.b * total
        assert total - upper_volume <= (1 - rule.b) * total
    in_b = [r.key for r in ranked if r.abc is AbcClass.B]
    if in_b:
        last_group = tie_groups(volumes, in_b)[-1]
        assert upper_volume - sum(positive[k] for k in last_group) < rule.b * total


@given(customers, rules())
def test_cumulative_rule_a_reaches_its_share_and_no_a_group_beyond_it(volumes, rule):
    assume(rule.variant is Variant.CUMULATIVE)
    result = classify(volumes, rule)
    positive = consuming(volumes)
    total = sum(positive.values(), Fraction(0))
    in_a = [r.key for r in result.ranking if r.abc is AbcClass.A]
    a_volume = sum((positive[k] for k in in_a), Fraction(0))
    if any(r.abc is not AbcClass.A for r in result.ranking if r.key in positive):
        assert a_volume >= rule.a * total
    if in_a:
        last_group = tie_groups(volumes, in_a)[-1]
        assert a_volume - sum(positive[k] for k in last_group) < rule.a * total


@given(customers, rules(), st.randoms(use_true_random=False))
def test_permutation_of_the_input_gives_the_same_result(volumes, rule, rnd):
    items = list(volumes.items())
    rnd.shuffle(items)
    assert classify(dict(items), rule) == classify(volumes, rule)
    assert classify(dict(items), rule).ranking == classify(volumes, rule).ranking


@given(customers, rules(), st.integers(min_value=1, max_value=10**6))
def test_classes_depend_on_shares_not_on_units(volumes, rule, factor):
    scaled = {key: exact(v) * factor for key, v in volumes.items()}
    assert classify(scaled, rule).classes() == classify(volumes, rule).classes()


@given(customers, rules())
def test_class_totals_add_up(volumes, rule):
    result = classify(volumes, rule)
    if result.consuming:
        assert sum(t.volume_share for t in result.totals) == pytest.approx(1.0)
        assert result.ranking[result.consuming - 1].cumulative_share == pytest.approx(1.0)
    else:
        assert all(t.volume_share == 0 for t in result.totals)


# --- worked examples (docs/analysis.md) -----------------------------------------------------------------


TEN = {"K01": 500, "K02": 200, "K03": 100, "K04": 80, "K05": 50, "K06": 30, "K07": 20, "K08": 10, "K09": 6, "K10": 4}


def classes_of(result) -> str:
    return "".join(ranked.abc.value for ranked in result.ranking)


def test_example_count_rule_ten_customers():
    """n = 10: ceil(10/3) = 4 are A (88 % of the volume). K05 starts at 88 % -> B; K06 starts at 93 %, below
    95 %, and crosses it -> B; K07 starts at 96 % -> C. C holds 4 % of the volume."""
    result = classify(TEN)
    assert classes_of(result) == "AAAABBCCCC"
    assert [t.volume_share for t in result.totals] == pytest.approx([0.88, 0.08, 0.04])
    assert result["K06"].cumulative_share == pytest.approx(0.96)


def test_example_textbook_rule_ten_customers():
    """A until 80 %: K03 ends exactly at 80 % -> A; K04 starts at 80 % -> B; B until 95 %: K06 crosses -> B."""
    result = classify(TEN, Rule.make(Variant.CUMULATIVE))
    assert classes_of(result) == "AAABBBCCCC"


def test_example_tie_straddling_the_a_boundary_goes_to_a_whole():
    volumes = {"100": 40, "101": 30, "102": 30, "103": 10, "104": 5, "105": 5}
    result = classify(volumes)  # ceil(6/3) = 2 places, but "102" ties with "101"
    assert classes_of(result) == "AAABBB"
    assert [r.key for r in result.ranking] == ["100", "101", "102", "103", "104", "105"]


def test_example_tie_straddling_the_b_boundary_goes_to_b_whole():
    # 88, 6 -> A (ceil(3/3)... n = 4 -> 2 A); "c" starts at 94 % < 95 % -> B, and "d" ties with it -> B
    volumes = {"a": 88, "b": 6, "c": 3, "d": 3}
    assert classes_of(classify(volumes)) == "AABB"
    # without the tie "d" starts at 97 % -> C
    assert classes_of(classify({"a": 88, "b": 6, "c": 3, "d": 2.9})) == "AABC"


def test_example_customer_starting_exactly_at_95_percent_is_c():
    volumes = {"a": 60, "b": 25, "c": 10, "d": 5}
    # n = 4 -> 2 A (85 %); "c" starts at 85 % -> B and ends exactly at 95 %; "d" starts at 95 % -> C
    assert classes_of(classify(volumes)) == "AABC"


def test_example_customers_without_readings_are_c_and_do_not_count_toward_the_third():
    volumes = {"a": 100, "b": 0, "c": 0, "d": 0, "e": -5}
    result = classify(volumes)
    assert classes_of(result) == "ACCCC"
    assert result.consuming == 1 and result.total(AbcClass.A).volume_share == 1.0
    assert [r.key for r in result.ranking] == ["a", "b", "c", "d", "e"]  # by volume, then account number


def test_example_one_customer_is_a_and_two_customers_split_by_volume():
    assert classes_of(classify({"a": 5})) == "A"
    assert classes_of(classify({"a": 96, "b": 4})) == "AC"  # "b" starts at 96 %
    assert classes_of(classify({"a": 90, "b": 10})) == "AB"  # "b" starts at 90 %


def test_example_empty_period_classifies_everyone_c():
    result = classify({"a": 0, "b": 0.0, "c": Decimal(0)})
    assert classes_of(result) == "CCC"
    assert result.total_volume == 0 and result.consuming == 0
    assert [t.volume_share for t in result.totals] == [0, 0, 0]
    assert classify({}).ranking == ()


def test_example_all_equal_volumes_are_all_a():
    assert classes_of(classify({f"{i}": 7 for i in range(9)})) == "A" * 9


def test_example_a_above_95_percent_leaves_no_b():
    assert classes_of(classify({"a": 960, "b": 13, "c": 12, "d": 8, "e": 7})) == "AACCC"


def test_sums_are_exact_not_floating_point():
    """In floats 0.7 + 0.2 = 0.8999999999999999 < 0.9: "c" would be B. Exactly, "c" starts at 90 % -> C."""
    volumes = {"a": Decimal("0.7"), "b": Decimal("0.2"), "c": Decimal("0.1")}
    result = classify(volumes, Rule.make(Variant.CUMULATIVE, a="0.7", b="0.9"))
    assert classes_of(result) == "ABC"


def test_large_population_classifies_quickly_enough_and_consistently():
    rnd = random.Random(5)
    volumes = {f"{i:06d}": rnd.lognormvariate(3, 1.5) for i in range(20000)}
    result = classify(volumes)
    assert result.total(AbcClass.A).customers == math.ceil(20000 / 3)
    assert result.total(AbcClass.C).volume_share <= 0.05


# --- thresholds ----------------------------------------------------------------------------------------


def test_shares_are_read_exactly():
    assert to_share("1/3") == Fraction(1, 3)
    assert to_share(0.95) == Fraction(19, 20)  # the decimal it prints as, not the binary approximation
    assert to_share(Decimal("33.33")) / 100 == Fraction(3333, 10000)
    assert Rule.make(Variant.CUMULATIVE) == Rule(Variant.CUMULATIVE, Fraction(4, 5), Fraction(19, 20))
    assert Rule.make("count", b="0.9") == Rule(Variant.COUNT, Fraction(1, 3), Fraction(9, 10))


@pytest.mark.parametrize(
    ("variant", "a", "b"),
    [("count", 0, "0.95"), ("count", "1/3", 0), ("count", "1.5", "0.95"), ("cumulative", "0.9", "0.8")],
)
def test_invalid_thresholds_are_refused(variant, a, b):
    with pytest.raises(ValueError):
        Rule.make(variant, a, b)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "12", True, None])
def test_volumes_must_be_finite_numbers(bad):
    with pytest.raises((TypeError, ValueError)):
        classify({"a": bad})
