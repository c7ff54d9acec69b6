"""The `ledger` command's options: each says what it does and its default, and the
person an action is recorded under is never defaulted."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from ledger.entrypoints.cli import parser


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
        ["talents", "forget", "T1", "--yes"],
        ["reconcile", "statement.csv"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_an_action_recorded_under_a_person_s_name_needs_actor(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(args)
    assert exit_.value.code == 2
    assert "--actor" in capsys.readouterr().err
    assert parser().parse_args([*args, "--actor", "zhou"]).actor == "zhou"
