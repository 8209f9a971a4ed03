"""Administration pages: handhelds (list, revoke) and users (create, deactivate, enrolment codes, staff
API tokens). Administrators only; every action is a form post with the CSRF token."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
from werkzeug.security import check_password_hash

from server.extensions import db
from server.models import ApiToken, ConflictRecord, Device, EnrollmentCode, User
from server.services import apitokens
from server.services.enrollment import secret_hash
from tests.server.helpers import counts
from tests.server.world import enrol
from tests.web.conftest import sign_in

CODE = re.compile(r'<code id="secret">([^<]+)</code>')


def _text(response) -> str:
    return response.get_data(as_text=True)


def _user(app, username: str) -> User | None:
    with app.app_context():
        user = db.session.execute(sa.select(User).where(User.username == username)).scalar()
        if user is not None:
            db.session.expunge(user)
        return user


def _secret(response) -> str:
    match = CODE.search(_text(response))
    assert match, _text(response)[:2000]
    return match.group(1)


def _device(app, client, username: str = "reader", name: str = "pda-1"):
    with app.app_context():
        return enrol(client, username, name)


# --- who may open them -----------------------------------------------------------------------------------

ADMIN_PAGES = [
    ("get", "/admin/devices"),
    ("get", "/admin/users"),
    ("post", "/admin/users"),
    ("get", "/admin/devices/D-x/revoke"),
    ("post", "/admin/devices/D-x/revoke"),
    ("post", "/admin/users/U-reader/enrollment-code"),
    ("get", "/admin/users/U-reader/deactivate"),
    ("post", "/admin/users/U-reader/reactivate"),
    ("post", "/admin/tokens"),
    ("get", "/admin/tokens/K-x/revoke"),
]


def test_staff_get_403_on_every_admin_page(client, staff):
    for method, path in ADMIN_PAGES:
        response = getattr(client, method)(path, data={"csrf_token": staff} if method == "post" else None)
        assert response.status_code == 403, (method, path, response.status_code)


def test_admin_pages_need_a_signed_in_user(client, world):
    response = client.get("/admin/devices")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_admin_sees_the_admin_navigation_and_staff_do_not(app, client, world):
    token = sign_in(client, "staff")
    assert "/admin/devices" not in _text(client.get("/"))
    client.post("/logout", data={"csrf_token": token})
    sign_in(client, "admin")
    assert "/admin/devices" in _text(client.get("/"))


def test_admin_forms_without_the_csrf_token_are_refused(app, client, admin):
    handheld = _device(app, client)
    assert client.post(f"/admin/devices/{handheld.device_id}/revoke").status_code == 400
    assert handheld.hello().status_code == 200


# --- handhelds ---------------------------------------------------------------------------------------------


def test_devices_page_shows_user_sync_times_clock_offset_and_pending_conflicts(app, client, admin):
    handheld = _device(app, client, "lineman", "crew van pda")
    other = _device(app, client, "reader", "reader pda")
    assert handheld.hello().status_code == 200
    handheld.pull_all()
    assert handheld.push(handheld.note("J-outage", "on my way")).status_code == 200
    with app.app_context():
        row = db.session.get(Device, handheld.device_id)
        row.clock_offset_ms, row.platform, row.app_version = 7 * 60_000 + 5_000, "android-11", "1.4.2"
        db.session.get(Device, other.device_id).clock_offset_ms = -2_000
        for resolved in (None, None, dt.datetime.now(dt.UTC)):
            db.session.add(
                ConflictRecord(
                    kind="concurrent_edit", entity="job", entity_id="J-outage", field="cause", winner="a",
                    winner_hlc="1", loser="b", loser_hlc="0", change_id="c", user_id=row.user_id,
                    device_id=row.id, resolved_at=resolved,
                )
            )
        db.session.commit()
    page = _text(client.get("/admin/devices"))
    row_html = _row(page, handheld.device_id)
    assert "crew van pda" in row_html and "Lineman" in row_html and "android-11" in row_html and "1.4.2" in row_html
    assert "+7 min 5 s" in row_html and "clock off" in row_html
    assert re.search(r'class="conflicts"><span class="tag warn">2</span>', row_html)
    assert re.search(r'class="last-push[^"]*"><time', row_html) and re.search(r'class="last-pull[^"]*"><time', row_html)
    other_html = _row(page, other.device_id)
    assert "-2 s" in other_html and "clock off" not in other_html
    assert re.search(r'class="last-seen[^"]*"><span class="muted">', other_html)  # never said hello


def _row(page: str, device_id: str) -> str:
    match = re.search(rf'<tr data-device-id="{re.escape(device_id)}".*?</tr>', page, re.S)
    assert match, f"no row for {device_id}"
    return match.group(0)


def test_revoke_asks_for_confirmation_then_refuses_the_handhelds_next_sync(app, client, admin):
    handheld = _device(app, client)
    assert handheld.hello().status_code == 200
    confirm = client.get(f"/admin/devices/{handheld.device_id}/revoke")
    assert confirm.status_code == 200 and "Revoke handheld" in _text(confirm)
    assert handheld.hello().status_code == 200, "asking is not revoking"
    response = client.post(f"/admin/devices/{handheld.device_id}/revoke", data={"csrf_token": admin})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/devices"
    assert handheld.hello().status_code == 401
    page = client.get("/admin/devices?state=revoked")
    assert "pda-1 revoked: its next sync will be refused" in _text(page)
    assert "revoked" in _row(_text(page), handheld.device_id)
    assert handheld.device_id not in _text(client.get("/admin/devices"))  # the default view: active ones
    again = client.post(f"/admin/devices/{handheld.device_id}/revoke", data={"csrf_token": admin})
    assert again.status_code == 302, "revoking twice changes nothing and does not fail"


def test_devices_filter_by_user_and_unknown_device_is_404(app, client, admin):
    _device(app, client, "reader", "alpha")
    _device(app, client, "lineman", "bravo")
    page = _text(client.get("/admin/devices?q=lineman"))
    assert "bravo" in page and "alpha" not in page
    assert client.get("/admin/devices/D-nope/revoke").status_code == 404
    assert client.post("/admin/devices/D-nope/revoke", data={"csrf_token": admin}).status_code == 404


# --- users ----------------------------------------------------------------------------------------------------


def _create(client, token, **fields):
    data = {"username": "", "display_name": "", "role": "lineman", "password": "", "password_repeat": ""}
    data.update(fields, csrf_token=token)
    return client.post("/admin/users", data=data)


def test_users_page_lists_users_with_role_and_state(client, admin):
    page = _text(client.get("/admin/users?state=all"))
    for username in ("reader", "reader2", "lineman", "lineman2", "staff", "admin"):
        assert f'data-username="{username}"' in page
    assert "Meter reader" in page and "Administrator" in page
    only_readers = _text(client.get("/admin/users?role=meter_reader"))
    assert 'data-username="reader2"' in only_readers and 'data-username="staff"' not in only_readers


def test_create_field_user_without_password(app, client, admin):
    response = _create(client, admin, username="lineman9", display_name="Zhao Lei", role="lineman")
    assert response.status_code == 302, _text(response)[:2000]
    assert "User lineman9 created. Issue an enrolment code" in _text(client.get(response.headers["Location"]))
    user = _user(app, "lineman9")
    assert (user.role, user.display_name, user.password_hash, user.active) == ("lineman", "Zhao Lei", None, True)


def test_create_staff_user_with_a_password_that_signs_in(app, client, admin):
    response = _create(
        client, admin, username="clerk", role="staff", password="long-enough-1", password_repeat="long-enough-1"
    )
    assert response.status_code == 302
    user = _user(app, "clerk")
    assert user.display_name == "clerk" and check_password_hash(user.password_hash, "long-enough-1")
    other = app.test_client()
    sign_in(other, "clerk", "long-enough-1")
    assert other.get("/admin/users").status_code == 403


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"username": "clerk", "role": "staff", "password": "short", "password_repeat": "short"}, "password",
         "At least 10 characters"),
        ({"username": "clerk", "role": "admin", "password": "long-enough-1", "password_repeat": "long-enough-2"},
         "password_repeat", "The two passwords differ"),
        ({"username": "x", "role": "lineman"}, "username", "2 to 80 letters"),
        ({"username": "bad name!", "role": "lineman"}, "username", "2 to 80 letters"),
        ({"username": "clerk", "role": "wizard"}, "role", "Choose a role"),
        ({"username": "clerk", "role": "lineman", "password": "long-enough-1"}, "password",
         "Field users have no password"),
        ({"username": "staff", "role": "lineman"}, "username", "This user name is taken"),
    ],
)
def test_create_user_refuses_invalid_input_and_keeps_what_was_typed(app, client, admin, fields, field, message):
    before = counts(app, "users")
    response = _create(client, admin, display_name="Typed Name", **fields)
    assert response.status_code == 400
    page = _text(response)
    assert f'id="{field}-error"' in page and message in page
    assert 'value="Typed Name"' in page and "Nothing was saved" in page
    assert counts(app, "users") == before


def test_deactivate_asks_then_locks_out_sessions_handhelds_and_tokens(app, client, admin):
    handheld = _device(app, client, "reader")
    staff_browser = app.test_client()
    sign_in(staff_browser, "staff")
    with app.app_context():
        _row, token = apitokens.issue_token(db.session.get(User, "U-staff"), "export")
        db.session.commit()
    api = {"Authorization": f"Bearer {token}"}
    confirm = client.get("/admin/users/U-reader/deactivate")
    assert confirm.status_code == 200 and "Deactivate reader?" in _text(confirm)
    for user_id in ("U-reader", "U-staff"):
        response = client.post(f"/admin/users/{user_id}/deactivate", data={"csrf_token": admin})
        assert response.status_code == 302
    assert "User staff deactivated." in _text(client.get("/admin/users"))
    assert not _user(app, "reader").active
    assert handheld.hello().status_code == 401
    assert staff_browser.get("/").status_code == 302, "a deactivated user's session ends"
    assert app.test_client().get("/api/v1/openapi.json", headers=api).status_code == 401
    response = client.post("/admin/users/U-reader/reactivate", data={"csrf_token": admin})
    assert response.status_code == 302 and _user(app, "reader").active
    assert "User reader reactivated." in _text(client.get("/admin/users"))
    assert handheld.hello().status_code == 200


def test_admin_cannot_deactivate_themselves(app, client, admin):
    for method in ("get", "post"):
        response = getattr(client, method)("/admin/users/U-admin/deactivate", data={"csrf_token": admin})
        assert response.status_code == 400 and "cannot deactivate your own account" in _text(response)
    assert _user(app, "admin").active


# --- enrolment codes -------------------------------------------------------------------------------------------


def test_enrolment_code_is_shown_once_not_cached_stored_hashed_and_enrols_a_handheld(app, client, admin):
    response = client.post("/admin/users/U-lineman/enrollment-code", data={"csrf_token": admin, "hours": "2"})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    code = _secret(response)
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", code)
    page = _text(response)
    assert "Enrolment code issued for lineman" in page and "Shown only this once" in page
    with app.app_context():
        row = db.session.execute(sa.select(EnrollmentCode)).scalar_one()
        assert row.code_hash == secret_hash(code.replace("-", "")) and code not in str(row.__dict__)
        expected = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
        assert abs(row.expires_at - expected) < dt.timedelta(minutes=1)
    assert row.expires_at.strftime("%Y-%m-%d %H:%M") in page
    assert code not in _text(client.get("/admin/users")), "never shown again"
    enrolled = client.post("/api/v1/devices/enroll", json={"code": code, "device_name": "van 3"})
    assert enrolled.status_code == 201, enrolled.get_json()
    assert enrolled.get_json()["user"]["id"] == "U-lineman"
    assert "van 3" in _text(client.get("/admin/devices"))


def test_enrolment_codes_only_for_active_field_users_and_sane_validity(app, client, admin):
    refused = [
        ("U-staff", {}, "Only linemen and meter readers"),
        ("U-reader", {"hours": "0"}, "valid for 1 to"),
        ("U-reader", {"hours": "soon"}, "valid for 1 to"),
    ]
    for user_id, extra, message in refused:
        response = client.post(f"/admin/users/{user_id}/enrollment-code", data={"csrf_token": admin, **extra})
        assert response.status_code == 400 and message in _text(response), user_id
    client.post("/admin/users/U-reader/deactivate", data={"csrf_token": admin})
    response = client.post("/admin/users/U-reader/enrollment-code", data={"csrf_token": admin})
    assert response.status_code == 400 and "reactivate the account first" in _text(response)
    assert counts(app, "enrollment_codes") == {"enrollment_codes": 0}
    assert client.post("/admin/users/U-ghost/enrollment-code", data={"csrf_token": admin}).status_code == 404


# --- staff API tokens -------------------------------------------------------------------------------------------


def test_api_token_is_shown_once_works_is_listed_with_last_use_and_can_be_revoked(app, client, admin):
    response = client.post("/admin/tokens", data={"csrf_token": admin, "user_id": "U-staff", "name": "billing export"})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    token = _secret(response)
    assert token.startswith("fsk.")
    with app.app_context():
        row = db.session.execute(sa.select(ApiToken)).scalar_one()
        assert (row.user_id, row.name, row.token_hash) == ("U-staff", "billing export", secret_hash(token))
    api = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/v1/openapi.json", headers=headers).status_code == 200
    listing = _text(client.get("/admin/users"))
    assert token not in listing
    token_row = re.search(rf'<tr data-token-id="{row.id}".*?</tr>', listing, re.S).group(0)
    assert "billing export" in token_row and "staff" in token_row and "<time" in token_row  # last used
    confirm = client.get(f"/admin/tokens/{row.id}/revoke")
    assert confirm.status_code == 200 and "Revoke API token billing export?" in _text(confirm)
    response = client.post(f"/admin/tokens/{row.id}/revoke", data={"csrf_token": admin})
    assert response.status_code == 302
    assert "API token billing export revoked." in _text(client.get("/admin/users"))
    assert api.get("/api/v1/openapi.json", headers=headers).status_code == 401


def test_api_tokens_only_for_active_office_users_and_with_a_name(app, client, admin):
    for data, message in (
        ({"user_id": "U-lineman", "name": "x"}, "Choose an active staff member"),
        ({"user_id": "U-staff", "name": ""}, "Name the integration"),
        ({"user_id": "U-staff", "name": "n" * 81}, "Name the integration"),
    ):
        response = client.post("/admin/tokens", data={"csrf_token": admin, **data})
        assert response.status_code == 400 and message in _text(response)
    assert counts(app, "api_tokens") == {"api_tokens": 0}
    assert client.get("/admin/tokens/K-nope/revoke").status_code == 404


def test_admin_pages_render_in_chinese(client, admin):
    client.post("/language", data={"lang": "zh", "next": "/", "csrf_token": admin})
    for path in ("/admin/devices", "/admin/users"):
        response = client.get(path)
        assert response.status_code == 200 and 'lang="zh-CN"' in _text(response)
