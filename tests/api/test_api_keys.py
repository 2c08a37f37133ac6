from __future__ import annotations

import io
import os

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from picterra.organizations.models import ApiKey, Membership, Organization


def test_api_key_is_shown_once_stored_hashed_and_revocable(personas, project, client_for):
    owner = client_for(personas.owner)
    response = owner.post(reverse("v1:apikey-list"), {"organization": str(personas.organization.pk), "name": "ci"})
    assert response.status_code == 201
    raw = response.json()["key"]
    stored = ApiKey.objects.get(pk=response.json()["id"])
    assert raw not in (stored.key_hash, stored.prefix) and len(stored.key_hash) == 64
    assert "key" not in owner.get(reverse("v1:apikey-detail", args=[stored.pk])).json()

    script = APIClient()
    listed = script.get(reverse("v1:project-list"), HTTP_X_API_KEY=raw)
    assert listed.status_code == 200
    assert [p["name"] for p in listed.json()["results"]] == ["Vineyards"]
    stored.refresh_from_db()
    assert stored.last_used_at is not None

    assert owner.delete(reverse("v1:apikey-detail", args=[stored.pk])).status_code == 204
    refused = script.get(reverse("v1:project-list"), HTTP_X_API_KEY=raw)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "Invalid or revoked API key."


def test_api_key_of_a_deactivated_user_stops_working(personas, client_for):
    _, raw = ApiKey.issue(personas.member, personas.organization)
    assert APIClient().get(reverse("v1:project-list"), HTTP_X_API_KEY=raw).status_code == 200
    personas.member.is_active = False
    personas.member.save()
    assert APIClient().get(reverse("v1:project-list"), HTTP_X_API_KEY=raw).status_code == 401


def test_operators_create_keys_from_the_shell(personas, project):
    def create(*args: str) -> str:
        out = io.StringIO()
        call_command("create_api_key", *args, stdout=out)
        return out.getvalue().splitlines()[-1]  # the key alone on the last line

    # A new user gets a personal organisation, no password, and a key that works at once.
    raw = create("integration-bot", "--name", "nightly export")
    bot = get_user_model().objects.get(username="integration-bot")
    assert not bot.has_usable_password()
    listed = APIClient().get(reverse("v1:project-list"), HTTP_X_API_KEY=raw)
    assert listed.status_code == 200 and listed.json()["results"] == []  # its own, empty organisation
    assert ApiKey.objects.get(user=bot).name == "nightly export"

    # An existing member gets a key scoped to their organisation, which sees its projects.
    raw = create(personas.member.username)
    listed = APIClient().get(reverse("v1:project-list"), HTTP_X_API_KEY=raw)
    assert [p["name"] for p in listed.json()["results"]] == ["Vineyards"]

    # Several organisations: the operator must say which.
    other = Organization.objects.create(name="Other")
    Membership.objects.create(organization=other, user=personas.member)
    with pytest.raises(CommandError, match="choose one with --organization"):
        create(personas.member.username)
    raw = create(personas.member.username, "--organization", "Other")
    assert ApiKey.objects.get(prefix=raw[: ApiKey.PREFIX_LENGTH]).organization == other
    assert APIClient().get(reverse("v1:project-list"), HTTP_X_API_KEY=raw).status_code == 200


@pytest.mark.parametrize("cache_backend", ["memory", "redis"])
def test_api_keys_are_throttled_with_429_and_retry_after(
    personas, project, client_for, monkeypatch, settings, cache_backend
):

    if cache_backend == "redis":  # what CACHE_URL selects in production: counts shared by all web processes
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": settings.CELERY_BROKER_URL,
                "KEY_PREFIX": f"throttle-test-{os.getpid()}",
            }
        }
    settings.API_KEY_THROTTLE_RATE = "3/min"
    # No cache.clear(): on Redis that would flush the broker's database. The keys below are new anyway.
    _, raw = ApiKey.issue(personas.member, personas.organization)
    _, other_raw = ApiKey.issue(personas.owner, personas.organization)
    script = APIClient()
    statuses = [script.get(reverse("v1:project-list"), HTTP_X_API_KEY=raw).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = script.get(reverse("v1:project-list"), HTTP_X_API_KEY=raw)
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 60
    assert "throttled" in refused.json()["detail"].lower()
    # Per key: another key, and the web app's session, are not held back.
    assert script.get(reverse("v1:project-list"), HTTP_X_API_KEY=other_raw).status_code == 200
    assert client_for(personas.member).get(reverse("v1:project-list")).status_code == 200
