# Every target installs what it needs: on a fresh machine `make run` and `make test` just work.
# Dependencies come only from the locks (exact versions, sha256-checked wheels):
# requirements.lock is what a deployment installs, requirements-dev.lock (the same pins,
# plus the embedded PostgreSQL and the tools) what .venv gets; see docs/supply-chain.md.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME_LOCK := requirements.lock
LOCK := requirements-dev.lock
# The tool that writes the lock; `make lock LOCK_ARGS=--upgrade` moves every pin forward,
# `LOCK_ARGS='--upgrade-package NAME'` one package.
PIP_TOOLS := pip-tools==7.6.2
LOCK_ARGS ?=
# e.g. AUDIT_ARGS='-s osv' to ask OSV instead of PyPI's JSON API
AUDIT_ARGS ?=
# Lock against pip's default index (PyPI) alone: no machine-local pip config, find-links or
# mirrors are used or recorded.
LOCK_ENV := env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
	PIP_CONFIG_FILE=/dev/null

.PHONY: install browser run test lint bench profile audit docs examples screenshots lock clean

# Installs exactly the lock: --require-hashes refuses any file whose sha256 is not in it and
# any package it does not pin; --only-binary runs no one's setup.py; --no-deps resolves
# nothing (the lock names every package; pip check below proves it whole): pip 23.2's
# resolver otherwise fetched a newer release for a dependency asking for an extra
# (pip-audit's `CacheControl[filecache]`) and refused it, unpinned. The project itself is
# then installed with nothing resolved or fetched. Anything an older install left in .venv
# that the lock no longer names is removed.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps --only-binary :all: -r $(LOCK)
	$(BIN)/python -m pip freeze --all --exclude-editable | sed -E 's/[ =@].*//' \
		| tr 'A-Z_.' 'a-z--' | sort > $(VENV)/.present
	sed -nE 's/^([A-Za-z0-9_.-]+)==.*/\1/p' $(LOCK) | tr 'A-Z_.' 'a-z--' | sort > $(VENV)/.locked
	comm -23 $(VENV)/.present $(VENV)/.locked | xargs -r $(BIN)/python -m pip uninstall --quiet -y
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --no-index -e .
	$(BIN)/python -m pip check
	rm -f $(VENV)/.present $(VENV)/.locked
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/ledger serve --demo

# The console's browser test drives Debian's Chromium, with a font that has Chinese glyphs
# (Playwright's own browser download cannot work here): installed once if missing.
CHROMIUM := /usr/lib/chromium/chromium
CHINESE_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
BROWSER_PACKAGES := chromium fonts-wqy-microhei

browser:
	@if [ ! -x $(CHROMIUM) ] || [ ! -f $(CHINESE_FONT) ]; then \
		apt-get install -y --no-install-recommends $(BROWSER_PACKAGES) >/dev/null \
		|| { apt-get update >/dev/null \
		     && apt-get install -y --no-install-recommends $(BROWSER_PACKAGES) >/dev/null; }; \
	fi

# Two processes (pytest-xdist), a file's tests in one of them: the suite waits on
# PostgreSQL and on servers it starts as much as it computes, and CI has 2 cores.
TEST_WORKERS ?= 2

test: install browser
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench

# W1 as it comes, with each process's CPU a proposal (docs/performance.md).
profile: install
	$(BIN)/python -m bench.profile

# The reference parts of docs/api.md and docs/cli.md, from the OpenAPI document and
# the command's parser (a test fails when they lag the code).
docs: install
	$(BIN)/python -m api.reference

# The API's examples (api/examples.json), recorded from the story of tests/story.py told to
# a fresh database (as `make test` would: LEDGER_TEST_DATABASE_URL, else embedded).
examples: install
	LEDGER_RECORD_EXAMPLES=1 $(BIN)/python -m pytest -q tests/integration/test_examples.py

# The console's screenshots in docs/console/, a page per language, taken by its browser
# test.
screenshots: install browser
	LEDGER_RECORD_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/e2e/test_console_browser.py

# Known vulnerabilities in the locked versions (PyPI's advisory data); fails on any finding,
# and --strict also fails when a package could not be checked at all. .ci/run points it at
# a local advisory database (tests/advisories).
AUDITED ?= $(RUNTIME_LOCK) $(LOCK)
audit: install
	$(BIN)/pip-audit --strict --disable-pip --require-hashes $(addprefix -r ,$(AUDITED)) \
		--progress-spinner off $(AUDIT_ARGS)

# Rewrites both locks from pyproject.toml, keeping existing pins unless LOCK_ARGS says
# otherwise: requirements.lock the runtime dependencies and the build requirement, then
# requirements-dev.lock those same pins (a constraint) plus the embedded and dev extras.
# Needs PyPI.
COMPILE := --quiet --generate-hashes --all-build-deps --allow-unsafe --strip-extras \
	--no-emit-index-url $(LOCK_ARGS)
lock:
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(LOCK_ENV) $(PYTHON) -m venv "$$tmp" && \
	$(LOCK_ENV) "$$tmp/bin/python" -m pip install --quiet '$(PIP_TOOLS)' && \
	$(LOCK_ENV) "$$tmp/bin/pip-compile" $(COMPILE) --output-file $(RUNTIME_LOCK) pyproject.toml && \
	$(LOCK_ENV) "$$tmp/bin/pip-compile" $(COMPILE) --extra embedded --extra dev \
		--constraint $(RUNTIME_LOCK) --output-file $(LOCK) pyproject.toml

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
