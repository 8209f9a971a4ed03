"""Service-centre page: the KPI dashboard (/kpis) — response and completion times, first-time-fix rate,
jobs per worker, readings per route and reader, complaints — over a period, with trends. Definitions:
services/kpis.py and docs/analysis.md."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from sync_protocol import codes

from ..services import kpis
from ..services.kpis import KpiQuerySchema
from ..services.periods import Grouping, Preset
from . import bp, charts  # noqa: F401 - charts registers the chart helpers the template uses
from .access import staff_required
from .analysis import load_query

PRESET_LABELS: list[tuple[Preset, Any]] = [
    (Preset.LAST_7_DAYS, _l("Last 7 days")),
    (Preset.LAST_30_DAYS, _l("Last 30 days")),
    (Preset.QUARTER, _l("This quarter")),
    (Preset.LAST_QUARTER, _l("Last quarter")),
]
GROUPING_LABELS: list[tuple[Grouping, Any]] = [
    (Grouping.DAY, _l("By day")),
    (Grouping.WEEK, _l("By week")),
    (Grouping.MONTH, _l("By month")),
]


def fmt_duration(seconds: float | None) -> str:
    """A duration for people: 45 s, 12 min, 2 h 05 min, 3 d 4 h."""
    if seconds is None:
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return _("%(s)s s", s=seconds)
    minutes = round(seconds / 60)
    if minutes < 60:
        return _("%(m)s min", m=minutes)
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return _("%(h)s h %(m)02d min", h=hours, m=minutes)
    days, hours = divmod(hours, 24)
    return _("%(d)s d %(h)s h", d=days, h=hours)


def duration_unit(values: Sequence[float | None]) -> tuple[float, str]:
    """(divisor, unit) to chart durations in minutes, or hours when they run long."""
    largest = max((v for v in values if v is not None), default=0.0)
    return (3600.0, _("hours")) if largest > 5 * 3600 else (60.0, _("minutes"))


def scaled(values: Sequence[float | None], divisor: float) -> list[float | None]:
    return [None if v is None else round(v / divisor, 1) for v in values]


@bp.get("/kpis", endpoint="kpis")
@staff_required
def kpis_dashboard() -> Any:
    query, errors = load_query(KpiQuerySchema(), request.args)
    report = kpis.build_report(query.period, query.grouping)
    trend = report.trend
    medians = [point.response.median for point in trend]
    p90s = [point.response.p90 for point in trend]
    divisor, unit = duration_unit(p90s + medians)
    return render_template(
        "kpis_dashboard.html",
        q=query,
        errors=errors,
        r=report,
        labels=[point.label for point in trend],
        response_series=[(_("Median"), scaled(medians, divisor)), (_("90th percentile"), scaled(p90s, divisor))],
        response_unit=unit,
        preset_labels=PRESET_LABELS,
        grouping_labels=GROUPING_LABELS,
        grouping_label=dict(GROUPING_LABELS)[query.grouping],
        priority_labels=codes.PRIORITIES,
        Preset=Preset,
        fmt_duration=fmt_duration,
    )
