"""`python -m pda_client`: the command-line interface over the same core, driven through `cli.main`
with its output captured. The handheld runs on the real clock here, so the scope is built around now."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest

from pda_client import Handheld
from pda_client.cli import main
from pda_client.migrations import SCHEMA_VERSION
from pda_client.store import LocalStore
from tests.client.conftest import load_handheld
from tests.client.scope import apply_records, record, stamp


def run(data: Path, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--data", str(data), *argv], out=out)
    return code, out.getvalue()


def queued(data: Path) -> int:
    store = LocalStore(data / "handheld.db")
    try:
        return store.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    finally:
        store.close()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An enrolled handheld's data folder holding the standard scope, dated around the real now."""
    load_handheld(tmp_path, dt.datetime.now(dt.UTC).replace(microsecond=0))
    return tmp_path


# --- status ---------------------------------------------------------------------------------------------------


def test_status_before_enrolment_says_how_to_enrol(tmp_path: Path) -> None:
    assert run(tmp_path, "status") == (0, "Not enrolled. Run: enroll --server URL --code CODE\n")


def test_status_shows_user_pending_work_jobs_and_route_progress(data: Path) -> None:
    run(data, "read", "A0001", "12300")
    code, out = run(data, "status")
    assert code == 0
    assert "User:            Lena Lineman (lineman)\n" in out
    assert "Server:          http://127.0.0.1:9\n" in out
    assert "Pending changes: 1\n" in out
    assert "Last sync:       never\n" in out
    assert "Open jobs:       2\n" in out
    assert "Route RT-7:    1 read, 0 skipped, 3 remaining of 4\n" in out
    assert "Rejected" not in out


def test_database_from_a_newer_app_is_reported_not_crashed_on(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "handheld.db")
    with store.transaction():
        store.db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    store.close()
    code, out = run(tmp_path, "status")
    assert code == 2
    assert out.startswith("Error: This database was written by a newer app")
    assert "update the app" in out


# --- jobs -----------------------------------------------------------------------------------------------------


def test_jobs_lists_the_most_urgent_first_with_vip_and_safety_marks(data: Path) -> None:
    code, out = run(data, "jobs")
    assert code == 0
    assert out.splitlines() == [
        "J-1001           P1 assigned        VIP SAFETY City Hospital - No power at the premises",
        "J-1002           P3 assigned        Ann Lee - No power at the premises",
    ]


def test_job_show_gives_customer_address_and_next_actions(data: Path) -> None:
    code, out = run(data, "job", "show", "J-1001")
    assert code == 0
    assert out.startswith("Job J-1001  (outage, priority 1)\n  No power at the premises\n")
    assert "  Status: assigned (round 1)   time on site: -\n" in out
    assert "  Customer: City Hospital [VIP]  +86 20 5555 0100\n" in out
    assert "  Address: 1 Hospital Way\n" in out
    assert "status -> assigned" in out
    assert out.endswith("  Next: arrive, start_travel\n")


def test_job_arrive_records_the_status_and_shows_it_unsynced(data: Path) -> None:
    code, out = run(data, "job", "arrive", "J-1001")
    assert code == 0
    assert "  Status: on site (round 1)" in out
    assert "status -> on site (not synced yet)" in out
    assert out.endswith("  Next: cannot_complete, complete, hold\n")
    assert queued(data) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["job", "complete", "J-1002", "--code", "repaired"],
            "Error: Job J-1002 is assigned: it can go to en route, on site.\n",
        ),
        (["job", "resume", "J-1002"], "Error: Only a job on hold can be resumed.\n"),
        (
            ["job", "cancel", "J-1002"],
            "Error: Only the service centre can cancel a job. Use 'cannot complete' with a reason.\n",
        ),
        (["job", "note", "J-1002"], "Error: Write something in the note.\n"),
        (["job", "show", "J-404"], "Error: No job J-404 on this handheld.\n"),
    ],
)
def test_refused_job_action_prints_the_reason_and_exits_2(data: Path, argv: list[str], message: str) -> None:
    assert run(data, *argv) == (2, message)
    assert queued(data) == 0


def test_job_hold_with_a_reason_adds_a_note(data: Path) -> None:
    run(data, "job", "arrive", "J-1002")
    code, out = run(data, "job", "hold", "J-1002", "waiting for parts")
    assert code == 0
    assert "note: waiting for parts (not synced yet)" in out
    assert "  Next: cannot_complete, resume\n" in out


# --- the route and readings -----------------------------------------------------------------------------------


def test_route_lists_meters_in_walk_order_with_hazards(data: Path) -> None:
    code, out = run(data, "route")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Route RT-7 Riverside: 0 read, 0 skipped, 4 remaining of 4"
    assert [line.split()[1] for line in lines[1:]] == ["A0001", "A0002", "A0003", "A0004"]
    assert lines[4].endswith("7 Riverside Rd HAZARD: dog")
    assert run(data, "route", "RT-9") == (1, "No route RT-9.\n")


def test_read_in_range_is_recorded(data: Path) -> None:
    assert run(data, "read", "A0001", "12300") == (
        0,
        "Recorded 12300 for meter A0001 (regular, check: in range).\n",
    )
    assert queued(data) == 1


def test_read_out_of_range_exits_3_with_the_hint_and_records_nothing(data: Path) -> None:
    code, out = run(data, "read", "A0001", "13000")
    assert code == 3
    assert out.startswith("13000 is above the expected range (150 to ")
    assert out.endswith("\nRepeat with --confirm 13000, or --comment CODE.\n")
    assert queued(data) == 0

    assert run(data, "read", "A0001", "13000", "--confirm", "13000") == (
        0,
        "Recorded 13000 for meter A0001 (verified, check: high).\n",
    )


def test_read_with_differing_confirmation_is_refused(data: Path) -> None:
    assert run(data, "read", "A0001", "13000", "--confirm", "13001") == (
        2,
        "Error: The two entries differ: enter the value again.\n",
    )


def test_skip_records_the_reason_and_the_route_shows_it(data: Path) -> None:
    assert run(data, "skip", "A0004", "dog") == (0, "Skipped meter A0004: Dog on premises.\n")
    code, out = run(data, "route", "--remaining")
    assert code == 0
    assert out.splitlines()[0] == "Route RT-7 Riverside: 0 read, 1 skipped, 3 remaining of 4"
    assert "A0004" not in out


def test_skip_with_an_unknown_code_is_refused_by_the_parser(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        run(data, "skip", "A0004", "alien")
    assert stopped.value.code == 2
    assert "invalid choice: 'alien'" in capsys.readouterr().err
    assert queued(data) == 0


def test_codes_lists_every_code_table(data: Path) -> None:
    code, out = run(data, "codes")
    assert code == 0
    for title in ("Skip codes:", "Trouble codes:", "Comment codes:", "Reading types:", "Resolution codes:"):
        assert title + "\n" in out
    assert "  dog                    Dog on premises\n" in out
    assert "  repaired               Repaired\n" in out


# --- conflicts and rejections ---------------------------------------------------------------------------------


def test_conflicts_lists_what_lost_and_marks_them_seen(data: Path) -> None:
    assert run(data, "conflicts") == (0, "No conflicts.\n")
    now = dt.datetime.now(dt.UTC)
    conflict = record(
        "conflict",
        "X-1",
        {
            "kind": "concurrent_edit",
            "entity": "job",
            "entity_id": "J-1",
            "field": "cause",
            "winner": "squirrel",
            "winner_hlc": stamp(now, 1, "office"),
            "loser": "tree on line",
            "loser_hlc": stamp(now, 0, "D-test-1"),
            "change_id": "c-lost",
            "created_at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        },
    )
    handheld = Handheld(data)
    apply_records(handheld.store, handheld.clock, [conflict])
    handheld.close()
    assert "Conflicts:       1 new (run `conflicts`)" in run(data, "status")[1]

    code, out = run(data, "conflicts")
    assert code == 0
    assert out.endswith(
        " job J-1 cause: kept 'squirrel', yours 'tree on line' saved for the office (concurrent edit)\n"
    )
    assert "Conflicts:" not in run(data, "status")[1]


def test_rejected_lists_refused_changes_with_reasons(data: Path) -> None:
    assert run(data, "rejected") == (0, "Nothing was rejected.\n")
    run(data, "job", "arrive", "J-1002")
    handheld = Handheld(data)
    (entry,) = handheld.outbox()
    engine = apply_records(handheld.store, handheld.clock, [])
    engine._settle_all(
        [entry],
        [
            {
                "change_id": entry["change_id"],
                "status": "rejected",
                "conflicts": [],
                "hlc": None,
                "flags": [],
                "error": {"code": "not_in_scope", "message": "The job was reassigned.", "fields": {}},
            }
        ],
    )
    handheld.close()

    code, out = run(data, "rejected")
    assert code == 0
    assert out.endswith(f" job_event {entry['entity_id']}: The job was reassigned. (not_in_scope)\n")
    assert "Rejected:        1 (run `rejected`)" in run(data, "status")[1]
    assert "Status: assigned" in run(data, "job", "show", "J-1002")[1]
