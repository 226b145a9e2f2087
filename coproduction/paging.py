"""Keyset paging for the services' lists: oldest first, an opaque cursor (created_at, id)."""
from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime

from sqlalchemy import and_, or_

from .events import iso
from .http import Problem


def encode_cursor(row) -> str:
    raw = json.dumps([iso(row.created_at), row.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, ident = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(at.replace("Z", "+00:00")), str(uuid.UUID(ident))
    except (ValueError, TypeError, AttributeError):
        raise Problem(422, "Unprocessable Content", "Some fields are not valid: cursor",
                      errors={"cursor": ["Not a cursor this service gave out."]}) from None


def keyset_page(session, stmt, model, limit: int, cursor: str | None) -> tuple[list, str | None]:
    """One page of ``stmt`` over ``model`` after ``cursor``; return the rows and the next cursor."""
    if cursor:
        at, ident = decode_cursor(cursor)
        stmt = stmt.where(or_(model.created_at > at, and_(model.created_at == at, model.id > ident)))
    rows = session.execute(stmt.order_by(model.created_at, model.id).limit(limit + 1)).scalars().all()
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1])
    return rows, None
