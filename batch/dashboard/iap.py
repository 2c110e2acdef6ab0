"""Identity-Aware Proxy: every request that reaches the dashboard through IAP carries a JWT signed by IAP
(header ``x-goog-iap-jwt-assertion``, ES256). We verify its signature against IAP's public keys, its issuer and
its audience (``/projects/NUMBER/global/backendServices/ID`` of the dashboard's backend service, from
``environments.<env>.dashboard.iap_audience``), so a request that bypasses the load balancer (another pod, a port
forward) is refused. The keys are fetched from ``dashboard.iap_certs_url`` and kept for an hour; an unknown key id
fetches them again (IAP rotates its keys).
"""

from __future__ import annotations

import threading
import time

import requests
from google.auth import exceptions as google_exceptions
from google.auth import jwt

HEADER = "x-goog-iap-jwt-assertion"
ISSUER = "https://cloud.google.com/iap"
CERTS_TTL_S = 3600.0


class IapError(Exception):
    """The request carries no valid IAP assertion (the reason is safe to show: no token content)."""


class IapVerifier:
    def __init__(self, audience: str, certs_url: str, *, timeout_s: float = 5.0):
        self.audience = audience
        self.certs_url = certs_url
        self.timeout_s = timeout_s
        self._certs: dict[str, str] = {}
        self._fetched = 0.0
        self._lock = threading.Lock()

    def _fetch(self) -> dict[str, str]:
        resp = requests.get(self.certs_url, timeout=self.timeout_s)
        resp.raise_for_status()
        certs = resp.json()
        if not isinstance(certs, dict) or not certs:
            raise IapError("IAP public keys: unexpected response")
        return certs

    def certs(self, *, refresh: bool = False) -> dict[str, str]:
        with self._lock:
            if refresh or not self._certs or time.monotonic() - self._fetched > CERTS_TTL_S:
                self._certs = self._fetch()
                self._fetched = time.monotonic()
            return self._certs

    def verify(self, token: str | None) -> dict:
        """The assertion's claims, or IapError."""
        if not token:
            raise IapError(f"missing {HEADER}: the dashboard is served through IAP only")
        try:
            kid = jwt.decode_header(token).get("kid")
        except (ValueError, google_exceptions.GoogleAuthError) as e:
            raise IapError(f"malformed IAP assertion ({type(e).__name__})") from None
        try:
            certs = self.certs()
            if kid not in certs:
                certs = self.certs(refresh=True)
        except (requests.RequestException, ValueError) as e:
            raise IapError(f"IAP public keys unavailable ({type(e).__name__})") from None
        try:
            claims = jwt.decode(token, certs=certs, audience=self.audience, clock_skew_in_seconds=30)
        except (ValueError, google_exceptions.GoogleAuthError) as e:
            raise IapError(f"invalid IAP assertion: {str(e).split(':')[0][:120]}") from None
        if claims.get("iss") != ISSUER:
            raise IapError("invalid IAP assertion: wrong issuer")
        return claims
