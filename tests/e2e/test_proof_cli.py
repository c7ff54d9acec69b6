"""Proof outside the server, as an auditor runs it (CONTRACT §12, docs/auditing.md):
`ledger audit public-key`, `checkpoint`, `verify [--checkpoint NOTE]`, `bundle`, and
`ledger-verify` on the bundle, each a real process on the test database. The bundle
is then attacked one way at a time; each attack exits 1 naming what failed."""

from __future__ import annotations

import ast
import base64
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import ledger.verifier
from ledger.domain.context import acting_as
from ledger.entrypoints.runtime import open_ledger
from ledger.usecases.checkpoints import Signer, parse_signing_key
from ledger.usecases.ledger import Ledger
from ledger.verifier import chain_digest
from tests import commands as c
from tests.conftest import TEST_SIGNING_KEY, new_database, settings_for
from tests.e2e.conftest import ROOT, environment, run_ledger
from tests.e2e.test_audit_cli import record_some_events
from tests.tampering import delete_checkpoints, rewrite_and_rechain, tamper

pytestmark = pytest.mark.db

Cli = Callable[..., subprocess.CompletedProcess[str]]
VERIFY = str(ROOT / ".venv" / "bin" / "ledger-verify")
PUBLIC_KEY = Signer(parse_signing_key(TEST_SIGNING_KEY)).public_key_text


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def failed(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    return done.stdout + done.stderr


def run_verify(
    bundle: Path, key_file: Path, *, program: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(program or [VERIFY]), str(bundle), "--public-key", str(key_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The public key as `ledger audit public-key` prints it (it reads no database)."""
    path = tmp_path_factory.mktemp("key") / "public-key"
    env = environment("postgresql://unused@127.0.0.1:1/unused", path.parent / "var")
    path.write_text(ok(run_ledger(env, "audit", "public-key")))
    return path


def test_public_key_prints_the_signing_keys_public_half(cli: Cli) -> None:
    printed = ok(cli("audit", "public-key")).strip()
    assert printed == PUBLIC_KEY
    assert len(base64.b64decode(printed)) == 32


# --- verify against checkpoints and kept notes --------------------------------------


def test_verify_finds_a_rewritten_and_rechained_history_at_its_checkpoint(
    ledger: Ledger, cli: Cli, db_url: str
) -> None:
    record_some_events(ledger)
    note = ok(cli("audit", "checkpoint"))
    assert note.startswith("talent-ledger\n")
    assert re.search(r"intact: \d+ events.*1 signed checkpoints hold", ok(cli("audit", "verify")))

    rewrite_and_rechain(db_url, "1000", "900")

    output = failed(cli("audit", "verify"))
    assert re.search(r"checkpoint \d+: the first \d+ events no longer give", output), output


def test_a_kept_note_catches_a_rewrite_even_with_the_checkpoints_deleted(
    ledger: Ledger, cli: Cli, db_url: str, tmp_path: Path
) -> None:
    record_some_events(ledger)
    note = tmp_path / "kept.note"
    note.write_text(ok(cli("audit", "checkpoint")))
    assert "and the note given" in ok(cli("audit", "verify", "--checkpoint", str(note)))

    rewrite_and_rechain(db_url, "1000", "900")
    delete_checkpoints(db_url)

    assert ok(cli("audit", "verify")).startswith("intact"), "the owner covered the tracks"
    output = failed(cli("audit", "verify", "--checkpoint", str(note)))
    assert "the note given" in output and "rewritten" in output


def test_a_kept_note_catches_a_history_cut_short(
    ledger: Ledger, cli: Cli, db_url: str, tmp_path: Path
) -> None:
    last = record_some_events(ledger)
    note = tmp_path / "kept.note"
    note.write_text(ok(cli("audit", "checkpoint")))
    delete_checkpoints(db_url)
    tamper(db_url, "DELETE FROM ledger_events WHERE notification_id = %s", (last,))

    output = failed(cli("audit", "verify", "--checkpoint", str(note)))
    assert "cut short" in output


def test_a_note_signed_by_another_key_is_refused(ledger: Ledger, cli: Cli, tmp_path: Path) -> None:
    record_some_events(ledger)
    note = tmp_path / "forged.note"
    note.write_text(Signer(bytes(32)).note(3, bytes(32)))
    assert "no signature by this key" in failed(cli("audit", "verify", "--checkpoint", str(note)))


# --- the bundle and ledger-verify -------------------------------------------------


@pytest.fixture(scope="module")
def made_bundle(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of fund year 2024, closed, after a payment and its return and more: made
    once, on a database of its own, for the tests that read or attack copies of it."""
    path = tmp_path_factory.mktemp("bundle") / "bundle.zip"
    with new_database(server_url) as url:
        app = open_ledger(url, settings_for(url))
        try:
            record_some_events(app)
            with acting_as("treasury", "req-e"):
                app.execute(c.RecordPayment("P2", "G1", Decimal(500), date(2024, 4, 1), "BR2"))
                app.execute(c.ReturnPayment("P2", date(2024, 4, 9), "退回"))
            with acting_as("admin", "req-f"):
                app.execute(c.CloseFundYear(2024, "年终决算"))
        finally:
            app.close()
        env = environment(url, path.parent / "var")
        ok(run_ledger(env, "audit", "checkpoint"))
        out = ok(run_ledger(env, "audit", "bundle", "--fund-year", "2024", "--out", str(path)))
    assert re.search(r"wrote .* \d+ events up to checkpoint 1", out), out
    return path


@pytest.fixture
def bundle(made_bundle: Path, tmp_path: Path) -> Path:
    """This test's copy of the bundle."""
    return Path(shutil.copy(made_bundle, tmp_path / "bundle.zip"))


def test_a_bundle_holds_what_the_contract_lists(bundle: Path) -> None:
    with zipfile.ZipFile(bundle) as z:
        assert set(z.namelist()) == {
            "events.jsonl",
            "checkpoint.note",
            "public-key",
            "manifest.json",
            "fund-year.json",
        }
        first = json.loads(z.read("events.jsonl").splitlines()[0])
        assert set(first) == {
            "position",
            "originator_id",
            "originator_version",
            "topic",
            "recorded_at",
            "state",
            "hash",
        }
        assert z.read("public-key").decode().strip() == PUBLIC_KEY
        line = json.loads(z.read("fund-year.json"))["lines"][0]
        assert (line["programme"], line["net_paid"]) == ("settling_in", "1000.00")


def test_ledger_verify_accepts_an_intact_bundle_and_recomputes_the_fund_year(
    bundle: Path, key_file: Path
) -> None:
    out = ok(run_verify(bundle, key_file))
    assert re.search(r"verified: \d+ events.*fund year 2024 recomputed", out), out


def test_ledger_verify_is_one_file_that_needs_only_cryptography(
    bundle: Path, key_file: Path, tmp_path: Path
) -> None:
    source = Path(ledger.verifier.__file__)
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
        if not (isinstance(node, ast.ImportFrom) and node.level)
    }
    assert imported - set(sys.stdlib_module_names) == {"cryptography"}
    # copied alone elsewhere and run by path, with the project nowhere on its path
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(source, alone / "ledger_verify.py")
    program = [sys.executable, "-I", str(alone / "ledger_verify.py")]
    assert ok(run_verify(bundle, key_file, program=program)).startswith("verified")


def _rewritten(bundle: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    with zipfile.ZipFile(bundle) as z:
        files = {name: z.read(name) for name in z.namelist()}
    change(files)
    out = bundle.with_name("attacked.zip")
    with zipfile.ZipFile(out, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out


def _lines(files: dict[str, bytes]) -> list[bytes]:
    return files["events.jsonl"].splitlines(keepends=True)


def _edit_a_byte(files: dict[str, bytes]) -> None:
    lines = _lines(files)
    record = json.loads(lines[3])
    state = base64.b64decode(record["state"]).replace(b"3000", b"3001")
    record["state"] = base64.b64encode(state).decode()
    lines[3] = json.dumps(record).encode() + b"\n"
    files["events.jsonl"] = b"".join(lines)


def _reorder(files: dict[str, bytes]) -> None:
    lines = _lines(files)
    lines[2], lines[3] = lines[3], lines[2]
    files["events.jsonl"] = b"".join(lines)


def _drop(files: dict[str, bytes]) -> None:
    lines = _lines(files)
    del lines[2]
    files["events.jsonl"] = b"".join(lines)


def _duplicate(files: dict[str, bytes]) -> None:
    lines = _lines(files)
    lines.insert(3, lines[2])
    files["events.jsonl"] = b"".join(lines)


def _drop_the_last(files: dict[str, bytes]) -> None:
    files["events.jsonl"] = b"".join(_lines(files)[:-1])


def _rechain(files: dict[str, bytes]) -> None:
    """Change a payment and chain every event again: the chain holds, the root not."""
    prev = bytes(32)
    out = []
    for line in _lines(files):
        record = json.loads(line)
        state = base64.b64decode(record["state"])
        if record["topic"].endswith("Payment.Recorded"):
            state = state.replace(b'"_data_":"1000"', b'"_data_":"900"')
            record["state"] = base64.b64encode(state).decode()
        prev = chain_digest(
            prev,
            record["position"],
            record["originator_id"],
            record["originator_version"],
            record["topic"],
            state,
            record["recorded_at"],
        )
        record["hash"] = prev.hex()
        out.append(json.dumps(record).encode() + b"\n")
    files["events.jsonl"] = b"".join(out)
    manifest = json.loads(files["manifest.json"])
    files["manifest.json"] = json.dumps({**manifest, "head": prev.hex()}).encode()


def _figures(files: dict[str, bytes]) -> None:
    fund_year = json.loads(files["fund-year.json"])
    fund_year["lines"][0]["net_paid"] = "1500"
    files["fund-year.json"] = json.dumps(fund_year).encode()


def _no_note(files: dict[str, bytes]) -> None:
    del files["checkpoint.note"]


def _edit_json(name: str, change: Callable[[Any], Any]) -> Callable[[dict[str, bytes]], None]:
    def edited(files: dict[str, bytes]) -> None:
        files[name] = json.dumps(change(json.loads(files[name]))).encode()

    return edited


def _line_twice(fund_year: dict[str, Any]) -> dict[str, Any]:
    forged = {**fund_year["lines"][0], "net_paid": "1.00"}
    return {**fund_year, "lines": [forged, *fund_year["lines"]]}


def _totals(fund_year: dict[str, Any]) -> dict[str, Any]:
    return {**fund_year, "totals": {**fund_year["totals"], "committed": "1.00"}}


ATTACKS: dict[str, tuple[Callable[[dict[str, bytes]], None], str]] = {
    "an edited byte": (_edit_a_byte, r"FAILED chain at position 4"),
    "a reordered event": (_reorder, r"FAILED (order|chain) at position"),
    "a dropped event": (_drop, r"FAILED chain at position 4"),
    "a duplicated event": (_duplicate, r"FAILED order at position 3"),
    "the last event dropped": (_drop_the_last, r"FAILED tree size"),
    "a re-chained history": (_rechain, r"FAILED root"),
    "an edited fund-year figure": (_figures, r"FAILED fund-year.json: line settling_in: net_paid"),
    "no note": (_no_note, r"FAILED bundle"),
    "a line stated twice": (_edit_json("fund-year.json", _line_twice), r"line twice"),
    "an edited total": (_edit_json("fund-year.json", _totals), r"totals: committed"),
    "an empty fund year": (_edit_json("fund-year.json", lambda _: {}), r"FAILED fund-year"),
    "a list for a fund year": (_edit_json("fund-year.json", lambda _: []), r"FAILED fund-year"),
    "a manifest that is not one": (_edit_json("manifest.json", lambda _: [1]), r"FAILED manifest"),
    "a manifest without its year": (
        _edit_json("manifest.json", lambda m: {**m, "fund_year": None}),
        r"FAILED manifest",
    ),
    "a manifest of another root": (
        _edit_json("manifest.json", lambda m: {**m, "root": "AAAA"}),
        r"FAILED manifest",
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_ledger_verify_exits_1_naming_what_an_attack_broke(
    bundle: Path, key_file: Path, attack: str
) -> None:
    change, expected = ATTACKS[attack]
    output = failed(run_verify(_rewritten(bundle, change), key_file))
    assert re.search(expected, output), output


def test_ledger_verify_refuses_another_key_and_a_truncated_file(
    bundle: Path, key_file: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other-key"
    other.write_text(Signer(bytes(32)).public_key_text)
    assert "FAILED signature" in failed(run_verify(bundle, other))

    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    assert "FAILED bundle" in failed(run_verify(truncated, key_file))


def test_ledger_verify_exits_2_on_a_usage_error(bundle: Path, tmp_path: Path) -> None:
    bad_key = tmp_path / "bad-key"
    bad_key.write_text("not a key")
    assert run_verify(bundle, bad_key).returncode == 2
    missing = subprocess.run([VERIFY, str(bundle)], capture_output=True, check=False)
    assert missing.returncode == 2
