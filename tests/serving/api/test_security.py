"""Hostile requests: bodies without a key, oversized bodies, key guessing, forged cookies.

The app is built without a model or scores (nothing to load, so it starts at once): every
check here happens before a route would need them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from kam.serving.api.app import create_app
from kam.serving.api.auth import KeyFileError, load_keys, read_keys_file
from kam.serving.api.deps import MISSING_KEY, WRONG_KEY
from kam.serving.api.guard import FailureLimiter
from kam.serving.api.server import for_workers
from kam.serving.settings import ServeSettings
from kam.serving.web.cookies import KEY_COOKIE, SessionSigner

USER_KEY = "security-user-key-0123456789"
ADMIN_KEY = "security-admin-key-0123456789"


def settings_for(tmp_path: Path, **overrides: Any) -> ServeSettings:
    values: dict[str, Any] = {
        "workdir": tmp_path,
        "tracking_uri": f"sqlite:///{tmp_path / 'absent' / 'mlflow.db'}",
        "store_url": f"duckdb:///{tmp_path / 'absent.duckdb'}",
        "api_keys": [USER_KEY],
        "admin_api_keys": [ADMIN_KEY],
    }
    values.update(overrides)
    return ServeSettings(**values)


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app(settings_for(tmp_path, auth_failures_per_minute=3))


def call(app: Any, method: str, path: str, headers: dict[str, str],
         client: str = "10.0.0.1") -> tuple[int, dict[str, str], bytes, bool]:
    """One request straight through the ASGI app, with a body that fails the test if read.

    Returns the status, headers and body of the answer, and whether the body was read.
    """
    read = False
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read = True
        return {"type": "http.request", "body": b"{" * 1000, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "server": ("127.0.0.1", 8000), "client": (client, 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    answer = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], answer, body, read


# ------------------------------------------------------------------------------------------------
# Bodies: never read without a key, never beyond the limit
# ------------------------------------------------------------------------------------------------
def test_a_body_without_a_valid_key_is_never_read(app: Any) -> None:
    sized = {"content-type": "application/json", "content-length": "1000"}
    status, _, body, read = call(app, "POST", "/v1/score", sized)
    assert (status, read) == (401, False)
    assert MISSING_KEY in body.decode()
    status, _, body, read = call(app, "POST", "/v1/score", {**sized, "x-api-key": "guess" * 4})
    assert (status, read) == (401, False)
    assert WRONG_KEY in body.decode()
    # with a key the body is read (and found to be no JSON)
    status, _, _, read = call(app, "POST", "/v1/score", {**sized, "x-api-key": USER_KEY})
    assert (status, read) == (422, True)


def test_an_oversized_body_is_refused_before_it_is_read(app: Any) -> None:
    headers = {"content-length": str(200 << 20), "x-api-key": USER_KEY}
    status, answer, body, read = call(app, "POST", "/v1/score", headers)
    assert (status, read) == (413, False)
    assert "larger than 1048576 bytes" in body.decode()
    assert answer["connection"] == "close"
    status, _, _, read = call(app, "POST", "/v1/score", {"content-length": "12x"})
    assert (status, read) == (413, False)


def test_a_chunked_body_is_cut_off_at_the_limit(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, max_body_bytes=4096)

    def chunks() -> Any:
        for _ in range(100):
            yield b" " * 1024

    with TestClient(create_app(settings)) as client:
        answer = client.post("/v1/score", content=chunks(),
                             headers={"X-API-Key": USER_KEY, "Content-Type": "application/json"})
        assert answer.status_code == 413
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["detail"] == "request body larger than 4096 bytes"


# ------------------------------------------------------------------------------------------------
# Guessing keys: per address and per key, API and sign-in
# ------------------------------------------------------------------------------------------------
def test_failed_keys_lock_out_the_address(app: Any) -> None:
    for attempt in range(3):
        status, _, _, _ = call(app, "GET", "/v1/model", {"x-api-key": f"guess-{attempt}" * 3})
        assert status == 401
    status, answer, body, _ = call(app, "GET", "/v1/model", {"x-api-key": "guess-4" * 3})
    assert status == 429
    assert 0 < int(answer["retry-after"]) <= 60
    assert "too many failed key checks" in body.decode()
    # locked out means not even checked: a valid key from there waits too
    assert call(app, "GET", "/v1/model", {"x-api-key": USER_KEY})[0] == 429
    # another address is not affected: its valid key passes (to a route that is not there)
    assert call(app, "GET", "/v1/nothing", {"x-api-key": USER_KEY}, client="10.0.0.2")[0] == 404


def test_a_key_tried_from_many_addresses_is_locked_out(app: Any) -> None:
    for n in range(3):
        assert call(app, "GET", "/v1/model", {"x-api-key": "shared-guess" * 2},
                    client=f"10.1.0.{n}")[0] == 401
    assert call(app, "GET", "/v1/model", {"x-api-key": "shared-guess" * 2},
                client="10.1.0.9")[0] == 429
    assert call(app, "GET", "/v1/model", {"x-api-key": "other-guess" * 2},
                client="10.1.0.9")[0] == 401


def test_failures_expire_after_the_window() -> None:
    now = [1000.0]
    limiter = FailureLimiter(2, window=60, clock=lambda: now[0])
    limiter.failed("ip:a")
    limiter.failed("ip:a")
    assert limiter.retry_after("ip:a") == 60
    now[0] += 30
    assert limiter.retry_after("ip:a") == 30
    assert limiter.retry_after("ip:b") == 0
    now[0] += 30.5
    assert limiter.retry_after("ip:a") == 0


def test_sign_in_guessing_is_limited(app: Any) -> None:
    with TestClient(app) as client:
        for _ in range(3):
            wrong = client.post("/login", data={"key": "not-a-key-" * 3, "next": "/"})
            assert wrong.status_code == 401
        limited = client.post("/login", data={"key": USER_KEY, "next": "/"})
        assert limited.status_code == 429
        assert "Too many failed sign-ins" in limited.text
        assert int(limited.headers["retry-after"]) > 0
        assert KEY_COOKIE not in limited.cookies


# ------------------------------------------------------------------------------------------------
# The page's session: signed, expiring, never the key
# ------------------------------------------------------------------------------------------------
def test_the_cookie_holds_a_signed_token_not_the_key(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, session_secret="s" * 40)
    with TestClient(create_app(settings)) as client:
        signed = client.post("/login", data={"key": USER_KEY, "next": "/"},
                             follow_redirects=False)
        assert signed.status_code == 303
        token = client.cookies[KEY_COOKIE]
        assert USER_KEY not in token and "." in token
        assert USER_KEY.encode().hex() not in token
        assert client.get("/", follow_redirects=False).status_code != 303
        payload, signature = token.split(".")
        forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
        client.cookies.set(KEY_COOKIE, forged)
        assert client.get("/", follow_redirects=False).status_code == 303  # to /login
    # the same token, under another secret, or once its key is removed: no session
    other = create_app(settings_for(tmp_path, session_secret="t" * 40))
    with TestClient(other) as client:
        client.cookies.set(KEY_COOKIE, token)
        assert client.get("/", follow_redirects=False).status_code == 303
    rotated = create_app(settings_for(tmp_path, session_secret="s" * 40,
                                      api_keys=["another-user-key-0123456789"]))
    with TestClient(rotated) as client:
        client.cookies.set(KEY_COOKIE, token)
        assert client.get("/", follow_redirects=False).status_code == 303


def test_a_session_expires(tmp_path: Path) -> None:
    keys = load_keys(settings_for(tmp_path))
    now = [1_000_000.0]
    signer = SessionSigner(keys, "x" * 40, clock=lambda: now[0])
    token = signer.issue(ADMIN_KEY, seconds=60)
    assert signer.role_of(token) == "admin"
    assert signer.role_of(signer.issue(USER_KEY)) == "user"
    now[0] += 61
    assert signer.role_of(token) is None
    assert signer.role_of("garbage") is None and signer.role_of("a.b") is None


def test_the_cookie_is_secure_off_loopback(tmp_path: Path) -> None:
    """Listening beyond loopback, TLS is expected in front (a proxy): the cookie is Secure even
    when the request reached the service as plain http."""
    settings = settings_for(tmp_path, host="0.0.0.0")
    with TestClient(create_app(settings), base_url="http://kam.example") as client:
        signed = client.post("/login", data={"key": USER_KEY, "next": "/"},
                             follow_redirects=False, )
        cookie = next(c for c in signed.headers.get_list("set-cookie")
                      if c.startswith(f"{KEY_COOKIE}="))
        assert "Secure" in cookie and "HttpOnly" in cookie


# ------------------------------------------------------------------------------------------------
# Keys as hashes; clear errors for bad keys
# ------------------------------------------------------------------------------------------------
def _sha(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def test_keys_file_may_hold_hashes_only(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# hashes only\n{_sha(USER_KEY)}\nadmin:{_sha(ADMIN_KEY)}\n")
    settings = settings_for(tmp_path, api_keys=[], admin_api_keys=[], api_keys_file=keys_file)
    assert USER_KEY not in keys_file.read_text()
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/model", headers={"X-API-Key": USER_KEY}).status_code == 503
        assert client.get("/v1/model", headers={"X-API-Key": _sha(USER_KEY)}).status_code == 401
        assert client.post("/v1/admin/reload",
                           headers={"X-API-Key": ADMIN_KEY}).status_code != 401
    keys_file.write_text("sha256:abc\n")
    with pytest.raises(KeyFileError, match="line 1: a sha256: entry needs 64 hex digits"):
        read_keys_file(keys_file)


def test_workers_get_hashes_not_keys(tmp_path: Path) -> None:
    handed = for_workers(settings_for(tmp_path))
    text = handed.model_dump_json()
    assert USER_KEY not in text and ADMIN_KEY not in text
    assert handed.session_secret and len(handed.session_secret) >= 32
    with TestClient(create_app(handed)) as client:
        assert client.get("/v1/model", headers={"X-API-Key": USER_KEY}).status_code == 503
        assert client.get("/v1/model", headers={"X-API-Key": "x" * 20}).status_code == 401


def test_a_short_key_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as raised:
        ServeSettings(api_keys="short")
    assert raised.value.errors()[0]["loc"] == ("api_keys",)
    done = subprocess.run(
        [sys.executable, "-m", "kam.cli", "serve"],
        env={**os.environ, "KAM_API_KEYS": "short", "KAM_WORKDIR": str(tmp_path),
             "COLUMNS": "300"},
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 2
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: setting api_keys: 1 key(s) shorter than 16 characters")
    assert "Traceback" not in done.stderr
