"""Charts drawn on the server as SVG: the geometry behind the macros in templates/charts.html. No script,
no external library, nothing fetched: a chart is markup in the page.

Macros (a stable interface for every page):

    {% from "charts.html" import bar_chart, stacked_bar_chart, line_chart, pareto_chart %}

    bar_chart(labels, values, title, desc, unit="", digits=0, width=640, height=240)
        One bar per label; a value may be negative (the bar hangs below zero) or None (no bar). E.g. a
        customer's consumption per month:
            bar_chart(months|map(attribute="label")|list, months|map(attribute="consumption")|list,
                      _("Consumption per month"), _("Last 12 months"), unit="kWh")
    stacked_bar_chart(labels, series, title, desc, unit="", digits=0, width=640, height=260)
        series: [(name, values), ...] stacked bottom-up in that order (negative values count as 0).
    line_chart(labels, series, title, desc, unit="", digits=0, width=640, height=240)
        series: [(name, values), ...]; a None value leaves a gap in its line.
    pareto_chart(volumes, title, desc, unit="", classes=(), guides=(0.8, 0.95), width=640, height=280)
        volumes: positive volumes in rank order, largest first (any number of customers: beyond 50 they
        are drawn in 50 groups); classes: [(name, count), ...] in rank order, shading each class's stretch
        of customers; guides: cumulative shares drawn as dashed lines.

Every chart is an <svg role="img"> labelled by its <title> and <desc>, with axis labels, a legend when
there are several series, a <title> on each mark (a tooltip without script), and its numbers in a table
inside <details> below it for people who would rather read, or cannot see, the picture. Series colours
come from style.css (classes series-0 ... series-5, class-A/B/C).

The functions below are pure: they turn numbers into coordinates and are registered as template globals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from babel.numbers import format_percent as babel_percent
from babel.numbers import get_decimal_symbol, get_group_symbol
from flask import g
from flask_babel import format_decimal, format_percent, get_locale

from . import bp

MARGIN_LEFT = 60
MARGIN_RIGHT = 16
MARGIN_TOP = 14
MARGIN_BOTTOM = 34
LEGEND_HEIGHT = 20
LABEL_WIDTH = 64  # horizontal room one x-axis label needs
PARETO_BARS = 50


def nice_scale(low: float, high: float, ticks: int = 5, integers: bool = False) -> tuple[float, float, float]:
    """(bottom, top, step) of an axis covering [low, high] and zero, in steps of 1, 2, 2.5 or 5 x 10^k
    (whole steps for counts)."""
    low, high = min(0.0, low), max(0.0, high)
    if high == low:
        high = low + 1.0
    raw = (high - low) / max(1, ticks)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    if integers:
        step = max(1, math.ceil(step))
    return math.floor(low / step) * step, math.ceil(high / step) * step, step


def compact(value: float) -> str:
    """A short axis label: 950, 12k, 1.5M (trailing zeros dropped)."""
    magnitude = abs(value)
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= size:
            text = f"{value / size:.1f}".rstrip("0").rstrip(".")
            return text + suffix
    if magnitude and magnitude < 10 and value != round(value):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.0f}"


def _counts(values: Iterable[Any]) -> bool:
    """Whether every value is a whole count (ints): then an axis has no fractional ticks."""
    return all(isinstance(v, int) for v in values)


class _Frame:
    """The plot area inside the margins, and value -> pixel on the y axis."""

    def __init__(self, width: int, height: int, bottom: float, top: float, legend: bool, right: int = MARGIN_RIGHT):
        self.width, self.height = width, height
        self.left, self.right = MARGIN_LEFT, width - right
        self.top = MARGIN_TOP + (LEGEND_HEIGHT if legend else 0)
        self.base = height - MARGIN_BOTTOM
        self.low, self.high = bottom, top

    @property
    def plot_width(self) -> float:
        return self.right - self.left

    def y(self, value: float) -> float:
        span = (self.high - self.low) or 1.0
        return round(self.base - (value - self.low) / span * (self.base - self.top), 1)

    def ticks(self, step: float) -> list[dict[str, Any]]:
        count = round((self.high - self.low) / step)
        return [{"y": self.y(self.low + k * step), "text": compact(self.low + k * step)} for k in range(count + 1)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "left": self.left,
            "right": self.right,
            "top": self.top,
            "base": self.base,
        }


def _slots(frame: _Frame, labels: Sequence[Any]) -> tuple[float, list[dict[str, Any]]]:
    """Width of one category and the x labels that fit (every k-th)."""
    count = max(1, len(labels))
    slot = frame.plot_width / count
    every = max(1, math.ceil(LABEL_WIDTH / slot))
    shown = [
        {"x": round(frame.left + (i + 0.5) * slot, 1), "text": str(label)}
        for i, label in enumerate(labels)
        if i % every == 0
    ]
    return slot, shown


def bar_layout(labels: Sequence[Any], values: Sequence[float | None], width: int = 640, height: int = 240) -> dict:
    numbers = [v for v in values if v is not None]
    low, high, step = nice_scale(min(numbers, default=0.0), max(numbers, default=0.0), integers=_counts(numbers))
    frame = _Frame(width, height, low, high, legend=False)
    slot, xlabels = _slots(frame, labels)
    zero = frame.y(0.0)
    bars = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        if value is None:
            continue
        top = frame.y(value)
        bars.append(
            {
                "x": round(frame.left + i * slot + slot * 0.15, 1),
                "y": min(top, zero),
                "w": round(slot * 0.7, 1),
                "h": round(abs(zero - top), 1),
                "label": str(label),
                "value": value,
                "negative": value < 0,
            }
        )
    return {**frame.as_dict(), "zero": zero, "ticks": frame.ticks(step), "xlabels": xlabels, "bars": bars}


def stacked_layout(
    labels: Sequence[Any], series: Sequence[tuple[Any, Sequence[float | None]]], width: int = 640, height: int = 260
) -> dict:
    totals = [sum(max(0.0, s[1][i] or 0.0) for s in series) for i in range(len(labels))]
    counts = _counts(v for _, values in series for v in values if v is not None)
    low, high, step = nice_scale(0.0, max(totals, default=0.0), integers=counts)
    frame = _Frame(width, height, low, high, legend=len(series) > 1)
    slot, xlabels = _slots(frame, labels)
    columns = []
    for i, label in enumerate(labels):
        running = 0.0
        parts = []
        for index, (name, values) in enumerate(series):
            value = max(0.0, values[i] or 0.0)
            if value:
                y_top, y_bottom = frame.y(running + value), frame.y(running)
                height_px = round(y_bottom - y_top, 1)
                parts.append({"series": index, "name": str(name), "value": values[i], "y": y_top, "h": height_px})
            running += value
        columns.append(
            {
                "x": round(frame.left + i * slot + slot * 0.15, 1),
                "w": round(slot * 0.7, 1),
                "label": str(label),
                "total": totals[i],
                "parts": parts,
            }
        )
    return {
        **frame.as_dict(),
        "ticks": frame.ticks(step),
        "xlabels": xlabels,
        "columns": columns,
        "legend": _legend(frame, [name for name, _ in series]),
    }


def line_layout(
    labels: Sequence[Any], series: Sequence[tuple[Any, Sequence[float | None]]], width: int = 640, height: int = 240
) -> dict:
    numbers = [v for _, values in series for v in values if v is not None]
    low, high, step = nice_scale(min(numbers, default=0.0), max(numbers, default=0.0), integers=_counts(numbers))
    frame = _Frame(width, height, low, high, legend=len(series) > 1)
    slot, xlabels = _slots(frame, labels)
    lines = []
    for index, (name, values) in enumerate(series):
        segments: list[list[tuple[float, float]]] = [[]]
        points = []
        for i, value in enumerate(values):
            if value is None:
                if segments[-1]:
                    segments.append([])
                continue
            x, y = round(frame.left + (i + 0.5) * slot, 1), frame.y(value)
            segments[-1].append((x, y))
            points.append({"x": x, "y": y, "label": str(labels[i]), "value": value})
        paths = [" ".join(f"{x},{y}" for x, y in segment) for segment in segments if segment]
        lines.append({"series": index, "name": str(name), "paths": paths, "points": points})
    return {
        **frame.as_dict(),
        "ticks": frame.ticks(step),
        "xlabels": xlabels,
        "lines": lines,
        "legend": _legend(frame, [name for name, _ in series]),
    }


def _legend(frame: _Frame, names: Sequence[Any]) -> list[dict[str, Any]]:
    if len(names) < 2:
        return []
    entries, x = [], float(frame.left)
    for index, name in enumerate(names):
        entries.append({"series": index, "name": str(name), "x": round(x, 1), "y": MARGIN_TOP})
        x += 22 + 7 * len(str(name))
    return entries


def pareto_layout(
    volumes: Sequence[float],
    classes: Sequence[tuple[Any, int]] = (),
    guides: Sequence[float] = (0.8, 0.95),
    width: int = 640,
    height: int = 280,
) -> dict:
    """Bars of volume per customer (or per group of customers beyond PARETO_BARS), the cumulative share
    as a line on a 0-100 % axis at the right, guides at cumulative shares and class stretches shaded."""
    n = len(volumes)
    total = math.fsum(volumes)
    groups = min(n, PARETO_BARS)
    edges = [round(k * n / groups) for k in range(groups + 1)] if groups else [0]
    sums = [math.fsum(volumes[edges[k] : edges[k + 1]]) for k in range(groups)]
    low, high, step = nice_scale(0.0, max(sums, default=0.0))
    frame = _Frame(width, height, low, high, legend=False, right=48)

    def x_at(count: float) -> float:
        return round(frame.left + (count / n if n else 0.0) * frame.plot_width, 1)

    def y_share(share: float) -> float:
        return round(frame.base - share * (frame.base - frame.top), 1)

    bars, points, running = [], [(x_at(0), y_share(0.0))], 0.0
    for k in range(groups):
        first, last = edges[k], edges[k + 1]
        running += sums[k]
        share = running / total if total else 0.0
        left, right = x_at(first), x_at(last)
        y = frame.y(sums[k])
        bars.append(
            {
                "x": round(left + 0.5, 1),
                "y": y,
                "w": round(max(0.5, right - left - 1), 1),
                "h": round(frame.base - y, 1),
                "first": first + 1,
                "last": last,
                "value": sums[k],
                "share": sums[k] / total if total else 0.0,
                "cumulative": share,
            }
        )
        points.append((right, y_share(share)))
    regions, start = [], 0
    for name, count in classes:
        if count <= 0:
            continue
        end = min(n, start + count)
        regions.append(
            {"name": str(name), "x": x_at(start), "w": round(x_at(end) - x_at(start), 1), "first": start, "last": end}
        )
        start = end
    percent_ticks = [{"y": y_share(k / 5), "share": k / 5} for k in range(6)]
    xticks = [{"x": x_at(n * k / 5), "share": k / 5} for k in range(6)] if n else []
    return {
        **frame.as_dict(),
        "ticks": frame.ticks(step),
        "percent_ticks": percent_ticks,
        "xticks": xticks,
        "bars": bars,
        "line": " ".join(f"{x},{y}" for x, y in points),
        "guides": [{"y": y_share(share), "share": share} for share in guides],
        "regions": regions,
        "customers": n,
        "total": total,
    }


@bp.app_template_global()
def chart_id(title: Any) -> str:
    """An id unique within the page for a chart's <title>/<desc> (aria-labelledby)."""
    g.chart_count = getattr(g, "chart_count", 0) + 1
    return f"chart-{g.chart_count}"


@bp.app_template_global()
def chart_number(value: float | None, digits: int = 0) -> str:
    """A number for people, in the page's language (grouping, decimal mark)."""
    if value is None:
        return "—"
    if _plain(value):
        return _grouped(Decimal(str(value)), digits)
    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "")
    return format_decimal(value, format=pattern)


# Babel parses the pattern and looks the locale up on every call: pages that format thousands of numbers
# (a VIP list, a chart per route) format plain non-negative numbers themselves, exactly as babel does for
# these patterns: the float's shortest decimal (str), rounded half-even, groups of three.


def _plain(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _grouped(number: Decimal, digits: int) -> str:
    group, decimal, _percent = _symbols()
    text = f"{number:,.{max(digits, 0)}f}"  # Decimal formats half-even (the default context)
    return text.replace(",", "\0").replace(".", decimal).replace("\0", group)


def _symbols() -> tuple[str, str, str]:
    """The page language's group separator, decimal mark and percent sign (looked up once per request)."""
    symbols = getattr(g, "chart_number_symbols", None)
    if symbols is None:
        locale = get_locale() or "en"
        symbols = g.chart_number_symbols = (
            get_group_symbol(locale),
            get_decimal_symbol(locale),
            babel_percent(0, format="0%", locale=locale)[1:],  # the sign, as babel writes it
        )
    return symbols


@bp.app_template_global()
def chart_percent(share: float | None, digits: int = 1) -> str:
    if share is None:
        return "—"
    if _plain(share):
        return f"{_grouped(Decimal(str(share)).scaleb(2), digits)} {_symbols()[2]}"
    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "") + " %"
    return format_percent(share, format=pattern)


for _name, _function in (
    ("chart_bar_layout", bar_layout),
    ("chart_stacked_layout", stacked_layout),
    ("chart_line_layout", line_layout),
    ("chart_pareto_layout", pareto_layout),
):
    bp.add_app_template_global(_function, _name)
