"""The one cursor codec (coproduction/paging.py) reads every cursor the platform has handed out."""
from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timezone

from coproduction.paging import (keyset_cursor, plain_position, position_cursor, read_keyset_cursor,
                                 read_position_cursor)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_position_cursors_are_the_change_feeds():
    assert position_cursor(42) == "Y3AxOjQy"  # as docs/http-api.md shows it
    assert read_position_cursor("Y3AxOjQy") == 42
    assert read_position_cursor(position_cursor(2 ** 63 - 1)) == 2 ** 63 - 1
    for bad in ("", "x", _b64("cp1:"), _b64("cp1:-1"), _b64("cp2:5"), _b64(f"cp1:{2 ** 63}"), _b64("cp1:²")):
        assert read_position_cursor(bad) is None, bad
    assert plain_position("17") == 17 and plain_position("1.5") is None and plain_position("") is None


def test_keyset_cursors_read_back_including_the_subscription_lists_older_form():
    at = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=timezone.utc)
    ident = str(uuid.uuid4())
    assert read_keyset_cursor(keyset_cursor(at, ident)) == (at, ident)
    assert read_keyset_cursor(_b64(json.dumps(["2026-03-04T05:06:07.891011Z", ident]))) == (at, ident)
    # GET /v1/subscriptions wrote base64url("<created_at.isoformat()>|<id>") before it used the codec
    assert read_keyset_cursor(_b64(f"{at.isoformat()}|{ident}")) == (at, ident)
    assert read_keyset_cursor(_b64(f"{at.replace(tzinfo=None).isoformat()}|{ident}")) == (at, ident)
    for bad in ("", "!!", _b64("[1, 2]"), _b64(f"yesterday|{ident}"), _b64(f"{at.isoformat()}|nope")):
        assert read_keyset_cursor(bad) is None, bad
