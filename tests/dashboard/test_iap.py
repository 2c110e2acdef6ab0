"""IAP: with an audience configured, every page needs a valid x-goog-iap-jwt-assertion (ES256, IAP's issuer, our
audience), verified against keys fetched over HTTP (an in-process server in IAP's public_key format: key id ->
PEM); health checks pass without it."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from dash_helpers import Served, pinned_env
from google.auth import crypt, jwt

AUDIENCE = "/projects/123456/global/backendServices/987654"


def _key(kid: str):
    private = ec.generate_private_key(ec.SECP256R1())
    pem_private = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem_public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return crypt.ES256Signer.from_string(pem_private, kid), pem_public.decode()


@pytest.fixture(scope="module")
def iap_keys():
    signer, public = _key("key-1")
    body = json.dumps({"key-1": public}).encode()
    fetched = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            fetched.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield signer, f"http://127.0.0.1:{server.server_port}/iap/verify/public_key", fetched
    server.shutdown()


def token(signer, audience=AUDIENCE, issuer="https://cloud.google.com/iap", expires_in=600):
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": "accounts.google.com:1",
        "email": "oncall@example.com",
        "iat": now,
        "exp": now + expires_in,
    }
    return jwt.encode(signer, claims).decode()


@pytest.fixture(scope="module")
def iap_served(demo_home, iap_keys):
    from batch.dashboard.app import create_app

    _, url, _ = iap_keys
    env = pinned_env(demo_home)
    env = env.model_copy(
        update={
            "dashboard": env.dashboard.model_copy(update={"iap_audience": AUDIENCE, "iap_certs_url": url})
        }
    )
    with Served(create_app(env, base_path="/dashboard")) as s:
        yield s


def test_pages_refuse_requests_without_a_valid_assertion(iap_served, iap_keys):
    signer, _, _ = iap_keys
    other_signer, _ = _key("key-1")  # same key id, another key: the signature does not verify
    url = iap_served.url + "/dashboard/"
    assert requests.get(url, timeout=30).status_code == 401
    for bad in (
        "not-a-jwt",
        token(signer, audience="/projects/1/global/backendServices/2"),
        token(signer, issuer="https://accounts.google.com"),
        token(signer, expires_in=-3600),
        token(other_signer),
    ):
        r = requests.get(url, headers={"x-goog-iap-jwt-assertion": bad}, timeout=30)
        assert r.status_code == 401, bad
        assert "invalid" in r.json()["error"] or "malformed" in r.json()["error"]


def test_a_valid_assertion_opens_every_page_under_the_base_path(iap_served, iap_keys):
    signer, _, fetched = iap_keys
    headers = {"x-goog-iap-jwt-assertion": token(signer)}
    r = requests.get(iap_served.url + "/dashboard/", headers=headers, timeout=30)
    assert r.status_code == 200 and 'href="/dashboard/metrics' in r.text
    assert requests.get(
        iap_served.url + "/dashboard/static/uPlot.iife.min.js", headers=headers, timeout=30
    ).ok
    assert fetched  # the keys came over HTTP


def test_health_checks_need_no_assertion(iap_served):
    for path in ("/healthz", "/readyz", "/dashboard/healthz"):
        assert requests.get(iap_served.url + path, timeout=30).status_code == 200
