"""Who is acting, and for which request: carried by context, stamped on every event."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import Context, ContextVar, copy_context

actor_cvar: ContextVar[str] = ContextVar("actor", default="system")
request_id_cvar: ContextVar[str] = ContextVar("request_id", default="-")


@contextmanager
def acting_as(actor: str, request_id: str) -> Iterator[None]:
    """Run a block as `actor` within `request_id`, restoring the previous values after."""
    actor_token = actor_cvar.set(actor)
    request_token = request_id_cvar.set(request_id)
    try:
        yield
    finally:
        request_id_cvar.reset(request_token)
        actor_cvar.reset(actor_token)


def context_acting_as(actor: str, request_id: str) -> Context:
    """A copy of the current context acting as `actor` within `request_id`, for work run
    in it later (the writer's decisions of other processes' writes): nothing to undo,
    so cheaper than entering and leaving `acting_as` for each."""
    context = copy_context()
    context.run(_act, actor, request_id)
    return context


def _act(actor: str, request_id: str) -> None:
    actor_cvar.set(actor)
    request_id_cvar.set(request_id)
