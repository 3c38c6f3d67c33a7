"""`backburner serve` on TLS, and behind a reverse proxy: https links, Secure cookies,
HSTS, and the client address a trusted proxy forwards (it is what key guessing is counted
by); forwarded headers from anyone else are ignored."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import child_env, free_port, started

pytestmark = pytest.mark.slow


def self_signed(directory: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    assert openssl, "openssl is missing: apt-get install openssl (make test does it)"
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def admin_key_from(log: Path, base: str, **client: object) -> str:
    """Wait until the server answers, then read the admin key it printed once."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1, **client).status_code == 200:  # type: ignore[arg-type]
                found = re.search(r"Admin key: (\S+)", log.read_text())
                assert found, log.read_text()
                return found[1]
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not ready:\n{log.read_text()}")


def test_serve_speaks_tls_with_secure_cookies_and_hsts(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    env = child_env(f"sqlite:///{tmp_path}/bb.db")
    args = ["serve", "--port", str(port), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    with started(*args, env=env, log=tmp_path / "serve.log"):
        trust = ssl.create_default_context(cafile=str(cert))
        base = f"https://127.0.0.1:{port}"
        admin = admin_key_from(tmp_path / "serve.log", base, verify=trust)
        assert f"Sign in:   {base}/?token=" in (tmp_path / "serve.log").read_text()
        with httpx.Client(base_url=base, verify=trust) as client:
            health = client.get("/healthz")
            assert health.status_code == 200
            assert health.headers["strict-transport-security"].startswith("max-age=")
            signed_in = client.get(f"/?token={admin}", follow_redirects=False)
            assert "secure" in signed_in.headers["set-cookie"].lower()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_a_trusted_proxy_forwards_the_client_and_https(tmp_path: Path) -> None:
    port = free_port()
    env = child_env(f"sqlite:///{tmp_path}/bb.db", auth_failures_per_minute="2")
    with started("serve", "--port", str(port), env=env, log=tmp_path / "serve.log"):
        base = f"http://127.0.0.1:{port}"
        admin = admin_key_from(tmp_path / "serve.log", base)
        # Loopback is the trusted proxy (the default): what it forwards is believed.
        with httpx.Client(base_url=base) as proxy:
            forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.5"}
            signed_in = proxy.get(f"/?token={admin}", headers=forwarded, follow_redirects=False)
            assert "secure" in signed_in.headers["set-cookie"].lower()
            assert "strict-transport-security" in signed_in.headers
            guessing = {**forwarded, "Authorization": "Bearer bb_guess"}
            assert [proxy.get("/api/jobs", headers=guessing).status_code for _ in range(3)] == [
                401,
                401,
                429,
            ]
            # Another client behind the same proxy is not throttled.
            other = {"X-Forwarded-For": "198.51.100.1", "Authorization": f"Bearer {admin}"}
            assert proxy.get("/api/jobs", headers=other).status_code == 200


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(tmp_path: Path) -> None:
    port = free_port()
    env = child_env(f"sqlite:///{tmp_path}/bb.db", trusted_proxies="")
    with started("serve", "--port", str(port), env=env, log=tmp_path / "serve.log"):
        base = f"http://127.0.0.1:{port}"
        admin = admin_key_from(tmp_path / "serve.log", base)
        spoofed = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.5"}
        signed_in = httpx.get(f"{base}/?token={admin}", headers=spoofed, follow_redirects=False)
        assert "secure" not in signed_in.headers["set-cookie"].lower()
        assert "strict-transport-security" not in signed_in.headers
