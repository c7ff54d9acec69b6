"""`python -m tests.advisories [--port N]`: print the query URL, then serve."""

from __future__ import annotations

import argparse

from tests.advisories import server, url

parser = argparse.ArgumentParser(description="a local OSV query API over tests/advisories")
parser.add_argument("--port", type=int, default=0, help="default: any free port")
running = server(parser.parse_args().port)
print(url(running), flush=True)
running.serve_forever()
