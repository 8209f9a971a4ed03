"""`python -m pda_client`: the handheld's command-line interface, over the same core as the app.

Usage (see README, "The handheld from the command line"):
  enroll --server URL --code CODE [--name NAME]   status   sync
  jobs [--all]   job show|accept|travel|arrive|hold|resume|complete|cannot-complete|note|material ...
  route [ROUTE] [--remaining]   read METER VALUE [--confirm VALUE] ...   skip METER CODE ...
  conflicts   rejected   codes
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from sync_protocol import codes

from .core import DEFAULT_DATA_DIR, Handheld
from .errors import HandheldError, NeedsConfirmation


def _when(text: str | None) -> str:
    if not text:
        return "never"
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M")


def _minutes(ms: int | None) -> str:
    return "-" if ms is None else f"{ms // 60000} min"


class Bar:
    """A one-line progress bar on a terminal (plain lines elsewhere)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage == "push" and not total:
            line = " push nothing to send"
        elif total:
            width = 30
            filled = int(width * done / total)
            line = f"{stage:>5} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        else:
            line = f"{stage:>5} {done} records"
        if self.tty:
            self.out.write("\r" + line.ljust(60))
            self.out.flush()
        elif line != self.last and stage != "pull":
            self.out.write(line + "\n")
        self.last = line

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")


def cmd_enroll(hh: Handheld, args: argparse.Namespace, out: TextIO) -> int:
    user = hh.enroll(args.server, args.code, args.name)
    out.write(f"Enrolled as {user['name']} ({user['role'].replace('_', ' ')}). Run `sync` to download your work.\n")
    return 0


def cmd_status(hh: Handheld, args: argparse.Namespace, out: TextIO) -> int:
    st = hh.status()
    if not st["enrolled"]:
        out.write("Not enrolled. Run: enroll --server URL --code CODE\n")
        return 0
    user = st["user"] or {}
    out.write(f"User:            {user.get('name')} ({user.get('role', '').replace('_', ' ')})\n")
    out.write(f"Server:          {st['server_url']}\n")
    out.write(f"Pending changes: {st['pending_changes']}\n")
    out.write(f"Last sync:       {_when(st['last_success_at'])}\n")
    if st["last_error"]:
        out.write(f"Last error:      {st['last_error']['message']} ({_when(st['last_error']['at'])})\n")
    offset = st["clock_offset_ms"]
    if offset is not None and abs(offset) > 5 * 60 * 1000:
        out.write(f"Clock:           {abs(offset) // 60000} min {'ahead' if offset > 0 else 'behind'} the server\n")
    out.write(f"Open jobs:       {st['open_jobs']}\n")
    for route in st["routes"]:
        out.write(
            f"Route {route['code']}:    {route['read']} read, {route['skipped']} skipped, "
            f"{route['remaining']} remaining of {route['total']}\n"
        )
    if st["unseen_conflicts"]:
        out.write(f"Conflicts:       {st['unseen_conflicts']} new (run `conflicts`)\n")
    if st["rejected"]:
        out.write(f"Rejected:        {st['rejected']} (run `rejected`)\n")
    return 0


def cmd_sync(hh: Handheld, args: argparse.Namespace, out: TextIO) -> int:
    bar = Bar(out)
    cancel = threading.Event()
    try:
        report = hh.sync(progress=bar, cancel=cancel)
    except KeyboardInterrupt:
        cancel.set()
        bar.close()
        out.write("Sync interrupted; nothing was lost. Run `sync` again.\n")
        return 1
    finally:
        bar.close()
    out.write(
        f"Sent {report.pushed} changes ({report.applied} applied, {report.conflicts} conflicts, "
        f"{report.rejected} rejected); received {report.pulled} records, {report.removed} removals.\n"
    )
    for message in report.messages:
        out.write(message + "\n")
    return 0


def cmd_jobs(hh: Handheld, args: argparse.Namespace, out: TextIO) -> int:
    jobs = hh.jobs.list(include_finished=args.all)
    if not jobs:
        out.write("No jobs.\n")
    for job in jobs:
        marks = ("VIP " if job["vip"] else "") + ("SAFETY " if job["safety"] else "")
        out.write(
            f"{job['number']:<16} P{job['priority']} {job['status'].replace('_', ' '):<15} "
            f"{marks}{job['customer_name'] or ''} - {job['summary']}\n"
        )
    return 0


def _show_job(hh: Handheld, ref: str, out: TextIO) -> None:
    job = hh.jobs.detail(ref)
    premise, customer = job["premise"], job["customer"]
    out.write(f"Job {job['number']}  ({job['job_type'].replace('_', ' ')}, priority {job['priority']})\n")
    out.write(f"  {job['summary']}\n")
    out.write(f"  Status: {job['status'].replace('_', ' ')} (round {job['round']})")
    out.write(f"   time on site: {_minutes(job['time_on_site_ms'])}\n")
    vip = " [VIP]" if customer.get("vip") else ""
    out.write(f"  Customer: {customer.get('name', '?')}{vip}  {customer.get('phone') or ''}\n")
    out.write(f"  Address: {premise.get('address', '?')}\n")
    if premise.get("hazards"):
        hazards = ", ".join(codes.HAZARD_CODES.get(h, h) for h in premise["hazards"])
        out.write(f"  HAZARDS: {hazards}\n")
    if job.get("resolution_code"):
        out.write(f"  Resolution: {codes.RESOLUTION_CODES.get(job['resolution_code'], job['resolution_code'])}\n")
    for event in job["events"]:
        what = {
            "status": lambda e: f"status -> {e['status'].replace('_', ' ')}",
            "note": lambda e: f"note: {e['text']}",
            "material": lambda e: f"material: {e['quantity']:g} {e['unit']} {e['material_code']}",
            "accepted": lambda e: "accepted",
        }[event["kind"]](event)
        pending = " (not synced yet)" if event.get("pending") else ""
        flags = f" [{', '.join(event['flags'])}]" if event.get("flags") else ""
        out.write(f"    {_when(event['recorded_at'])}  {what}{pending}{flags}\n")
    out.write(f"  Next: {', '.join(job['actions']) or 'nothing from the field'}\n")


def cmd_job(hh: Handheld, args: argparse.Namespace, out: TextIO) -> int:
    jobs = hh.jobs
    actions: dict[str, Callable[[], Any]] = {
        "show": lambda: None,
        "accept": lambda: jobs.accept(args.job),
        "travel": lambda: jobs.start_travel(args.job),
        "arrive": lambda: jobs.arrive(args.job),
        "hold": lambda: jobs.hold(args.job, args.text),
        "resume": lambda: jobs.resume(args.job),
        "complete": lambda: jobs.complete(args.job, args.code, args.text),
        "cannot-complete": lambda: jobs.cannot_complete(args.job, args.code, args.text),
        "note": lambda: jobs.add_note(args.job, args.text or ""),
        "material": lambda: jobs.add_material(args.job, args.code, args.quantity, args.unit),
        "cancel": lambda: jobs.cancel(args.job),
    }
    actions[args.action]()
    _show_job(hh, args.job, out)
    return 0


def cmd_route(hh: Handheld, args: argparse.Namespace, out: TextIO) -> int:
    routes = hh.readings.routes()
    if not routes:
        out.write("No route assigned.\n")
        return 0
    route = next((r for r in routes if args.route in (r["id"], r["code"])), None) if args.route else routes[0]
    if route is None:
        out.write(f"No route {args.route}.\n")
        return 1
    progress = route["progress"]
    out.write(
        f"Route {route['code']} {route['name']}: {progress['read']} read, {progress['skipped']} skipped, "
        f"{progress['remaining']} remaining of {progress['total']}\n"
    )
    for meter in hh.readings.walk(route["id"]):
        if args.remaining and meter["state"] != "remaining":
            continue
        hazard = " HAZARD: " + ", ".join(meter["hazards"]) if meter.get("hazards") else ""
        state = meter["state"]
        if meter["reading"] is not None:
            reading = meter["reading"]
            state += f" ({reading['value']})" if reading["value"] is not None else f" ({reading['skip_code']})"
        out.write(f"{meter['route_seq']:>5} {meter['number']:<12} {state:<22} {meter['address'] or ''}{hazard}\n")
    return 0


def cmd_read(hh: Handheld, args: argparse.Namespace, out: TextIO) -> int:
    try:
        reading = hh.readings.record(
            args.meter,
            args.value,
            confirm=args.confirm,
            reading_type=args.type,
            comment_code=args.comment,
            trouble_code=args.trouble,
            note=args.note,
        )
    except NeedsConfirmation as exc:
        out.write(exc.message + f"\nRepeat with --confirm {args.value}, or --comment CODE.\n")
        return 3
    check = reading["check"] or {}
    out.write(
        f"Recorded {reading['value']} for meter {args.meter} ({reading['reading_type'].replace('_', ' ')}, "
        f"check: {check.get('result', '-').replace('_', ' ')}).\n"
    )
    return 0


def cmd_skip(hh: Handheld, args: argparse.Namespace, out: TextIO) -> int:
    hh.readings.skip(args.meter, args.code, trouble_code=args.trouble, note=args.note)
    out.write(f"Skipped meter {args.meter}: {codes.SKIP_CODES[args.code]}.\n")
    return 0


def cmd_conflicts(hh: Handheld, args: argparse.Namespace, out: TextIO) -> int:
    conflicts = hh.conflicts()
    if not conflicts:
        out.write("No conflicts.\n")
    for c in conflicts:
        out.write(
            f"{_when(c['created_at'])} {c['entity']} {c['entity_id']} {c['field']}: kept {c['winner']!r}, "
            f"yours {c['loser']!r} saved for the office ({c['kind'].replace('_', ' ')})\n"
        )
    hh.mark_conflicts_seen()
    return 0


def cmd_rejected(hh: Handheld, args: argparse.Namespace, out: TextIO) -> int:
    rejected = hh.rejected()
    if not rejected:
        out.write("Nothing was rejected.\n")
    for r in rejected:
        out.write(f"{_when(r['rejected_at'])} {r['entity']} {r['entity_id']}: {r['message']} ({r['code']})\n")
    return 0


def cmd_codes(hh: Handheld, args: argparse.Namespace, out: TextIO) -> int:
    for title, table in (
        ("Skip codes", codes.SKIP_CODES),
        ("Trouble codes", codes.TROUBLE_CODES),
        ("Comment codes", codes.COMMENT_CODES),
        ("Reading types", codes.READING_TYPES),
        ("Resolution codes", codes.RESOLUTION_CODES),
    ):
        out.write(f"{title}:\n")
        for code, label in table.items():
            out.write(f"  {code:<22} {label}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pda_client", description="FieldSync handheld")
    parser.add_argument("--data", default=str(DEFAULT_DATA_DIR), help="data folder (default %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("enroll", help="enrol this handheld with a one-time code from the office")
    p.add_argument("--server", required=True, help="server address, e.g. https://fieldsync.example.net")
    p.add_argument("--code", required=True)
    p.add_argument("--name", default="handheld", help="a name for this device")
    p.set_defaults(func=cmd_enroll)

    sub.add_parser("status", help="pending changes, last sync, route progress").set_defaults(func=cmd_status)
    sub.add_parser("sync", help="send pending work and download updates").set_defaults(func=cmd_sync)

    p = sub.add_parser("jobs", help="your jobs, most urgent first")
    p.add_argument("--all", action="store_true", help="include finished jobs")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("job", help="show a job or act on it")
    p.add_argument(
        "action",
        choices=[
            "show",
            "accept",
            "travel",
            "arrive",
            "hold",
            "resume",
            "complete",
            "cannot-complete",
            "note",
            "material",
            "cancel",
        ],
    )
    p.add_argument("job", help="job number or id")
    p.add_argument("text", nargs="?", help="note text (note, hold, complete)")
    p.add_argument("--code", help="resolution code (complete, cannot-complete) or material code")
    p.add_argument("--quantity", type=float, default=1.0)
    p.add_argument("--unit", default="pcs")
    p.set_defaults(func=cmd_job)

    p = sub.add_parser("route", help="your route in walk order")
    p.add_argument("route", nargs="?", help="route code (default: your first route)")
    p.add_argument("--remaining", action="store_true", help="only meters not yet read")
    p.set_defaults(func=cmd_route)

    p = sub.add_parser("read", help="record a meter reading")
    p.add_argument("meter", help="meter number or id")
    p.add_argument("value", type=int)
    p.add_argument("--confirm", type=int, help="the value entered a second time (out of range)")
    p.add_argument("--type", default="regular", choices=list(codes.READING_TYPES))
    p.add_argument("--comment", choices=list(codes.COMMENT_CODES))
    p.add_argument("--trouble", choices=list(codes.TROUBLE_CODES))
    p.add_argument("--note")
    p.set_defaults(func=cmd_read)

    p = sub.add_parser("skip", help="record that a meter could not be read")
    p.add_argument("meter")
    p.add_argument("code", choices=list(codes.SKIP_CODES))
    p.add_argument("--trouble", choices=list(codes.TROUBLE_CODES))
    p.add_argument("--note")
    p.set_defaults(func=cmd_skip)

    sub.add_parser("conflicts", help="your changes that lost to someone else's").set_defaults(func=cmd_conflicts)
    sub.add_parser("rejected", help="changes the server refused, with reasons").set_defaults(func=cmd_rejected)
    sub.add_parser("codes", help="skip, trouble, comment and resolution codes").set_defaults(func=cmd_codes)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    try:
        handheld = Handheld(args.data)
    except HandheldError as exc:  # e.g. a database written by a newer app
        out.write(f"Error: {exc.message}\n")
        return 2
    try:
        return args.func(handheld, args, out)
    except HandheldError as exc:
        out.write(f"Error: {exc.message}\n")
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    finally:
        handheld.close()
