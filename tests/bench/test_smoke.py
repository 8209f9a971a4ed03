"""Every benchmark runs once at a tiny size, as `python -m bench <name> ... --json` would in a report run, and
reports what it promises: one JSON object with the machine, the library versions, its parameters and its
figures, every figure a finite number, nothing failed, the records counted. Never a timing: machines differ
and CI is noisy (DESIGN.md section 5)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300
# One gunicorn worker boots fastest; the fleet keeps two, so requests really run side by side.
SMALL_SERVER = ("--workers", "1")


def bench(name: str, *args: str) -> dict[str, Any]:
    """Run one benchmark in its own process; its JSON document."""
    result = subprocess.run(
        [sys.executable, "-m", "bench", name, *args, "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, f"bench {name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"bench {name} printed more than one line on stdout:\n{result.stdout[-2000:]}"
    document = json.loads(lines[0])
    assert document["benchmark"] == name
    assert {"platform", "cpu_count", "python"} <= set(document["machine"])
    assert {"flask", "sqlalchemy", "requests", "sqlite3_library"} <= set(document["versions"])
    assert all(document["versions"][k] for k in ("flask", "sqlalchemy", "requests", "sqlite3_library"))
    assert_finite(document["figures"], name)
    return document


def assert_finite(value: Any, where: str) -> None:
    """Every number in the figures is finite (JSON output refuses NaN already: this also catches None
    where a figure should be)."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            assert_finite(item, f"{where}[{index}]")
    elif isinstance(value, bool | str):
        return
    else:
        assert isinstance(value, int | float) and math.isfinite(value), f"{where} is not a finite number: {value!r}"


def numbers(figures: dict[str, Any], *keys: str) -> None:
    missing = [key for key in keys if key not in figures]
    assert not missing, f"missing figures: {missing}"
    for key in keys:
        assert isinstance(figures[key], int | float) and not isinstance(figures[key], bool), f"{key} not a number"


@pytest.mark.e2e
def test_push_pull_reports_push_pull_and_floor():
    figures = bench("push_pull", "--records", "300", *SMALL_SERVER)["figures"]
    numbers(figures, "records", "push_s", "pull_s", "floor_s", "ratio_to_floor", "bytes_up", "bytes_down",
            "bytes_per_record_up")  # fmt: skip
    assert figures["records"] == 300
    assert figures["push_s"] > 0 and figures["pull_s"] > 0 and figures["floor_s"] > 0
    assert figures["bytes_up"] > 0 and figures["bytes_down"] > 0
    assert figures["bytes_per_record_up"] == pytest.approx(figures["bytes_up"] / 300, abs=0.01)
    assert figures["ratio_to_floor"] == pytest.approx((figures["push_s"] + figures["pull_s"]) / figures["floor_s"],
                                                      rel=0.01)  # fmt: skip
    assert figures["records_pulled"] >= 300  # the readings, and the route they were read on


@pytest.mark.e2e
def test_first_sync_reports_time_bytes_and_both_sides_memory():
    figures = bench("first_sync", "--meters", "200", *SMALL_SERVER)["figures"]
    numbers(figures, "seconds", "bytes", "client_peak_rss_mb", "server_peak_rss_mb")
    assert figures["meters"] == 200 and figures["records"] >= 3 * 200  # meters, premises, customers
    assert figures["bytes"] > 0 and figures["client_peak_rss_mb"] > 0 and figures["server_peak_rss_mb"] > 0


@pytest.mark.e2e
def test_fleet_syncs_every_device_without_an_error_spread_and_in_a_burst():
    # a small spread, and the burst (spread 0) on a server of its own; gthread workers, as in production
    document = bench("fleet", "--devices", "4", "--readings", "10", "--jobs", "2", "--processes", "2",
                     "--workers", "2", "--threads", "2", "--spread", "1.5")  # fmt: skip
    assert document["parameters"]["spread"] == 1.5 and document["parameters"]["burst"] is True
    figures = document["figures"]
    assert figures["spread_s"] == 1.5 and figures["burst"]["spread_s"] == 0
    assert figures["server"] == {"workers": 2, "threads": 2, "worker_class": "gthread"}
    for scenario in (figures, figures["burst"]):
        assert_fleet_synced(scenario)
    burst = figures["burst"]["concurrency"]
    assert burst["syncs_max"] >= 2 and burst["syncs_overlapping_share"] > 0  # released together: they overlap
    assert figures["capacity"]["syncs_per_s"] == figures["burst"]["syncs_per_s"] > 0


@pytest.mark.e2e
def test_fleet_spread_zero_is_the_burst_alone():
    document = bench("fleet", "--devices", "2", "--readings", "5", "--jobs", "1", "--processes", "1",
                     "--workers", "2", "--spread", "0")  # fmt: skip
    figures = document["figures"]
    assert "burst" not in figures and figures["spread_s"] == 0
    assert figures["capacity"]["syncs_per_s"] == figures["syncs_per_s"]
    assert figures["errors"] == 0 and figures["changes_pushed"] == 5 + 5  # 5 readings; 1 job x 5 changes


def assert_fleet_synced(figures: dict[str, Any]) -> None:
    """One scenario of the fleet: the issue's figures, every change pushed and received, nothing failed."""
    numbers(figures, "p50_ms", "p95_ms", "p99_ms", "errors", "changes_per_s", "syncs_per_s")
    assert figures["backend"] in ("sqlite", "postgresql")
    assert figures["errors"] == 0, figures.get("failure_examples")
    # 2 readers x 10 readings, 2 linemen x 2 jobs x 5 changes: all pushed, all received
    assert figures["changes_pushed"] == figures["changes_queued"] == figures["changes_received_by_server"] == 40
    assert figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
    assert figures["requests"] == 12 and figures["server_time"]["count"] == 12  # hello, push, pull each
    concurrency = figures["concurrency"]
    numbers(concurrency, "requests_max", "requests_mean", "syncs_max", "syncs_mean", "busy_share",
            "syncs_overlapping_share")  # fmt: skip
    assert 1 <= concurrency["syncs_max"] <= 4 and 0 < concurrency["busy_share"] <= 1
    assert figures["cpu_s"]["client"] > 0 and figures["cpu_s"]["server"] > 0


def test_device_ops_times_readings_and_status_changes():
    figures = bench("device_ops", "--rows", "2000", "--operations", "10")["figures"]
    numbers(figures, "p50_ms", "p99_ms")
    assert figures["reading"]["count"] == 10 and figures["status_change"]["count"] == 20
    assert figures["commit_floor"]["count"] == 10 and figures["reading_p50_to_floor"] > 0
    assert figures["rows"] >= 1500


def test_staff_queries_time_every_page(tmp_path):
    document = bench("staff_queries", "--customers", "300", "--jobs", "60", "--months", "1", "--repeat", "2",
                     "--cache-dir", str(tmp_path))  # fmt: skip
    figures = document["figures"]
    assert figures["p95_ms"] and all(value > 0 for value in figures["p95_ms"].values())
    assert {"jobs_search", "readings_filtered", "customer_search", "customer_page", "kpis", "abc_analysis"} <= set(
        figures["p95_ms"]
    )
    assert figures["database"]["readings"] > 0 and figures["database"]["jobs"] == 60
    assert figures["seeded_now"] is True  # built in tmp_path, not taken from the repository's cache
