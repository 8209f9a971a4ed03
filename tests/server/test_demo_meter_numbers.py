"""The demo seeder's meter numbers are unique at any size: random draws collide (by some 20,000 meters
among the 360 million numbers), and the seeder draws again instead of failing on the unique index.
Forced here by narrowing the draws so that collisions are certain among a few hundred meters."""

from __future__ import annotations

import datetime as dt
import random

import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from server import demo
from server.extensions import db
from server.models import Meter

AS_OF = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)
NUMBERS = 100  # per letter while narrowed: 400 possible numbers for 300 meters


class NarrowRandom(random.Random):
    """Meter numbers (a letter and 8 digits) drawn from NUMBERS per letter; everything else as usual."""

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:  # type: ignore[override]
        if (start, stop) == (10**7, 10**8):
            return super().randrange(10**7, 10**7 + NUMBERS)
        return super().randrange(start, stop, step) if stop is not None else super().randrange(start)


def test_meter_numbers_are_unique_even_when_draws_collide(app, monkeypatch) -> None:
    monkeypatch.setattr(
        "server.services.users.generate_password_hash", lambda p: generate_password_hash(p, "pbkdf2:sha256:1")
    )
    monkeypatch.setattr(demo.random, "Random", NarrowRandom)
    with app.app_context():
        counts = demo.seed_demo(seed=3, customers=300, jobs=0, months=0, as_of=AS_OF)
        numbers = db.session.execute(sa.select(Meter.number)).scalars().all()
    assert counts["meters"] == len(numbers) == 300
    assert len(set(numbers)) == 300
    assert all(int(number[1:]) < 10**7 + NUMBERS for number in numbers)  # the draws were narrowed
