"""The gateway's server-rendered web pages: the clinician's portfolio page and the site report.

A client signs in with the same bearer token it uses for the API (pasted once into ``/login``): an
OAuth access token, or a development client's static token where those are allowed; the
gateway then keeps only the client's id in a signed, HttpOnly, SameSite=Lax session cookie, never
the token. Every page request looks the client up again, so a revoked client's session stops
working on its next request. Consent and audit are exactly the API's: the person page reads the
portfolio through :func:`gateway.api.person` (scope, NHS number, one audit record per view) and
:func:`gateway.portfolio.for_role` (withheld initiatives removed, and said so).

No JavaScript: charts are inline SVG drawn on the server, styles come from ``gateway/web/static``.

- ``views.py``: the blueprint and its pages;
- ``session.py``: the session cookie, CSRF, the redirect after signing in;
- ``charts.py``: the report's SVG chart geometry;
- ``filters.py``: the template filters and labels.
"""
from __future__ import annotations

from .. import report
from .filters import SERVICE_LABEL, day, label, money, nhs, percent, when
from .session import configure, safe_next, signed_in
from .views import bp, refusal

_safe_next = safe_next  # the name tests/test_pages.py checks the redirect rule by

__all__ = ["SERVICE_LABEL", "bp", "day", "init_app", "label", "money", "nhs", "percent", "refusal", "safe_next",
           "signed_in", "when"]


def init_app(app) -> None:
    """Register the pages and the signed session cookie they use (docs/configuration.md)."""
    configure(app)
    app.register_blueprint(bp)
    app.extensions["session_caller"] = signed_in  # gateway/security.py authenticates pages with it
    app.extensions["page_refusal"] = refusal      # and gateway/policy/ answers a refused page with it
    # the JSON report is an API route: register it through the app's flask-smorest Api so it is
    # in /openapi.json with the rest (the kernel's create_app keeps its Api in app.extensions)
    smorest = app.extensions["flask-smorest"]["apis"][""]["ext_obj"]
    smorest.register_blueprint(report.bp)
