"""Signing in and out of the service centre, and the language switch, in a real browser."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import admin_password, screenshot


def test_admin_signs_in_through_the_form_and_sees_the_admin_pages(anonymous_page, live_site):
    page = anonymous_page
    page.goto(f"{live_site.url}/admin/devices")
    expect(page).to_have_url(re.compile(r"/login\?next="))  # the page asked for sign-in first
    screenshot(page, "sign-in")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(admin_password(live_site))
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_site.url}/admin/devices")  # ... and came back to it
    expect(page.get_by_role("heading", name="Handhelds")).to_be_visible()
    expect(page.locator("header .who")).to_contain_text("Demo Administrator")
    expect(page.get_by_role("link", name="Devices & users")).to_be_visible()


def test_a_wrong_password_shows_the_error_and_does_not_sign_in(anonymous_page, live_site):
    page = anonymous_page
    page.goto(f"{live_site.url}/login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Unknown user name or wrong password.")
    screenshot(page, "sign-in-wrong-password")
    page.goto(f"{live_site.url}/")
    expect(page).to_have_url(re.compile(r"/login"))


def test_sign_out_ends_the_session(page, live_site):
    page.goto(f"{live_site.url}/")
    expect(page.get_by_role("heading", name="Service centre")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator(".flash")).to_have_text("Signed out.")
    page.goto(f"{live_site.url}/admin/users")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_language_switch_changes_the_page_language(page, live_site):
    page.goto(f"{live_site.url}/admin/users")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    language = page.locator("select[name=lang]")  # its label is translated too
    language.select_option("zh")  # submits on change
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page).to_have_url(f"{live_site.url}/admin/users")  # the switch returns to the same page
    expect(language).to_have_value("zh")
    screenshot(page, "admin-users-zh")
    language.select_option("en")
    expect(page.locator("html")).to_have_attribute("lang", "en")

