"""`ledger reconcile FILE`, run as a real process on a real database: it prints the
count per bucket (and, on a terminal, a progress bar on stderr), records the import
once, and refuses a bad file naming its line."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from ledger.adapters.postgres import datastore_of
from ledger.domain.context import acting_as
from ledger.domain.reconciliation import BUCKETS, Reconciliation
from ledger.usecases.ledger import Ledger
from projections.reads import history
from projections.worker import ProjectionWorker
from tests import commands as c
from tests.bank_statements import Entry, camt053
from tests.e2e.conftest import run_on_terminal

Cli = Callable[..., subprocess.CompletedProcess[str]]
Counter = Callable[[], int]
HEAD = "value_date,bank_reference,amount,direction,counterparty\n"
STATEMENT = (
    HEAD
    + "2024-03-02,BR-1,10000.00,debit,张伟\n"  # P-1, a day later: matched
    + "2024-03-04,BR-X,99.00,credit,某公司\n"  # no such reference
)
COUNTS = re.compile(
    r"^(R-[0-9a-f]+): matched (\d+), amount_mismatch (\d+), date_mismatch (\d+), "
    r"unknown_in_ledger (\d+), missing_in_bank (\d+)( \(already imported\))?$"
)


@pytest.fixture
def paid(ledger: Ledger) -> Ledger:
    """Fund year 2024; G-1 approved for T-1 and paid by P-1 (BR-1, 2024-03-01) and P-2
    (BR-2, 2024-03-03), which the statement does not show."""
    with acting_as("setup-admin", "e2e-setup"):
        ledger.execute(c.OpenFundYear(2024, "CNY"))
        ledger.execute(
            c.Appropriate(
                2024, "AP-1", "settling_in", "cash", Decimal("100000"), "财预〔2024〕12号"
            )
        )
    with acting_as("setup-clerk", "e2e-setup"):
        ledger.execute(
            c.RegisterTalent(
                "T-1", "张伟", "doctorate", "市第一人民医院", date(2023, 6, 1), date(2028, 5, 31)
            )
        )
        ledger.execute(
            c.ProposeGrant("G-1", "T-1", 2024, "settling_in", Decimal("30000"), "第5条", "安家补贴")
        )
    with acting_as("setup-approver", "e2e-setup"):
        ledger.execute(c.ApproveGrant("G-1", None))
    with acting_as("setup-treasury", "e2e-setup"):
        for payment_id, amount, day, ref in [
            ("P-1", "10000", date(2024, 3, 1), "BR-1"),
            ("P-2", "500", date(2024, 3, 3), "BR-2"),
        ]:
            ledger.execute(c.RecordPayment(payment_id, "G-1", Decimal(amount), day, ref))
    return ledger


def counts(done: subprocess.CompletedProcess[str]) -> tuple[str, list[int], bool]:
    """The reconciliation id, the count per bucket and whether it was already imported."""
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr
    found = COUNTS.fullmatch(lines[-1])
    assert found, done.stdout
    return found[1], [int(n) for n in found.groups()[1:6]], found[7] is not None


def test_reconcile_prints_the_counts_per_bucket_and_records_the_import_once(
    cli: Cli, paid: Ledger, count_events: Counter, tmp_path: Path
) -> None:
    statement = tmp_path / "statement.csv"
    statement.write_text(STATEMENT, encoding="utf-8")
    out = tmp_path / "report.json"
    events = count_events()

    done = cli("reconcile", "--actor", "treasurer-li", str(statement), "--out", str(out))

    assert done.returncode == 0, done.stderr
    rid, per_bucket, replayed = counts(done)
    assert per_bucket == [1, 0, 0, 1, 1]
    assert not replayed
    assert "reading" not in done.stderr  # no terminal, no progress bar
    assert count_events() == events + 1
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["reconciliation_id"] == rid
    assert [e["bank_reference"] for e in report["matched"]] == ["BR-1"]
    assert [e["bank_reference"] for e in report["unknown_in_ledger"]] == ["BR-X"]
    assert [e["bank_reference"] for e in report["missing_in_bank"]] == ["BR-2"]
    assert paid.load(Reconciliation, rid, "reconciliation").report == report
    ProjectionWorker(paid).catch_up()
    trail, _ = history(datastore_of(paid), limit=1000)
    [imported] = [e for e in trail if e["event_type"] == "Reconciliation.Imported"]
    assert imported["actor"] == "treasurer-li"
    assert imported["reference"] == hashlib.sha256(STATEMENT.encode()).hexdigest()

    again = cli("reconcile", "--actor", "treasurer-li", str(statement))

    assert again.returncode == 0, again.stderr
    assert counts(again) == (rid, per_bucket, True)
    assert "already imported" in again.stdout
    assert count_events() == events + 1


def test_reconcile_shows_its_progress_through_a_long_statement_on_a_terminal(
    cli: Cli, paid: Ledger, tmp_path: Path, ledger_env: dict[str, str]
) -> None:
    statement = tmp_path / "long.csv"
    filler = "".join(f"2024-03-05,BX-{n},1.00,debit,x\n" for n in range(2500))
    statement.write_text(STATEMENT + filler, encoding="utf-8")

    status, out, shown = run_on_terminal(
        ledger_env, "reconcile", "--actor", "treasurer-li", str(statement)
    )

    assert status == 0, shown
    assert re.search(r"reading \[#{30}\] 2,503/2,503 lines", shown), shown
    assert COUNTS.fullmatch(out.strip().splitlines()[-1]), out
    again = cli("reconcile", "--actor", "treasurer-li", str(statement), "--json")
    assert "reading" not in again.stderr  # no terminal: no bar
    report = json.loads(again.stdout)
    assert report["replayed"] is True
    assert [len(report[b]) for b in BUCKETS] == [1, 0, 0, 2501, 1]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (STATEMENT + "2024-03-05,BR-3,1e3,debit,x\n", 4),
        (HEAD + "2024-02-30,BR-3,1.00,debit,x\n", 2),
        ("date,ref,amount\n" + STATEMENT, 1),
    ],
    ids=["bad amount", "bad date", "bad header"],
)
def test_reconcile_refuses_a_bad_file_naming_the_line_and_records_nothing(
    cli: Cli, paid: Ledger, count_events: Counter, tmp_path: Path, text: str, line: int
) -> None:
    statement = tmp_path / "bad.csv"
    statement.write_text(text, encoding="utf-8")
    events = count_events()

    done = cli("reconcile", "--actor", "treasurer-li", str(statement))

    assert done.returncode != 0
    assert f"line {line}" in done.stderr, done.stderr
    assert count_events() == events


def test_a_chinese_bank_export_is_reconciled_with_its_profile(
    paid: Ledger, cli: Cli, tmp_path: Path
) -> None:
    export = (
        "账号,6222020200001111222\n"
        "交易日期,借方发生额,贷方发生额,对方户名,交易流水号\n"
        '20240302,"10,000.00",,张伟,BR-1\n'
        "合计,10000.00,,,\n"
    )
    path = tmp_path / "statement.csv"
    path.write_bytes(export.encode("gbk"))
    done = cli("reconcile", "--actor", "treasurer-li", str(path), "--profile", "cn-bank")
    assert done.returncode == 0, done.stderr
    found = COUNTS.match(done.stdout.strip().splitlines()[-1])
    assert found is not None, done.stdout
    assert (found.group(2), found.group(5)) == ("1", "0")


def test_a_camt053_statement_is_reconciled_with_its_profile_and_an_unbalanced_one_refused(
    paid: Ledger, cli: Cli, count_events: Counter, tmp_path: Path
) -> None:
    entries = [  # as STATEMENT says it
        Entry("2024-03-02", "BR-1", "10000.00", "debit"),
        Entry("2024-03-04", "BR-X", "99.00", "credit", "某公司"),
    ]
    path = tmp_path / "statement.xml"
    path.write_bytes(camt053(entries, opening="50000.00"))
    out = tmp_path / "report.json"

    done = cli(
        "reconcile",
        "--actor",
        "treasurer-li",
        str(path),
        "--profile",
        "camt.053",
        "--out",
        str(out),
    )

    assert done.returncode == 0, done.stderr
    assert counts(done)[1] == [1, 0, 0, 1, 1]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["balances"]["closing"] == "40099.00"
    assert report["matched"][0]["element"] == "Stmt/Ntry[1]/NtryDtls[1]/TxDtls[1]"
    events = count_events()
    path.write_bytes(camt053(entries, opening="50000.00", closing="40099.01"))

    refused = cli("reconcile", "--actor", "treasurer-li", str(path), "--profile", "camt.053")

    assert refused.returncode == 2
    assert "Stmt/Bal[2]: the opening balance 50000.00" in refused.stderr, refused.stderr
    assert count_events() == events
