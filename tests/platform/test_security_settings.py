"""No known credentials off loopback, secure cookies and HSTS over HTTPS, security headers on every answer."""

from __future__ import annotations

import importlib.util
import io
import os
import re
import subprocess
import types
import wsgiref.util

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import Client

from picterra.security import demo_account_policy, is_loopback_host, startup_problem
from tests.conftest import REPO

SETTINGS_ENV = (
    "HOST",
    "SECRET_KEY",
    "DEMO_PASSWORD",
    "PUBLIC_BASE_URL",
    "DEBUG",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_PROXY_SSL_HEADER",
)


def load_settings(monkeypatch, tmp_path, **env: str) -> types.ModuleType:
    """Evaluate picterra/settings.py afresh under these variables (the running settings stay untouched)."""
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("settings_probe", REPO / "picterra" / "settings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- who may start where --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("", False),
        ("::", False),
        ("192.168.1.20", False),
        ("localhost.example.org", False),
        ("myhost", False),
    ],
)
def test_loopback_means_this_machine_only(host, loopback):
    assert is_loopback_host(host) is loopback


def test_a_network_host_needs_an_explicit_secret_key_and_demo_password():
    assert startup_problem("127.0.0.1", "", "") is None
    assert startup_problem("0.0.0.0", "k" * 50, "s3cret-demo") is None
    both = startup_problem("0.0.0.0", "", "")
    assert "HOST=0.0.0.0" in both and "Set SECRET_KEY" in both and "DEMO_PASSWORD" in both
    assert "HOST=127.0.0.1" in both  # the other way out
    only_demo = startup_problem("192.168.1.20", "k" * 50, "")
    assert "DEMO_PASSWORD" in only_demo and "SECRET_KEY" not in only_demo


def test_settings_refuse_a_network_host_without_credentials(monkeypatch, tmp_path):
    with pytest.raises(ImproperlyConfigured, match="Set SECRET_KEY .* and DEMO_PASSWORD"):
        load_settings(monkeypatch, tmp_path, HOST="0.0.0.0")
    assert not (tmp_path / "var" / "secret_key").exists()  # refused before a key was generated on disk
    started = load_settings(monkeypatch, tmp_path, HOST="0.0.0.0", SECRET_KEY="k" * 50, DEMO_PASSWORD="pw-demo-9")
    assert started.SECRET_KEY == "k" * 50
    assert load_settings(monkeypatch, tmp_path).HOST == "127.0.0.1"  # the default starts as before


def test_make_run_refuses_a_network_host_before_starting_anything(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEMO_PASSWORD", "CELERY_BROKER_URL")}
    env.update(HOST="0.0.0.0", VAR_DIR=str(tmp_path / "var"), PORT="18555")
    result = subprocess.run(["bash", "scripts/run.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Set SECRET_KEY" in result.stderr and "DEMO_PASSWORD" in result.stderr
    assert not (tmp_path / "var" / "run" / "redis.sock").exists()
    assert not (tmp_path / "var" / "picterra.sqlite3").exists()


def test_demo_password_policy():
    fixed = demo_account_policy("127.0.0.1", "http://127.0.0.1:8000", "")
    assert (fixed.password, fixed.generated, fixed.superuser) == ("demo-password", False, True)
    behind_proxy = demo_account_policy("127.0.0.1", "https://picterra.example.org", "", token=lambda n: "r4nd0m")
    assert (behind_proxy.password, behind_proxy.generated, behind_proxy.superuser) == ("r4nd0m", True, False)
    explicit = demo_account_policy("0.0.0.0", "http://10.0.0.5:8000", "chosen-pw")
    assert (explicit.password, explicit.generated, explicit.superuser) == ("chosen-pw", False, False)


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", "--no-image", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def quick_hashes(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_seed_demo_on_loopback_keeps_the_known_password_and_admin_rights(db, settings, quick_hashes):
    settings.HOST, settings.PUBLIC_BASE_URL, settings.DEMO_PASSWORD = "127.0.0.1", "http://127.0.0.1:8000", ""
    assert "password 'demo-password'" in seed()
    demo = get_user_model().objects.get(username="demo")
    assert demo.is_superuser and demo.check_password("demo-password")


def test_seed_demo_off_loopback_prints_a_random_password_once_and_grants_no_admin(db, settings, quick_hashes):
    settings.HOST, settings.PUBLIC_BASE_URL, settings.DEMO_PASSWORD = "127.0.0.1", "http://127.0.0.1:8000", ""
    seed()  # an account made by an earlier loopback-only run: well-known password, superuser
    settings.PUBLIC_BASE_URL = "https://picterra.example.org"
    first = seed()
    demo = get_user_model().objects.get(username="demo")
    assert not demo.check_password("demo-password")
    assert not demo.is_superuser and not demo.is_staff
    password = first.split("password '", 1)[1].split("'", 1)[0]
    assert len(password) >= 16 and demo.check_password(password)
    again = seed()
    assert password not in again and "printed when it was created" in again
    assert get_user_model().objects.get(username="demo").check_password(password)


def test_seed_demo_uses_an_explicit_demo_password(db, settings, quick_hashes):
    settings.HOST, settings.PUBLIC_BASE_URL, settings.DEMO_PASSWORD = "0.0.0.0", "http://10.0.0.5:8000", "chosen-pw"
    assert "password 'chosen-pw'" in seed()
    demo = get_user_model().objects.get(username="demo")
    assert demo.check_password("chosen-pw") and not demo.is_superuser


# --- cookies and HTTPS ----------------------------------------------------------------------------------------------


def test_cookies_are_secure_unless_the_server_is_loopback_only(monkeypatch, tmp_path):
    local = load_settings(monkeypatch, tmp_path)  # `make run`: http://127.0.0.1 must keep working
    assert local.SESSION_COOKIE_SECURE is False and local.CSRF_COOKIE_SECURE is False
    deployed = load_settings(monkeypatch, tmp_path, PUBLIC_BASE_URL="https://picterra.example.org")
    assert deployed.SESSION_COOKIE_SECURE is True and deployed.CSRF_COOKIE_SECURE is True
    exposed = load_settings(monkeypatch, tmp_path, HOST="0.0.0.0", SECRET_KEY="k" * 50, DEMO_PASSWORD="pw-demo-9")
    assert exposed.SESSION_COOKIE_SECURE is True
    debug = load_settings(monkeypatch, tmp_path, PUBLIC_BASE_URL="https://picterra.example.org", DEBUG="true")
    assert debug.SESSION_COOKIE_SECURE is False
    chosen = load_settings(
        monkeypatch, tmp_path, PUBLIC_BASE_URL="https://picterra.example.org", SESSION_COOKIE_SECURE="false"
    )
    assert chosen.SESSION_COOKIE_SECURE is False and chosen.CSRF_COOKIE_SECURE is False
    empty = load_settings(monkeypatch, tmp_path, PUBLIC_BASE_URL="https://picterra.example.org", CSRF_COOKIE_SECURE="")
    assert empty.CSRF_COOKIE_SECURE is True  # an empty value (as copied from .env.example) keeps the default


def test_proxy_ssl_header_is_configurable(monkeypatch, tmp_path):
    assert load_settings(monkeypatch, tmp_path).SECURE_PROXY_SSL_HEADER is None
    configured = load_settings(monkeypatch, tmp_path, SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https")
    assert configured.SECURE_PROXY_SSL_HEADER == ("HTTP_X_FORWARDED_PROTO", "https")
    with pytest.raises(ImproperlyConfigured, match="SECURE_PROXY_SSL_HEADER"):
        load_settings(monkeypatch, tmp_path, SECURE_PROXY_SSL_HEADER="https")


def test_session_cookie_is_secure_when_configured(db, settings, quick_hashes):
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    get_user_model().objects.create_user("carla", password="pw-carla")
    response = Client().post("/accounts/login/", {"username": "carla", "password": "pw-carla"}, secure=True)
    assert response.status_code == 302
    assert response.cookies["sessionid"]["secure"] and response.cookies["sessionid"]["httponly"]


def test_hsts_only_over_https_and_through_a_trusted_proxy_header(db, settings):
    assert "Strict-Transport-Security" not in Client().get("/healthz")
    direct = Client().get("/healthz", secure=True)
    assert direct["Strict-Transport-Security"].startswith("max-age=31536000")
    # Behind a TLS-terminating proxy: believed only once SECURE_PROXY_SSL_HEADER names the header.
    assert "Strict-Transport-Security" not in Client().get("/healthz", HTTP_X_FORWARDED_PROTO="https")
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxied = Client().get("/healthz", HTTP_X_FORWARDED_PROTO="https")
    assert proxied["Strict-Transport-Security"].startswith("max-age=31536000")


# --- headers on every answer ----------------------------------------------------------------------------------------

HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def assert_security_headers(response) -> str:
    for name, value in HEADERS.items():
        assert response[name] == value, name
    assert "camera=()" in response["Permissions-Policy"]
    csp = response["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "object-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-eval" not in csp
    return csp


@pytest.mark.parametrize("path", ["/accounts/login/", "/healthz", "/api/v1/projects/", "/api/docs/", "/nowhere"])
def test_every_page_carries_the_security_headers(db, settings, path):
    settings.TILE_BASE_URL = "https://tiles.example.org"
    csp = assert_security_headers(Client().get(path))
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert "https://tiles.example.org" in directives["img-src"]  # map tiles come from the tile server
    assert "https://tiles.example.org" in directives["connect-src"]


def test_api_docs_need_no_inline_script(db):
    page = Client().get("/api/docs/").content.decode()
    assert "<script>" not in page  # the start-up script is a file (allowed by script-src 'self')
    script = Client().get("/api/docs/?script=")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()


def test_the_tile_server_answers_with_the_security_headers(db):
    from imagery.tile_wsgi import application

    environ = {"PATH_INFO": "/tiles/images/00000000-0000-0000-0000-000000000000/v1/0/0/0.png", "REQUEST_METHOD": "GET"}
    wsgiref.util.setup_testing_defaults(environ)
    environ["HTTP_HOST"] = "localhost"
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured.update(status=status, headers=dict(headers))

    b"".join(application(environ, start_response))
    assert captured["status"].startswith("401")
    headers = captured["headers"]
    for name, value in HEADERS.items():
        assert headers[name] == value, name
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_pages_have_no_script_the_policy_would_block(db, client_for, personas):
    """Every <script> on our pages is a file from this server or a JSON data block (never executed)."""
    client = client_for(personas.member)
    for path in ("/accounts/login/", "/", "/app/"):
        page = client.get(path).content.decode()
        for tag in re.findall(r"<script[^>]*>", page):
            assert "src=" in tag or 'type="application/json"' in tag, (path, tag)
