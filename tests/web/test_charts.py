"""The server-side SVG charts (server/web/charts.py and templates/charts.html): geometry, and the markup
people and screen readers get (title, description, tooltips, the data table) without any script."""

from __future__ import annotations

import re

import pytest
from flask import Flask, render_template_string

from server.web.charts import bar_layout, compact, line_layout, nice_scale, pareto_layout, stacked_layout

MACROS = '{% from "charts.html" import bar_chart, stacked_bar_chart, line_chart, pareto_chart %}'


@pytest.mark.parametrize(
    ("low", "high", "integers", "expected"),
    [
        (0, 1234, False, (0, 1250, 250)),
        (-3, 10, False, (-5, 10, 5)),
        (0, 0.37, False, (0, 0.4, 0.1)),
        (5, 5, False, (0, 5, 1)),
        (0, 0, True, (0, 1, 1)),
        (0, 3, True, (0, 3, 1)),
    ],
)
def test_axis_covers_the_data_and_zero_in_nice_steps(low, high, integers, expected):
    bottom, top, step = nice_scale(low, high, integers=integers)
    assert (bottom, top, step) == pytest.approx(expected)
    assert bottom <= min(low, 0) and top >= max(high, 0)


def test_compact_axis_labels():
    assert [compact(v) for v in (0, 950, 12000, 1_500_000, 2.5, -3000)] == ["0", "950", "12k", "1.5M", "2.5", "-3k"]


def test_bars_grow_from_zero_and_skip_missing_values():
    layout = bar_layout(["a", "b", "c"], [10, -5, None], width=300, height=200)
    bars = {bar["label"]: bar for bar in layout["bars"]}
    assert set(bars) == {"a", "b"}
    assert bars["a"]["y"] + bars["a"]["h"] == pytest.approx(layout["zero"])  # up from zero
    assert bars["b"]["y"] == pytest.approx(layout["zero"]) and bars["b"]["negative"]  # down from zero
    assert bars["a"]["h"] == pytest.approx(2 * bars["b"]["h"], abs=0.2)  # pixels rounded to 0.1


def test_x_labels_are_thinned_to_fit():
    layout = bar_layout([f"d{i}" for i in range(90)], [1] * 90, width=640)
    shown = [label["text"] for label in layout["xlabels"]]
    assert shown[0] == "d0" and 5 <= len(shown) <= 12
    assert len(layout["bars"]) == 90


def test_stacked_columns_add_up_and_lines_break_at_gaps():
    stacked = stacked_layout(["r1"], [("done", [6]), ("skipped", [2])], height=200)
    parts = stacked["columns"][0]["parts"]
    assert [p["name"] for p in parts] == ["done", "skipped"]
    assert parts[1]["y"] + parts[1]["h"] == pytest.approx(parts[0]["y"])  # skipped sits on done
    assert parts[0]["h"] == pytest.approx(3 * parts[1]["h"])
    line = line_layout(["a", "b", "c", "d"], [("median", [1.0, None, 2.0, 3.0])])
    assert len(line["lines"][0]["paths"]) == 2 and len(line["lines"][0]["points"]) == 3


def test_pareto_groups_many_customers_and_ends_at_one_hundred_percent():
    volumes = [float(v) for v in range(1000, 0, -1)]
    layout = pareto_layout(volumes, classes=[("A", 334), ("B", 300), ("C", 366)], guides=(0.8, 0.95))
    assert len(layout["bars"]) == 50
    assert layout["bars"][0]["first"] == 1 and layout["bars"][-1]["last"] == 1000
    assert layout["bars"][-1]["cumulative"] == pytest.approx(1.0)
    x, y = (float(n) for n in layout["line"].split()[-1].split(","))
    assert (x, y) == (layout["right"], layout["top"])  # 100 % at the top right
    widths = [region["w"] for region in layout["regions"]]
    assert widths[0] / sum(widths) == pytest.approx(0.334, abs=0.01)
    assert [g["share"] for g in layout["guides"]] == [0.8, 0.95]
    assert layout["guides"][0]["y"] > layout["guides"][1]["y"]  # 95 % drawn above 80 %
    small = pareto_layout([5.0, 3.0, 2.0])
    assert [bar["first"] for bar in small["bars"]] == [1, 2, 3]
    assert pareto_layout([])["bars"] == []


def test_rendered_charts_are_labelled_images_with_their_data(app: Flask):
    with app.test_request_context("/"):
        html = render_template_string(
            MACROS
            + '{{ bar_chart(["Jan", "Feb"], [1200, 30], "Monthly use", "Two months", unit="kWh") }}'
            + '{{ line_chart(["w1", "w2"], [("Median", [1.5, None])], "Trend", "Median per week") }}'
            + '{{ stacked_bar_chart(["R1"], [("Done", [3]), ("Skipped", [1])], "Routes", "Per route") }}'
            + '{{ pareto_chart([60, 30, 10], "Pareto", "Ranked", classes=[("A", 1), ("B", 1), ("C", 1)]) }}'
        )
    ids = re.findall(r'aria-labelledby="(chart-\d+)-title \1-desc"', html)
    assert ids == ["chart-1", "chart-2", "chart-3", "chart-4"]  # unique within the page
    assert (
        '<title id="chart-1-title">Monthly use</title>' in html and '<desc id="chart-1-desc">Two months</desc>' in html
    )
    assert html.count('role="img"') == 4 and "<script" not in html
    assert "<title>Jan: 1,200 kWh</title>" in html  # a tooltip per mark
    assert re.search(r'<th scope="row">Feb</th><td class="num">30</td>', html)  # the data table
    assert re.search(r'<th scope="row">w2</th><td class="num">—</td>', html)  # a gap is shown as such
    assert html.count("<details") == 4
    assert 'class="region class-A"' in html and '<polyline class="cumulative"' in html
