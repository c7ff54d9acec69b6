"""A write operation, declared once in its resource's module (`api.resources`): its
name (the `op` of `/v1/batch`), its path, its use case's command, and what it
answers. The rest comes from the use case (`ledger.usecases`): the role that may
call it, the refusals it can answer, and the fields of its body, which are the
command's less the ids in the path. From each declaration come its route
(`api.writes`), its batch operation (`api.batch`) and the problems it documents."""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import Enum
from functools import cached_property
from types import NoneType, UnionType
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    TypeAdapter,
    create_model,
)
from pydantic.config import JsonDict

from api import schemas as s
from ledger.domain.values import NOT_BLANK, IntRange, MaxItems, TextFormat
from ledger.engine.outcome import Outcome
from ledger.usecases.ledger import Ledger, use_cases
from ledger.usecases.registry import UseCase

Ids = dict[str, Any]


def _constrained(base: Any, metadata: tuple[Any, ...]) -> Any:
    """A field annotated with its form in the domain (`ledger.domain.values`)."""
    for meta in metadata:
        if isinstance(meta, TextFormat):
            constraints = StringConstraints(
                strict=True,
                strip_whitespace=meta.strip or None,
                min_length=meta.min_length,
                max_length=meta.max_length,
                pattern=meta.pattern,
            )
            if not meta.strip:
                return Annotated[str, constraints]
            # the schema says what the stripping means: something besides blanks
            not_blank: JsonDict = {"allOf": [{"pattern": NOT_BLANK}]}
            return Annotated[str, constraints, Field(json_schema_extra=not_blank)]
        if isinstance(meta, MaxItems):
            return Annotated[_wire(base), Field(max_length=meta.count)]
        if isinstance(meta, IntRange):
            return Annotated[
                int, Field(strict=True, ge=meta.first, le=meta.last), BeforeValidator(s.whole)
            ]
    return _wire(base)


# amounts and dates as the wire writes them; the other plain types pass as they are
_WIRE_FORMS: dict[Any, Any] = {Decimal: s.MoneyIn, date: s.Day}


def _wire(hint: Any) -> Any:
    """The request-body type of a command field's type."""
    if typing.get_origin(hint) is Annotated:
        base, *metadata = typing.get_args(hint)
        return _constrained(base, tuple(metadata))
    if typing.get_origin(hint) is tuple:  # tuple[X, ...]: a JSON array of X
        return tuple[_wire(typing.get_args(hint)[0]), ...]  # type: ignore[misc]
    if typing.get_origin(hint) in (typing.Union, UnionType):
        return typing.Union[tuple(_wire(a) for a in typing.get_args(hint))]  # noqa: UP007
    if hint in _WIRE_FORMS:
        return _WIRE_FORMS[hint]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        # a value made of fields (an instalment plan): an object, read into the value
        return Annotated[body_model(hint, ()), AfterValidator(lambda m: hint(**vars(m)))]
    if (
        hint is NoneType
        or typing.get_origin(hint) is typing.Literal
        or (isinstance(hint, type) and issubclass(hint, Enum))
    ):
        return hint
    raise TypeError(f"a command field of type {hint!r} has no wire form")


def body_model(command: type, ids: tuple[str, ...]) -> type[s.Body]:
    """The request body of `command`: its fields less `ids`, each in its wire form."""
    hints = typing.get_type_hints(command, include_extras=True)
    fields: dict[str, Any] = {
        f.name: (_wire(hints[f.name]), ... if f.default is dataclasses.MISSING else f.default)
        for f in dataclasses.fields(command)
        if f.name not in ids
    }
    return create_model(f"{command.__name__}In", __base__=s.Body, **fields)


def as_decided(ledger: Ledger, value: Any, ids: Ids) -> Any:
    """The answer is the use case's value as it is."""
    return value


@dataclass(frozen=True)
class Operation:
    name: str
    path: str  # under /v1; `{...}` are the ids a batch operation carries in its body
    command: type
    out: type[BaseModel]
    created: bool
    # the answer from the use case's value, after the decision
    present: Callable[[Ledger, Any, Ids], Any] = as_decided
    # whether `present` queries the database (a talent's name is unsealed), and so
    # must not run in the event loop
    present_queries: bool = False
    # what the API documents: a line, then what a caller needs to know
    summary: str = field(default="", kw_only=True)
    description: str = field(default="", kw_only=True)
    # the operationId that reads what it wrote, and the id it takes
    reads: tuple[str, str] = field(kw_only=True)

    @cached_property
    def use_case(self) -> UseCase[Any, Any]:
        return use_cases()[self.command]

    @property
    def role(self) -> str:
        return self.use_case.role

    @cached_property
    def ids(self) -> tuple[str, ...]:
        return tuple(re.findall(r"{(\w+)}", self.path))

    @cached_property
    def body(self) -> type[s.Body]:
        return body_model(self.command, self.ids)

    @cached_property
    def id_types(self) -> dict[str, TypeAdapter[Any]]:
        """The path's ids in their wire types, as a batch operation's body carries them."""
        hints = typing.get_type_hints(self.command, include_extras=True)
        return {name: TypeAdapter(_wire(hints[name])) for name in self.ids}

    @property
    def body_optional(self) -> bool:
        """Whether the body may be left out: none of its fields is required."""
        return not any(f.is_required() for f in self.body.model_fields.values())

    @property
    def refusals(self) -> tuple[str, ...]:
        """The codes its use case can refuse with, besides the ones every write can."""
        return tuple(error.code for error in self.use_case.refuses)

    def command_of(self, ids: Ids, body: s.Body) -> object:
        # a body's fields without pydantic's iterator (no extras: bodies forbid them)
        return self.command(**ids, **vars(body))


def presented(ledger: Ledger, op: Operation, ids: Ids, outcome: Outcome[Any]) -> Outcome[Any]:
    """The outcome with its value as the answer shows it."""
    return dataclasses.replace(outcome, value=op.present(ledger, outcome.value, ids))


def written_headers(outcome: Outcome[Any]) -> dict[str, str]:
    """What every write answers besides its body: the position to read after, and
    whether it was a replay."""
    headers = {"Ledger-Position": str(outcome.position)}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return headers


def answer(op: Operation, outcome: Outcome[Any]) -> tuple[int, dict[str, str], BaseModel]:
    """Status, headers and body of a presented outcome: 201 for a new resource, 200 for
    an action or a replay, always with the position to read after."""
    headers = written_headers(outcome)
    status = 201 if op.created and not outcome.replayed else 200
    return status, headers, op.out.model_validate(outcome.value)


def answer_json(op: Operation, outcome: Outcome[Any]) -> tuple[int, dict[str, str], bytes]:
    """`answer` with its body as the JSON sent, written by pydantic at once (not made a
    dict, to be written again by the response)."""
    status, headers, body = answer(op, outcome)
    return status, headers, body.model_dump_json().encode()
