"""The ids `RequestContext` gives a request that sent none (or an invalid one): 32 hex
digits, never the same twice in a process nor across processes, and made without
reading the system's randomness each time (docs/performance.md, "stop 32")."""

from __future__ import annotations

import os
import re
import secrets
from typing import NoReturn

import pytest

from api.app import _RequestIds


def _no_randomness(*_: object) -> NoReturn:
    raise AssertionError("read the system's randomness for a request")


def test_new_ids_are_unique_and_read_no_randomness(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _RequestIds()
    monkeypatch.setattr(secrets, "token_hex", _no_randomness)
    monkeypatch.setattr(os, "urandom", _no_randomness)
    made = [ids() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(re.fullmatch(r"[0-9a-f]{32}", made_id) for made_id in made)


def test_each_process_makes_ids_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _RequestIds()
    mine = ids()
    assert _RequestIds()()[:16] != mine[:16]  # another process's
    monkeypatch.setattr(os, "getpid", lambda: -1)  # a child forked from this one
    assert ids()[:16] != mine[:16]
