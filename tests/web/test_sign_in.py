"""Staff sign-in: sessions, CSRF, roles, language."""

from __future__ import annotations

from tests.web.conftest import csrf_token, sign_in


def test_pages_need_a_signed_in_staff_member(client, world):
    response = client.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_staff_signs_in_and_out(client, world):
    token = sign_in(client, "staff")
    assert "Staff" in client.get("/").get_data(as_text=True)
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_wrong_password_and_field_users_are_refused(client, world):
    token = csrf_token(client)
    assert client.post("/login", data={"username": "staff", "password": "nope", "csrf_token": token}).status_code == 401
    assert client.post("/login", data={"username": "ghost", "password": "x", "csrf_token": token}).status_code == 401
    # a lineman has no password and no business in the office pages
    assert client.post("/login", data={"username": "lineman", "password": "", "csrf_token": token}).status_code == 401


def test_forms_without_the_csrf_token_are_refused(client, world):
    csrf_token(client)
    response = client.post("/login", data={"username": "staff", "password": "pw-staff"})
    assert response.status_code == 400
    assert client.get("/").status_code == 302  # not signed in


def test_sign_in_does_not_redirect_to_another_site(client, world):
    token = csrf_token(client)
    response = client.post(
        "/login?next=//evil.example/x", data={"username": "staff", "password": "pw-staff", "csrf_token": token}
    )
    assert response.headers["Location"] == "/"


def test_language_follows_the_browser_and_the_switch(client, world):
    token = sign_in(client, "staff")
    page = client.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).get_data(as_text=True)
    assert 'lang="zh-CN"' in page
    client.post("/language", data={"lang": "en", "next": "/", "csrf_token": token})
    page = client.get("/", headers={"Accept-Language": "zh-CN"}).get_data(as_text=True)
    assert 'lang="en"' in page


def test_session_cookie_is_http_only_and_same_site(client, world):
    sign_in(client, "staff")
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
