"""Cursors and keyset paging: the one cursor codec of the platform.

A cursor is opaque to clients: base64url (unpadded) of a short text. Two kinds are written:

- a **keyset cursor**, JSON ``[created_at, id]``: where a list ordered oldest first stopped (the
  services' lists, the gateway's webhook subscriptions);
- a **position cursor**, ``cp1:<position>``: a place in an ordered log (the gateway's change feed,
  and the webhook subscriptions and deliveries that point into it).

Readers return None for a string that is not such a cursor; the caller answers 422 naming its field.
"""
from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime, timezone
from typing import Callable

from marshmallow import Schema, fields, validate
from sqlalchemy import and_, or_

from .events import iso
from .http import Problem

POSITION_PREFIX = "cp1:"
#: positions are BIGINT: anything larger is not one we could have written
MAX_POSITION = 2 ** 63 - 1


def opaque(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def unwrap(cursor: str) -> str | None:
    """The text inside an opaque cursor, or None."""
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def plain_position(text: str) -> int | None:
    """A non-negative 64-bit integer written in ASCII digits, or None."""
    if text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_POSITION:
        return int(text)
    return None


def position_cursor(position: int) -> str:
    return opaque(f"{POSITION_PREFIX}{position}")


def read_position_cursor(cursor: str) -> int | None:
    text = unwrap(cursor)
    if text is None or not text.startswith(POSITION_PREFIX):
        return None
    return plain_position(text[len(POSITION_PREFIX):])


def keyset_cursor(created_at: datetime, ident: str) -> str:
    return opaque(json.dumps([iso(created_at), ident]))


def read_keyset_cursor(cursor: str) -> tuple[datetime, str] | None:
    """(created_at, id) of a keyset cursor. Also reads ``<created_at>|<id>``, the form the gateway's
    subscription list wrote before it used this codec, so cursors already handed out still work."""
    text = unwrap(cursor)
    try:
        at, ident = json.loads(text) if text.startswith("[") else text.split("|", 1)
        moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)), str(uuid.UUID(ident))
    except (ValueError, TypeError, AttributeError):
        return None


def invalid_cursor(field: str, hint: str) -> Problem:
    return Problem(422, "Unprocessable Content", f"Some fields are not valid: {field}", errors={field: [hint]})


def keyset_query(stmt, created_at, ident, limit: int, cursor: str | None,
                 hint: str = "Not a cursor this service gave out."):
    """``stmt`` ordered by (created_at, id), after ``cursor``, one row more than a page (to see if
    another follows)."""
    if cursor:
        after = read_keyset_cursor(cursor)
        if after is None:
            raise invalid_cursor("cursor", hint)
        stmt = stmt.where(or_(created_at > after[0], and_(created_at == after[0], ident > after[1])))
    return stmt.order_by(created_at, ident).limit(limit + 1)


def keyset_split(rows: list, limit: int, key: Callable) -> tuple[list, str | None]:
    """The page of ``rows`` (read by keyset_query) and the cursor of the next one; ``key(row)`` is
    its (created_at, id)."""
    if len(rows) > limit:
        return rows[:limit], keyset_cursor(*key(rows[limit - 1]))
    return rows, None


def keyset_page(session, stmt, model, limit: int, cursor: str | None) -> tuple[list, str | None]:
    """One page of ``stmt`` over ``model`` after ``cursor``; return the rows and the next cursor."""
    rows = session.execute(keyset_query(stmt, model.created_at, model.id, limit, cursor)).scalars().all()
    return keyset_split(rows, limit, lambda row: (row.created_at, row.id))


def where_given(stmt, model, query: dict, *names: str):
    """``stmt`` narrowed to the rows whose column ``name`` equals the query's, for each of
    ``names`` the query gives (one it leaves out or empty narrows nothing)."""
    for name in names:
        if query.get(name):
            stmt = stmt.where(getattr(model, name) == str(query[name]))
    return stmt


def limit_field(maximum: int) -> fields.Integer:
    """A list's ``limit`` query parameter: 50 unless asked, from 1 to ``maximum``."""
    return fields.Integer(load_default=50, validate=validate.Range(min=1, max=maximum))


def page_schema(name: str, item: type[Schema], *, withheld: bool = True, **before) -> type[Schema]:
    """The schema of one page of a paged list: ``before`` (fields that head the page), its
    ``items``, the ``next_cursor`` (null on the last page) and, on lists the gateway filters by
    what the caller may see, how many items it ``withheld``."""
    declared = dict(before, items=fields.List(fields.Nested(item)), next_cursor=fields.String(allow_none=True))
    if withheld:
        declared["withheld"] = fields.Integer(metadata={
            "description": "through the gateway: items of this page left out "
                           "because the caller may not see them (docs/access.md)"})
    return Schema.from_dict(declared, name=name)
