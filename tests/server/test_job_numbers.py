"""Job numbers are short and random (J<yymmdd>-<6 hex>), so a busy day's draws collide: the office must get
a free number, never a failed insert (a 500 on the create-job page)."""

from __future__ import annotations

import pytest

from server.extensions import db
from server.models import Job
from server.services import office


def test_a_drawn_number_that_is_taken_is_drawn_again(app, world, monkeypatch) -> None:
    with app.app_context():
        taken = db.session.get(Job, "J-outage").number
        draws = iter([taken, taken, "J261122-00BEEF"])
        monkeypatch.setattr(office, "job_number", lambda _day: next(draws))
        job = office.create_job(
            customer_id="C1", premise_id="P1", job_type="outage", summary="second outage", priority=2
        )
        db.session.commit()
        assert job.number == "J261122-00BEEF"
        assert db.session.query(Job).filter_by(number=taken).count() == 1


def test_no_free_number_is_a_clear_error_not_a_duplicate(app, world, monkeypatch) -> None:
    with app.app_context():
        taken = db.session.get(Job, "J-outage").number
        monkeypatch.setattr(office, "job_number", lambda _day: taken)
        with pytest.raises(RuntimeError, match="no free job number"):
            office.create_job(customer_id="C1", premise_id="P1", job_type="outage", summary="x", priority=2)
        db.session.rollback()
        assert db.session.query(Job).count() == 3  # the world's jobs only
