"""Administration in a real browser: an enrolment code issued on the users page enrols a handheld
through the sync API; the handheld then shows on the devices page with its last sync, and once revoked
there its next sync is refused."""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid

import requests
from playwright.sync_api import expect

from sync_protocol import PROTOCOL_HEADER, PROTOCOL_VERSION, HLCClock
from tests.browser.conftest import screenshot


def _sync(base_url: str, token: str) -> list[int]:
    """One sync cycle as a handheld does it: hello, pull (its route), push a reading; the status codes."""
    headers = {"Authorization": f"Bearer {token}", PROTOCOL_HEADER: str(PROTOCOL_VERSION)}
    api = f"{base_url}/api/v1/sync"
    now_ms = int(time.time() * 1000)
    hello = requests.get(f"{api}/hello", params={"device_time_ms": now_ms}, headers=headers, timeout=10)
    pull = requests.get(f"{api}/pull", headers=headers, timeout=30)
    if pull.status_code != 200:
        return [hello.status_code, pull.status_code]
    meter = next(record for record in pull.json()["records"] if record["entity"] == "meter")
    value = (meter["data"]["last_value"] + 200) % 10 ** meter["data"]["dials"]
    read_at = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    change = {
        "change_id": uuid.uuid4().hex,
        "entity": "meter_reading",
        "entity_id": f"MR-{uuid.uuid4().hex[:12]}",
        "hlc": str(HLCClock(f"dev-{uuid.uuid4().hex[:8]}").now()),
        "data": {"meter_id": meter["id"], "value": value, "read_at": read_at},
    }
    batch = {"protocol": PROTOCOL_VERSION, "batch_id": uuid.uuid4().hex, "changes": [change]}
    push = requests.post(f"{api}/push", json=batch, headers=headers, timeout=10)
    assert push.status_code != 200 or push.json()["results"][0]["status"] == "applied", push.text
    return [hello.status_code, pull.status_code, push.status_code]


def test_enrolment_code_from_the_browser_enrols_a_handheld_that_is_revoked_in_the_browser(page, live_site):
    device_name = f"browser-pda-{uuid.uuid4().hex[:6]}"
    page.goto(f"{live_site.url}/admin/users?role=meter_reader")
    row = page.locator('tr[data-username="reader1"]')
    with page.expect_response(re.compile(r"/enrollment-code$")) as issued:
        row.get_by_role("button", name="Enrolment code").click()
    assert issued.value.headers["cache-control"] == "no-store"
    expect(page.get_by_role("heading", name=re.compile("Enrolment code for"))).to_be_visible()
    expect(page.locator(".flash")).to_have_text("Enrolment code issued for reader1.")
    code = page.locator("#secret").inner_text()
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", code), code
    screenshot(page, "admin-enrolment-code")

    enrolled = requests.post(
        f"{live_site.url}/api/v1/devices/enroll",
        json={"code": code, "device_name": device_name, "platform": "android-13", "app_version": "1.4.2"},
        timeout=10,
    )
    assert enrolled.status_code == 201, enrolled.text
    token, device_id = enrolled.json()["token"], enrolled.json()["device_id"]
    assert _sync(live_site.url, token) == [200, 200, 200]

    page.goto(f"{live_site.url}/admin/devices?q={device_name}")
    device = page.locator(f'tr[data-device-id="{device_id}"]')
    expect(device).to_contain_text(device_name)
    expect(device).to_contain_text("reader1")
    expect(device).to_contain_text("android-13")
    for column in ("last-seen", "last-push", "last-pull"):
        expect(device.locator(f"td.{column} time")).to_be_visible()  # synced just now
    expect(device.locator(".state")).to_have_text("active")
    screenshot(page, "admin-devices")

    device.get_by_role("link", name="Revoke…").click()
    expect(page.get_by_role("heading", name=f"Revoke handheld {device_name}?")).to_be_visible()
    screenshot(page, "admin-revoke-confirm")
    assert _sync(live_site.url, token)[0] == 200, "asking for confirmation revokes nothing"
    page.get_by_role("button", name="Revoke handheld").click()
    expect(page.locator(".flash")).to_have_text(f"Handheld {device_name} revoked: its next sync will be refused.")

    assert _sync(live_site.url, token) == [401, 401]
    page.goto(f"{live_site.url}/admin/devices?state=revoked&q={device_name}")
    expect(page.locator(f'tr[data-device-id="{device_id}"] .state')).to_contain_text("revoked")


def test_admin_creates_a_staff_user_who_signs_in(page, live_site, browser):
    username = f"clerk{uuid.uuid4().hex[:6]}"
    page.goto(f"{live_site.url}/admin/users")
    form = page.locator("#new-user form")
    form.get_by_label("User name").fill(username)
    form.get_by_label("Role").select_option("staff")
    form.get_by_label("Password (staff and administrators)").fill("short")
    form.get_by_label("Repeat the password").fill("short")
    form.get_by_role("button", name="Create user").click()
    expect(page.locator("#password-error")).to_have_text("At least 10 characters.")
    expect(page.locator("#new-user").get_by_label("User name")).to_have_value(username)  # kept what was typed
    form = page.locator("#new-user form")
    form.get_by_label("Role").select_option("staff")
    form.get_by_label("Password (staff and administrators)").fill("a-long-password")
    form.get_by_label("Repeat the password").fill("a-long-password")
    form.get_by_role("button", name="Create user").click()
    expect(page.locator(".flash")).to_have_text(f"User {username} created: they can sign in now.")
    screenshot(page, "admin-users")
    context = browser.new_context(base_url=live_site.url, locale="en-US")
    try:
        clerk = context.new_page()
        clerk.goto(f"{live_site.url}/login")
        clerk.get_by_label("User name").fill(username)
        clerk.get_by_label("Password").fill("a-long-password")
        clerk.get_by_role("button", name="Sign in").click()
        expect(clerk.locator("header .who")).to_contain_text(username)
        expect(clerk.get_by_role("link", name="Devices & users")).to_have_count(0)  # staff, not admin
    finally:
        context.close()
