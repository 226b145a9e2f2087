"""JSON encoded and decoded by orjson: several times faster than the standard library's on a
portfolio-sized document, which every audited read decodes from jsonb and encodes again.

:class:`JSONProvider` is every app's Flask JSON provider (coproduction/http.py); :func:`loads` is
how PostgreSQL's json and jsonb values are decoded (coproduction/db.py). What orjson does not
encode itself (a datetime, a Decimal, an integer wider than 64 bits, indented output) goes through
Flask's own encoder, so an answer says the same as before, only sooner.
"""
from __future__ import annotations

import orjson
from flask.json.provider import DefaultJSONProvider

loads = orjson.loads
#: datetimes go to Flask's default (an HTTP date, as Flask writes them); keys may be ints, as in json
OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


class JSONProvider(DefaultJSONProvider):
    sort_keys = False

    def dumps(self, obj, **kwargs) -> str:
        return self._encode(obj, kwargs).decode()

    def _encode(self, obj, kwargs) -> bytes:
        if not kwargs:
            try:
                return orjson.dumps(obj, default=self.default,
                                    option=OPTIONS | (orjson.OPT_SORT_KEYS if self.sort_keys else 0))
            except TypeError:  # e.g. an integer wider than 64 bits: the standard library's encoder
                pass
        kwargs.setdefault("default", self.default)
        kwargs.setdefault("ensure_ascii", self.ensure_ascii)
        kwargs.setdefault("sort_keys", self.sort_keys)
        return super().dumps(obj, **kwargs).encode()

    def response(self, *args, **kwargs):
        obj = self._prepare_response_obj(args, kwargs)
        readable = (self.compact is None and self._app.debug) or self.compact is False
        dump_args = {"indent": 2} if readable else {}  # as Flask's: indented in debug, else compact
        return self._app.response_class(self._encode(obj, dump_args) + b"\n", mimetype=self.mimetype)
