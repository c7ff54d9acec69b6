"""The `ledger` command's options: each says what it does and its default, and an
action is recorded under the person who ran it."""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Iterator

import pytest

from ledger.entrypoints.cli import parser
from ledger.entrypoints.output import actor


def _commands(top: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield top
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                yield from _commands(sub)


COMMANDS = sorted(_commands(parser()), key=lambda p: p.prog)


@pytest.mark.parametrize("command", COMMANDS, ids=[p.prog for p in COMMANDS])
def test_every_option_says_what_it_does_and_its_default(command: argparse.ArgumentParser) -> None:
    text = " ".join(command.format_help().split())
    for action in command._actions:
        if isinstance(action, argparse._SubParsersAction) or action.dest == "help":
            continue
        assert action.help, f"{command.prog} {action.option_strings or action.dest}: no help"
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in text, (command.prog, action.dest)


@pytest.mark.parametrize(
    "args",
    [
        ["keys", "create", "--name", "wu", "--role", "clerk"],
        ["keys", "revoke", "wu"],
        ["talents", "forget", "T1"],
        ["reconcile", "statement.csv"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_an_action_is_recorded_under_the_person_who_ran_it(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--actor`, else the account `sudo` ran from, else the login name: never a name
    made up for the command (CONTRACT §8 gives these commands without `--actor`)."""
    assert actor(parser().parse_args([*args, "--actor", "zhou"])) == "zhou"
    monkeypatch.setenv("SUDO_USER", "li")
    assert actor(parser().parse_args(args)) == "li"
    monkeypatch.delenv("SUDO_USER")
    monkeypatch.setattr(getpass, "getuser", lambda: "wang")
    assert actor(parser().parse_args(args)) == "wang"
