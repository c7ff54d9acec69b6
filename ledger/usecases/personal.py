"""Personal data sealed per talent, so that it can be erased from an immutable ledger.

Events never change, so a talent's name never enters one in clear: it is sealed with
AES-GCM under a data key of that talent's own, and the data keys are kept outside the
events, wrapped by the master key. Destroying one data key (crypto-shredding) leaves
every copy of the sealed name, in events, read models and their backups, unreadable,
while amounts, history and the hash chain stay exactly as recorded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEALED_PREFIX = "pd1:"
KEY_BYTES = 32
NONCE_BYTES = 12
# A key-table entry no talent id can take (ids start with a letter or digit): the
# master key wraps it once, so a wrong LEDGER_MASTER_KEY is refused at start.
MASTER_CHECK_ID = "$master-key-check"


class MasterKeyMismatch(Exception):
    """The configured master key is not the one this database's data keys were wrapped by."""


class PersonalDataErased(Exception):
    """The talent's data key was destroyed: its personal data can no longer be sealed."""


def parse_master_key(text: str) -> bytes:
    """A master key as configured: base64 of 32 random bytes."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError("LEDGER_MASTER_KEY must be base64 of 32 bytes (`openssl rand -base64 32`)")
    return key


def new_master_key() -> str:
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


class KeyStore(Protocol):
    """Where wrapped data keys live (`ledger.adapters.talent_keys.PostgresKeyStore`)."""

    def get_or_add(self, wrapped: Mapping[str, bytes]) -> dict[str, bytes | None]:
        """Store each talent's `wrapped` key unless it has one; answer the stored keys,
        None where destroyed. Concurrent callers all get the same keys."""

    def find(self, talent_id: str) -> bytes | None:
        """The stored wrapped key; None if there is none or it was destroyed."""

    def destroy(self, talent_id: str) -> bool:
        """Destroy the talent's key for good; False if it had none left."""


@dataclass(frozen=True, repr=False)
class DataKey:
    talent_id: str
    secret: bytes

    def seal(self, text: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.secret).encrypt(nonce, text.encode(), self._aad)
        return SEALED_PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str) -> str:
        if not sealed.startswith(SEALED_PREFIX):
            raise ValueError("not sealed personal data")
        raw = base64.b64decode(sealed.removeprefix(SEALED_PREFIX))
        aesgcm = AESGCM(self.secret)
        return aesgcm.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._aad).decode()

    def digest(self, text: str) -> str:
        """A keyed hash of `text`: what a retry's fingerprint compares, since a plain
        hash of a name would let anyone holding the events guess it, even after
        erasure."""
        mac_key = hmac.new(self.secret, b"fingerprint", hashlib.sha256).digest()
        return hmac.new(mac_key, text.encode(), hashlib.sha256).hexdigest()

    @property
    def _aad(self) -> bytes:
        # binds a sealed value to its talent: it cannot be copied onto another one
        return b"talent:" + self.talent_id.encode()


class Vault:
    """Seals and reveals talents' personal data; the only holder of the master key."""

    def __init__(self, master_key: bytes, keys: KeyStore) -> None:
        self._master = AESGCM(master_key)
        self._keys = keys
        check = keys.get_or_add({MASTER_CHECK_ID: self._new_wrapped(MASTER_CHECK_ID)})[
            MASTER_CHECK_ID
        ]
        assert check is not None, "the master-key check is never destroyed"
        try:
            self._unwrap(MASTER_CHECK_ID, check)
        except InvalidTag:
            raise MasterKeyMismatch(
                "LEDGER_MASTER_KEY is not the key this database's personal data was sealed with"
            ) from None

    def key_for_new(self, talent_id: str) -> DataKey:
        """The talent's data key, created on first use (a registration or its retry)."""
        return self.keys_for_new([talent_id])[talent_id]

    def keys_for_new(self, talent_ids: Iterable[str]) -> dict[str, DataKey]:
        """`key_for_new` for many talents in one transaction (bulk loads)."""
        ids = list(talent_ids)
        keys = self.keys_of(ids)
        erased = [t for t in ids if t not in keys]
        if erased:
            raise PersonalDataErased(f"talent {erased[0]}'s personal data was erased")
        return keys

    def keys_of(self, talent_ids: Iterable[str]) -> dict[str, DataKey]:
        """The data keys of these talents, made for those without one yet; a talent
        whose key was destroyed is left out."""
        stored = self._keys.get_or_add({t: self._new_wrapped(t) for t in talent_ids})
        return {t: self._unwrap(t, w) for t, w in stored.items() if w is not None}

    def wrapped_key(self, talent_id: str) -> bytes | None:
        """The talent's data key as stored (wrapped), for `open`; None once destroyed."""
        return self._keys.find(talent_id)

    def open(self, talent_id: str, wrapped: bytes | None, sealed: str) -> str | None:
        """The clear text of a sealed value, with the talent's wrapped key as a read found
        it in the key store; None once the key is destroyed."""
        return None if wrapped is None else self._unwrap(talent_id, wrapped).open(sealed)

    def forget(self, talent_id: str) -> bool:
        """Destroy the talent's data key; False if it was already destroyed."""
        return self._keys.destroy(talent_id)

    def _new_wrapped(self, talent_id: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        secret = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        return nonce + self._master.encrypt(nonce, secret, self._wrap_aad(talent_id))

    def _unwrap(self, talent_id: str, wrapped: bytes) -> DataKey:
        secret = self._master.decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], self._wrap_aad(talent_id)
        )
        return DataKey(talent_id, secret)

    @staticmethod
    def _wrap_aad(talent_id: str) -> bytes:
        return b"talent-key:" + talent_id.encode()
