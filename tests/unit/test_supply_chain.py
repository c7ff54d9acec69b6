"""The supply chain (issue 6): every locked package is pinned and hashed, and `make audit`
fails on a known vulnerability. The advisories come from a local stand-in for OSV, so
the test needs no network and can make one up."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
ADVISORY = "FAKE-2026-0001"


def locked() -> dict[str, tuple[str, list[str]]]:
    """Each locked package: its version and its hashes."""
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text())
    packages = {}
    for entry in entries:
        pin = re.match(r"([A-Za-z0-9_.-]+)==([^ \\\n]+)", entry)
        if pin:
            packages[pin[1].lower()] = (pin[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
    return packages


def test_every_locked_package_is_pinned_with_hashes() -> None:
    packages = locked()
    for name in ("fastapi", "eventsourcing", "psycopg", "cryptography", "pip-audit", "setuptools"):
        assert name in packages, name
    assert all(hashes for _, hashes in packages.values()), "a pin without a hash"
    requirements = [line for line in LOCK.read_text().splitlines() if line and line[0].isalnum()]
    assert len(requirements) == len(packages), "every requirement is an exact pin"


class FakeOsv(BaseHTTPRequestHandler):
    vulnerable: str | None = None  # the one package the advisory names

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name = query["package"]["name"]
        body: dict[str, Any] = {}
        if name == self.vulnerable:
            body = {
                "vulns": [
                    {
                        "id": ADVISORY,
                        "summary": "made up for the test",
                        "affected": [
                            {
                                "package": {"name": name, "ecosystem": "PyPI"},
                                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
                            }
                        ],
                    }
                ]
            }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def osv() -> Iterator[tuple[str, type[FakeOsv]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOsv)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/query", FakeOsv
    finally:
        server.shutdown()
        server.server_close()
        FakeOsv.vulnerable = None


def make_audit(url: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "audit",
            f"AUDIT_ARGS=-s osv --osv-url {url} --cache-dir {cache}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_make_audit_fails_on_a_known_vulnerability_and_passes_without(
    osv: tuple[str, type[FakeOsv]], tmp_path: Path
) -> None:
    url, handler = osv
    clean = make_audit(url, tmp_path / "clean")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "No known vulnerabilities found" in clean.stdout + clean.stderr

    handler.vulnerable = "cryptography"
    found = make_audit(url, tmp_path / "found")
    assert found.returncode != 0
    assert ADVISORY in found.stdout
    assert f"cryptography {locked()['cryptography'][0]}" in found.stdout


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
