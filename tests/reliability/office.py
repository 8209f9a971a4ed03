"""The service centre during a fleet run: a staff member working the real job pages over HTTP (signed in,
CSRF tokens and all), cancelling, reassigning, returning and closing jobs and creating new ones while the
handhelds work offline. Refusals (the job moved on since the page was read) are part of the game."""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any

import requests
import sqlalchemy as sa

from .fleet_world import STAFF_PASSWORD, STAFF_USERNAME, FleetWorld

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
OPEN = ("assigned", "en_route", "on_site", "on_hold")
FINISHED = ("completed", "cannot_complete", "cancelled")


class Office:
    def __init__(self, base_url: str, engine: sa.Engine, world: FleetWorld, rng: random.Random) -> None:
        self.base_url = base_url
        self.engine = engine
        self.world = world
        self.rng = rng
        self.session = requests.Session()
        self.csrf: str | None = None
        self.done: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.unavailable = 0  # requests that found the server down (restarts)

    def close(self) -> None:
        self.session.close()

    def act(self) -> None:
        """One office action on a job picked from the server's current state."""
        try:
            self._sign_in_if_needed()
            jobs = self._jobs()
            kind = self.rng.choice(["cancel", "reassign", "return", "close", "create", "create"])
            getattr(self, f"_{kind}")(jobs)
        except requests.RequestException:
            self.unavailable += 1
            self.csrf = None

    # --- actions ---------------------------------------------------------------------------------------------

    def _cancel(self, jobs: list[dict[str, Any]]) -> None:
        candidates = [j for j in jobs if j["status"] in OPEN]
        if candidates:
            job = self.rng.choice(candidates)
            self._post("cancel", f"/jobs/{job['id']}/cancel", reason="Customer called: fault cleared itself.")

    def _reassign(self, jobs: list[dict[str, Any]]) -> None:
        candidates = [j for j in jobs if j["status"] == "assigned"]
        if candidates:
            job = self.rng.choice(candidates)
            others = [u.id for u in self.world.linemen if u.id != job["assigned_to"]]
            if others:
                self._post("reassign", f"/jobs/{job['id']}/assign", assigned_to=self.rng.choice(others))

    def _return(self, jobs: list[dict[str, Any]]) -> None:
        candidates = [j for j in jobs if j["status"] in FINISHED]
        if candidates:
            job = self.rng.choice(candidates)
            to = self.rng.choice(self.world.linemen).id
            self._post("return", f"/jobs/{job['id']}/return", assigned_to=to, note="Customer reports it again.")

    def _close(self, jobs: list[dict[str, Any]]) -> None:
        candidates = [j for j in jobs if j["status"] in FINISHED]
        if candidates:
            self._post("close", f"/jobs/{self.rng.choice(candidates)['id']}/close")

    def _create(self, jobs: list[dict[str, Any]]) -> None:
        customer_id, premise_id = self.rng.choice(self.world.premises)
        self._post(
            "create",
            "/jobs/new",
            customer_id=customer_id,
            premise_id=premise_id,
            job_type="line_repair",
            summary="Reported by phone: flickering supply",
            priority=str(self.rng.randint(1, 4)),
            assigned_to=self.rng.choice(self.world.linemen).id,
        )

    # --- plumbing --------------------------------------------------------------------------------------------

    def _jobs(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, status, assigned_to FROM jobs"))
            return [dict(row._mapping) for row in rows]

    def _sign_in_if_needed(self) -> None:
        if self.csrf:
            return
        page = self.session.get(f"{self.base_url}/login", timeout=10)
        token = _token(page.text)
        answer = self.session.post(
            f"{self.base_url}/login",
            data={"username": STAFF_USERNAME, "password": STAFF_PASSWORD, "csrf_token": token},
            allow_redirects=False,
            timeout=10,
        )
        if answer.status_code != 302:
            raise AssertionError(f"the office could not sign in: {answer.status_code} {answer.text[:300]}")
        self.csrf = _token(self.session.get(f"{self.base_url}/", timeout=10).text)

    def _post(self, kind: str, path: str, **form: str) -> None:
        answer = self.session.post(
            f"{self.base_url}{path}", data={**form, "csrf_token": self.csrf or ""}, allow_redirects=False, timeout=30
        )
        if answer.status_code == 302 and "/login" in answer.headers.get("Location", ""):
            self.csrf = None  # the session ended (e.g. a restart with a new key): sign in again next time
            self.refused[f"{kind}:signed_out"] += 1
        elif answer.status_code == 302:
            self.done[kind] += 1
        elif answer.status_code in (400, 404, 409, 422):
            self.refused[kind] += 1  # the job moved on since it was picked: as for a person at the desk
        else:
            raise AssertionError(f"office {kind} {path}: unexpected {answer.status_code}: {answer.text[:500]}")


def _token(page: str) -> str:
    match = CSRF.search(page)
    if not match:
        raise AssertionError("no CSRF token on the page")
    return match.group(1)
