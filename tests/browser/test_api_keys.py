"""API keys from the web app: create one (shown once), use it against the public API, see it used, revoke it."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest

from picterra.organizations.models import ApiKey

pytestmark = pytest.mark.django_db(transaction=True)


def call_public_api(base_url: str, key: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"{base_url}/public/api/v2/users/me/", headers={"X-Api-Key": key})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_create_use_and_revoke_an_api_key_from_the_web_app(page, app_server, sign_in, personas, screenshot):
    sign_in(personas.owner)
    page.goto(f"{app_server.url}/app/")
    page.click("[data-testid=api-keys-link]")
    page.wait_for_url(re.compile(r"/app/api-keys$"))
    page.locator("h1", has_text="API keys").wait_for()

    page.fill("input[name=name]", "nightly export")
    page.click("[data-testid=create-key]")
    shown = page.locator("[data-testid=issued-key-value]")
    shown.wait_for()
    key = shown.input_value()
    row = page.locator("[data-testid=api-key-row]", has_text="nightly export")
    row.wait_for()
    assert row.locator("td").nth(4).inner_text() == "never"
    stored = ApiKey.objects.get(user=personas.owner, name="nightly export")
    assert key.startswith(stored.prefix) and len(key) > len(stored.prefix) and key != stored.key_hash
    screenshot("14-api-keys")

    status, body = call_public_api(app_server.url, key)
    assert status == 200 and body["organization_id"] == str(personas.organization.pk)

    page.reload()  # shown once: gone after a reload, and the list says the key was used
    row.wait_for()
    assert page.locator("[data-testid=issued-key-value]").count() == 0
    assert row.locator("td").nth(4).inner_text() != "never"

    row.locator("[data-testid=revoke-key]").click()
    page.click(".modal .btn-danger")
    row.wait_for(state="detached")
    status, body = call_public_api(app_server.url, key)
    assert status == 401 and body["detail"] == "Invalid or revoked API key."


def test_a_key_cannot_be_created_before_the_organisations_are_listed(page, app_server, sign_in, personas):
    """A key belongs to an organisation, listed after the page appears: until then Create is disabled (a click
    there used to send no organisation and got a 400)."""
    sign_in(personas.owner)
    held = []
    page.route(re.compile(r"/api/v1/organizations/"), lambda route: held.append(route))  # held until released below
    page.goto(f"{app_server.url}/app/api-keys")
    page.locator("h1", has_text="API keys").wait_for()
    page.wait_for_function("() => document.querySelector('[data-testid=create-key]') !== null")
    while not held:
        page.wait_for_timeout(50)  # the request is on its way: wait for the route to hold it, however long it takes
    create = page.locator("[data-testid=create-key]")
    assert create.is_disabled()
    for route in held:
        route.continue_()
    page.unroute(re.compile(r"/api/v1/organizations/"))  # later requests go through
    page.wait_for_function("() => !document.querySelector('[data-testid=create-key]').disabled")
    page.fill("input[name=name]", "right away")
    create.click()
    page.locator("[data-testid=issued-key-value]").wait_for()
    assert ApiKey.objects.filter(user=personas.owner, name="right away").exists()
