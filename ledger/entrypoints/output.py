"""What a `ledger` command tells its user: a line for people or, with `--json`, one
JSON object for scripts; progress bars only where a person watches (a terminal, and
not `--json`); a confirmation before what cannot be undone.

Help text: every option says what it does, and its default when it has one (`Help`).
The bar is a dozen lines written here: the libraries that draw one (tqdm, rich) would
be a runtime dependency for a line on stderr.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ledger.usecases.progress import Progress

BAR_WIDTH = 30
REDRAW_SECONDS = 0.1


class Help(argparse.HelpFormatter):
    """argparse's help, each option's default appended when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            default not in (None, False, argparse.SUPPRESS)
            and action.option_strings
            and "%(default)" not in text
        ):
            text += " (default: %(default)s)"
        return text


def with_help_defaults(parser: argparse.ArgumentParser) -> None:
    """`Help` for `parser` and every subcommand's parser under it."""
    parser.formatter_class = Help
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                with_help_defaults(sub)


def reporting(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give a command that reports `--json`."""
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of lines for people"
    )
    return parser


def report(args: argparse.Namespace, text: str, data: dict[str, Any]) -> None:
    """A command's result: `text` for people, or `data` as JSON with `--json`."""
    if getattr(args, "json", False):
        print(json.dumps(data, ensure_ascii=False, default=str))
    else:
        print(text)


def acting(parser: argparse.ArgumentParser, what: str) -> None:
    """`--actor`: the person an action is recorded under (`actor`)."""
    parser.add_argument(
        "--actor",
        metavar="WHO",
        help=f"who {what}: recorded under this name (default: the login name of whoever "
        "runs the command, never a made-up one)",
    )


def actor(args: argparse.Namespace) -> str:
    """`--actor`, else the person at the keyboard: the account `sudo` was run from, else
    the login name. CONTRACT §8 and §13 give `keys create`, `keys revoke` and `talents
    forget` without `--actor`, so it cannot be required (docs/cli.md)."""
    given: str | None = args.actor
    return given or os.environ.get("SUDO_USER") or getpass.getuser()


def confirmable(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true", help="do it without asking first")


class NotConfirmed(Exception):
    """The user said no, or could not be asked."""


def confirm(args: argparse.Namespace, question: str) -> None:
    """At a terminal, go on only with `--yes` or a "yes" typed; else `NotConfirmed`.
    Without a terminal the command is a script's, which CONTRACT §8 and §13 give
    without a question: it goes on."""
    if args.yes or not sys.stdin.isatty():
        return
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise NotConfirmed("not confirmed: nothing was done")


class _Bar:
    """A bar redrawn in place at most every REDRAW_SECONDS, and once more at the end."""

    def __init__(self, label: str, unit: str) -> None:
        self.label, self.unit = label, unit
        self.done = self.total = 0
        self.drawn = 0.0

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if time.monotonic() - self.drawn >= REDRAW_SECONDS:
            self.draw()

    def draw(self) -> None:
        self.drawn = time.monotonic()
        filled = BAR_WIDTH * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        line = f"\r{self.label} [{bar}] {self.done:,}/{self.total:,} {self.unit}"
        print(line, end="", file=sys.stderr, flush=True)


@contextmanager
def progress(args: argparse.Namespace, label: str, unit: str) -> Iterator[Progress]:
    """A bar on stderr while the block runs, when a person watches; else nothing."""
    if getattr(args, "json", False) or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    bar = _Bar(label, unit)
    try:
        yield bar
    finally:
        if bar.total:
            bar.draw()
            print(file=sys.stderr)
