"""A local stand-in for OSV's query API (`POST /v1/query`) over a fixed advisory
database, `osv.json`: records in the OSV schema, copied from advisories that were
published for real. `make audit` asks it in `.ci/run` (and its test), so the audit
runs, and fails on a known-vulnerable pin, with no network: what OSV knows changes
every day, and a build that a new advisory can break belongs in a scheduled job
asking OSV itself (`make audit AUDIT_ARGS='-s osv'`), not in CI.

    .venv/bin/python -m tests.advisories [--port N]   # prints its query URL, then serves
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import Version

DATABASE = Path(__file__).with_name("osv.json")


def affects(record: dict[str, Any], name: str, version: Version) -> bool:
    """Whether the advisory names this package at this version: in a `versions` list,
    or inside an ECOSYSTEM range (introduced, up to but not including fixed)."""
    for affected in record["affected"]:
        package = affected["package"]
        if package["ecosystem"] != "PyPI" or canonicalize_name(package["name"]) != name:
            continue
        if str(version) in affected.get("versions", []):
            return True
        for span in affected.get("ranges", []):
            if span["type"] != "ECOSYSTEM":
                continue
            inside = False
            for event in span["events"]:
                if "introduced" in event and version >= Version(event["introduced"]):
                    inside = True
                if "fixed" in event and version >= Version(event["fixed"]):
                    inside = False
            if inside:
                return True
    return False


class Query(BaseHTTPRequestHandler):
    records: list[dict[str, Any]] = json.loads(DATABASE.read_text())

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name = canonicalize_name(query["package"]["name"])
        version = Version(query["version"])
        vulns = [r for r in self.records if affects(r, name, version)]
        data = json.dumps({"vulns": vulns} if vulns else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


def server(port: int = 0) -> ThreadingHTTPServer:
    return ThreadingHTTPServer(("127.0.0.1", port), Query)


def url(running: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{running.server_address[1]}/v1/query"
