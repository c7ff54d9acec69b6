"""The console's session and its forms' protection.

A session is the API key itself, sealed (AES-GCM, a key derived from the master key)
into an HttpOnly, SameSite=Strict cookie with the instant it was sealed: any worker
process opens it, the browser's scripts never see it, and a copied cookie is useless
after `SESSION_HOURS`. Every page authenticates the key again, through the API
(`api.console.client`), so a revoked or expired key ends the session within the API's
own delay (`KeyCache.TTL_SECONDS`).

Every form carries a token that is an HMAC of a random cookie of the browser's
(`CSRF_COOKIE`, new at each sign-in) and of the session cookie: a page of another site
can neither read those cookies nor compute a token for them, and a pair of cookie and
token taken from a page of one's own is worthless in a browser signed in as someone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SESSION_COOKIE = "ledger_console"
CSRF_COOKIE = "ledger_console_csrf"
LANG_COOKIE = "ledger_console_lang"
SESSION_HOURS = 8
NONCE_BYTES = 12


def _derive(master_key: bytes, purpose: bytes) -> bytes:
    return HKDF(SHA256(), 32, salt=None, info=b"talent-ledger console " + purpose).derive(
        master_key
    )


class Sessions:
    """Seals and opens session cookies, and makes and checks form tokens."""

    def __init__(self, master_key: bytes) -> None:
        self._aead = AESGCM(_derive(master_key, b"session"))
        self._csrf_key = _derive(master_key, b"csrf")

    def seal(self, api_key: str, now: float | None = None) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        payload = json.dumps({"key": api_key, "at": int(now or time.time())}).encode()
        sealed = nonce + self._aead.encrypt(nonce, payload, SESSION_COOKIE.encode())
        return base64.urlsafe_b64encode(sealed).decode()

    def open(self, cookie: str | None, now: float | None = None) -> str | None:
        """The API key a cookie holds, or None if it is missing, forged or too old."""
        if not cookie:
            return None
        try:
            sealed = base64.urlsafe_b64decode(cookie.encode())
            payload = self._aead.decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], SESSION_COOKIE.encode()
            )
            opened = json.loads(payload)
        except (ValueError, InvalidTag):
            return None
        if (now or time.time()) - opened["at"] > SESSION_HOURS * 3600:
            return None
        key: str = opened["key"]
        return key

    def token(self, csrf_cookie: str, session_cookie: str | None) -> str:
        message = f"{csrf_cookie}\n{session_cookie or ''}".encode()
        return hmac.new(self._csrf_key, message, hashlib.sha256).hexdigest()

    def token_holds(
        self, csrf_cookie: str | None, session_cookie: str | None, token: str | None
    ) -> bool:
        if not csrf_cookie or not token:
            return False
        return hmac.compare_digest(self.token(csrf_cookie, session_cookie), token)


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(32)
