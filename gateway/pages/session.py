"""The pages' session: a signed, HttpOnly, SameSite=Lax cookie keeping only the signed-in client's id
(looked up again on every request, so a revoked client is signed out), its CSRF token, and the
only redirect targets followed after signing in."""
from __future__ import annotations

import hmac
import os
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from flask import abort, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select

from coproduction.auth import Caller
from coproduction.http import ctx

from ..models import clients as clients_table
from ..security import API

SESSION_HOURS = 12
PURPOSE = "direct care"


class PagesOnly(SecureCookieSessionInterface):
    """The cookie is the pages' alone: an API or FHIR request (a bearer token) opens no session, so
    none is decoded or signed for it."""

    def open_session(self, app, request):
        if request.path.startswith(API):
            return self.null_session_class()
        return super().open_session(app, request)


def configure(app) -> None:
    """The session cookie's settings (docs/configuration.md)."""
    settings = app.extensions["coproduction"].settings
    app.session_interface = PagesOnly()
    app.secret_key = settings.session_secret
    app.config.update(
        SESSION_COOKIE_NAME="coproduction_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=os.environ.get("SESSION_COOKIE_SECURE", "") in ("1", "true", "yes"),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=int(os.environ.get("SESSION_HOURS", SESSION_HOURS))),
    )


def signed_in() -> Caller | None:
    """The client this session belongs to, looked up afresh (None if absent, unknown or revoked)."""
    client_id = session.get("client_id")
    if not client_id:
        return None
    with ctx().db.session() as s:
        row = s.execute(select(clients_table).where(clients_table.c.id == client_id)).mappings().first()
    if row is None or row["revoked_at"] is not None:
        session.clear()
        return None
    return Caller(row["id"], row["name"], row["org"], row["role"], frozenset(row["scopes"]), PURPOSE)


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    sent, kept = request.form.get("csrf", ""), session.get("csrf", "")
    if not kept or not hmac.compare_digest(sent.encode(), kept.encode()):
        abort(400, "The form has expired or did not come from this site: reload the page and try again.")


def safe_next(target: str | None) -> str:
    """Only a path on this site (never another host) is followed after signing in."""
    if not target:
        return url_for("pages.home")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("pages.home")
    return target


def login_redirect():
    return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))

