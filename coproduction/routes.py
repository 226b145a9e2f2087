"""How a service declares its HTTP routes: :func:`endpoint`, the one decorator stack every route
has (the rule, the scope it needs, what it reads, what it answers), and :func:`action_routes`, a
family of ``POST .../<action>`` routes that differ only by the action they run."""
from __future__ import annotations

from typing import Callable, Iterable

import flask_smorest
from marshmallow import Schema

from .auth import requires


def endpoint(bp: flask_smorest.Blueprint, rule: str, scope: str, response: type[Schema] | None = None, *,
             method: str = "GET", body: type[Schema] | None = None, location: str = "json",
             status: int = 200, **response_doc) -> Callable:
    """``@bp.route``, ``@requires(scope)``, ``@bp.arguments(body)`` and ``@bp.response(status,
    response)``, in that order; ``response_doc`` documents a response that has no schema."""
    def register(view: Callable) -> Callable:
        if response is not None or response_doc:
            view = bp.response(status, response, **response_doc)(view)
        if body is not None:
            view = bp.arguments(body, location=location)(view)
        return bp.route(rule, methods=[method])(requires(scope)(view))
    return register


#: (action, the schema of its body or None, the route's docstring or None)
Action = tuple[str, "type[Schema] | None", "str | None"]


def action_routes(bp: flask_smorest.Blueprint, rule: str, scope: str, response: type[Schema],
                  name: str, run: Callable, actions: Iterable[Action]) -> None:
    """One ``POST`` route per action: ``rule`` with ``{action}`` in it, the view named
    ``name.format(action=...)`` (a ``-`` in the action is ``_`` in the name), answering
    ``run(action, body, **path)`` (``body`` is None for an action that reads none)."""
    for action, body, doc in actions:
        endpoint(bp, rule.format(action=action), scope, response, method="POST", body=body)(
            _view(name.format(action=action.replace("-", "_")), doc, action, run, body is not None))


def _view(name: str, doc: str | None, action: str, run: Callable, reads_body: bool) -> Callable:
    if reads_body:
        def view(body, **path):
            return run(action, body, **path)
    else:
        def view(**path):
            return run(action, None, **path)
    view.__name__ = view.__qualname__ = name
    view.__doc__ = doc
    return view
