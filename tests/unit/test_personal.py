"""Sealing and erasing personal data (`ledger.usecases.personal`), and where the master
key comes from."""

from __future__ import annotations

import stat
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import given
from hypothesis import strategies as st

from ledger.entrypoints.runtime import ConfigurationError, Settings, master_key, signing_key
from ledger.usecases.personal import (
    SEALED_PREFIX,
    DataKey,
    MasterKeyMismatch,
    PersonalDataErased,
    Vault,
    new_master_key,
    parse_master_key,
)


class MemoryKeyStore:
    """The key table's contract, in memory: what `PostgresKeyStore` does with SQL."""

    def __init__(self) -> None:
        self.rows: dict[str, bytes | None] = {}

    def get_or_add(self, wrapped: Mapping[str, bytes]) -> dict[str, bytes | None]:
        return {t: self.rows.setdefault(t, w) for t, w in wrapped.items()}

    def find(self, talent_id: str) -> bytes | None:
        return self.rows.get(talent_id)

    def destroy(self, talent_id: str) -> bool:
        had = self.rows.get(talent_id) is not None
        if talent_id in self.rows:
            self.rows[talent_id] = None
        return had


@pytest.fixture
def vault() -> Vault:
    return Vault(parse_master_key(new_master_key()), MemoryKeyStore())


@given(st.text(max_size=200))
def test_a_sealed_name_opens_to_itself_and_shows_nothing_of_it(text: str) -> None:
    key = Vault(parse_master_key(new_master_key()), MemoryKeyStore()).key_for_new("T-1")
    sealed = key.seal(text)
    assert sealed.startswith(SEALED_PREFIX)
    assert key.open(sealed) == text
    if len(text) >= 4:
        assert text not in sealed.removeprefix(SEALED_PREFIX)


def test_sealing_twice_gives_different_texts(vault: Vault) -> None:
    """A random nonce per seal: equal names cannot be spotted by equal ciphertexts."""
    key = vault.key_for_new("T-1")
    assert key.seal("张伟") != key.seal("张伟")


def test_a_sealed_name_is_bound_to_its_talent(vault: Vault) -> None:
    key = vault.key_for_new("T-1")
    moved = DataKey("T-2", key.secret)
    with pytest.raises(InvalidTag):
        moved.open(key.seal("张伟"))


def test_a_talent_keeps_one_key_and_talents_do_not_share_one(vault: Vault) -> None:
    first = vault.key_for_new("T-1")
    assert vault.key_for_new("T-1").secret == first.secret
    assert vault.key_for_new("T-2").secret != first.secret
    assert vault.key_for_new("T-1").digest("张伟") == first.digest("张伟")
    assert vault.key_for_new("T-2").digest("张伟") != first.digest("张伟")


def test_forgetting_a_talent_leaves_its_name_unreadable_for_good(vault: Vault) -> None:
    sealed = vault.key_for_new("T-1").seal("张伟")
    other = vault.key_for_new("T-2").seal("李娜")
    assert vault.open("T-1", vault.wrapped_key("T-1"), sealed) == "张伟"
    assert vault.forget("T-1") is True
    assert vault.open("T-1", vault.wrapped_key("T-1"), sealed) is None
    assert vault.forget("T-1") is False
    with pytest.raises(PersonalDataErased):
        vault.key_for_new("T-1")
    assert vault.open("T-2", vault.wrapped_key("T-2"), other) == "李娜"


def test_another_master_key_is_refused_rather_than_read_as_erased() -> None:
    keys = MemoryKeyStore()
    Vault(parse_master_key(new_master_key()), keys)
    with pytest.raises(MasterKeyMismatch):
        Vault(parse_master_key(new_master_key()), keys)


# a fixed key, not a new one: the parameters name the tests, the same in every process
@pytest.mark.parametrize(
    "text", ["not base64!", "c2hvcnQ=", "TzNJjxulaUTDB+WekzIZ2SwHKn5AZPQUP7sNRwD1tmg=AAAA"]
)
def test_a_malformed_master_key_is_refused(text: str) -> None:
    with pytest.raises(ConfigurationError, match="LEDGER_MASTER_KEY"):
        master_key(Settings(database_url=None, data_dir=Path("unused"), master_key=text))


def test_an_external_database_needs_its_keys_configured(tmp_path: Path) -> None:
    """A key made up in a host's working directory would be lost with it (and with it
    every sealed name, or the checkpoints' signer): refused, and nothing written."""
    settings = Settings(database_url="postgresql://db.example/ledger", data_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="LEDGER_MASTER_KEY is not set"):
        master_key(settings)
    with pytest.raises(ConfigurationError, match="LEDGER_SIGNING_KEY is not set"):
        signing_key(settings)
    assert list(tmp_path.iterdir()) == []
    configured = Settings(
        database_url="postgresql://db.example/ledger",
        data_dir=tmp_path,
        master_key=new_master_key(),
    )
    assert len(master_key(configured)) == 32


def test_the_embedded_default_keeps_one_generated_key_readable_by_its_owner_only(
    tmp_path: Path,
) -> None:
    settings = Settings(database_url=None, data_dir=tmp_path / "var")
    first = master_key(settings)
    assert len(first) == 32
    assert master_key(settings) == first
    mode = (tmp_path / "var" / "master.key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_processes_starting_together_keep_one_generated_key(tmp_path: Path) -> None:
    settings = Settings(database_url=None, data_dir=tmp_path / "var")
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: master_key(settings), range(32)))
    assert len(keys) == 1
    assert [p.name for p in (tmp_path / "var").iterdir()] == ["master.key"]
