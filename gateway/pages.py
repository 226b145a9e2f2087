"""The gateway's server-rendered web pages: the clinician's portfolio page and the site report.

A client signs in with the same bearer token it uses for the API (pasted once into ``/login``): an
OAuth access token, or a development client's static token where those are allowed; the
gateway then keeps only the client's id in a signed, HttpOnly, SameSite=Lax session cookie, never
the token. Every page request looks the client up again, so a revoked client's session stops
working on its next request. Consent and audit are exactly the API's: the person page reads the
portfolio through :func:`gateway.api.person` (scope, NHS number, one audit record per view) and
:func:`gateway.portfolio.for_role` (withheld initiatives removed, and said so).

No JavaScript: charts are inline SVG drawn here, styles come from ``web/static``.
"""
from __future__ import annotations

import hmac
import os
import secrets
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from flask import (Blueprint, Response, abort, g, redirect, render_template, request, session,
                   url_for)
from sqlalchemy import select

from coproduction.auth import Caller
from coproduction.http import Problem, ctx
from coproduction.nhs_number import is_valid

from . import api, portfolio, report, tokens
from .models import clients as clients_table
from .models import portfolios

bp = Blueprint("pages", __name__, template_folder="web/templates", static_folder="web/static",
               static_url_path="/static/pages")

SESSION_HOURS = 12
PURPOSE = "direct care"
SERVICE_LABEL = {"plans": "Care plan", "budgets": "Personal budget", "decisions": "Shared decision",
                 "groups": "Self-management course"}
SHORT_LABEL = {"plans": "Plan", "budgets": "Budget", "decisions": "Decision", "groups": "Course"}
ROLE_TEAMS = {"hospital": "hospital teams", "gp": "GP practices", "social_care": "social care teams",
              "community": "community course providers", "admin": "administrators"}
ROLE_LABEL = {"hospital": "Hospital", "gp": "GP", "social_care": "Social care", "community": "Community",
              "admin": "Administrator"}
SECURITY_HEADERS = {
    # no script at all; styles only from our own static files; inline SVG needs nothing more
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def init_app(app) -> None:
    """Register the pages and the signed session cookie they use (docs/configuration.md)."""
    settings = app.extensions["coproduction"].settings
    app.secret_key = settings.session_secret
    app.config.update(
        SESSION_COOKIE_NAME="coproduction_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=os.environ.get("SESSION_COOKIE_SECURE", "") in ("1", "true", "yes"),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=int(os.environ.get("SESSION_HOURS", SESSION_HOURS))),
    )
    app.register_blueprint(bp)
    app.extensions["session_caller"] = signed_in  # gateway/security.py authenticates pages with it
    app.extensions["page_refusal"] = refusal      # and gateway/policy/ answers a refused page with it
    # the JSON report is an API route: register it through the app's flask-smorest Api so it is
    # in /openapi.json with the rest (the kernel's create_app keeps its Api in app.extensions)
    smorest = app.extensions["flask-smorest"]["apis"][""]["ext_obj"]
    smorest.register_blueprint(report.bp)


# -- the session --------------------------------------------------------------------------------------
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


def _check_csrf() -> None:
    sent, kept = request.form.get("csrf", ""), session.get("csrf", "")
    if not kept or not hmac.compare_digest(sent.encode(), kept.encode()):
        abort(400, "The form has expired or did not come from this site: reload the page and try again.")


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never another host) is followed after signing in."""
    if not target:
        return url_for("pages.home")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("pages.home")
    return target


def _login_redirect():
    return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))


def refusal(problem: Problem):
    """A page the access decision refused: the sign-in page, or an error page saying why."""
    if problem.code == 401:
        return _login_redirect()
    return render_template("error.html", who=g.get("caller"), status=problem.code, title=problem.title,
                           detail=_problem_text(problem)), problem.code


@bp.context_processor
def _context():
    return {"csrf_token": csrf_token, "service_label": SERVICE_LABEL, "short_label": SHORT_LABEL,
            "role_label": ROLE_LABEL, "role_teams": ROLE_TEAMS}


@bp.after_request
def _headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"  # people's data never sits in a cache
    return response


@bp.errorhandler(400)
def _bad_request(error):
    return render_template("error.html", who=None, status=400, title="Bad request",
                           detail=getattr(error, "description", "")), 400


# -- signing in and out -------------------------------------------------------------------------------
@bp.get("/login")
def login():
    return render_template("login.html", who=signed_in(), error=None, next=request.args.get("next", ""))


@bp.post("/login")
def login_post():
    _check_csrf()
    token = request.form.get("token", "").strip()
    target = request.form.get("next", "")
    caller = tokens.client_signing_in(token) if token else None
    if caller is None:
        return render_template("login.html", who=None, next=target,
                               error="That token is not valid, or it was revoked."), 401
    session.clear()  # a fresh session: nothing from before signing in carries over
    session.permanent = True
    session["client_id"] = caller.client_id
    session["signed_in_at"] = datetime.now(timezone.utc).isoformat()
    session["csrf"] = secrets.token_urlsafe(32)
    return redirect(_safe_next(target), code=303)


@bp.post("/logout")
def logout():
    _check_csrf()
    session.clear()
    return redirect(url_for("pages.login", signed_out=1), code=303)


# -- pages ----------------------------------------------------------------------------------------------
@bp.get("/")
def home():
    return render_template("home.html", who=g.caller, error=None, value="")


@bp.get("/people")
def find_person():
    who = g.caller
    # the field is "nhs", not "nhs_number": this redirect reads nothing about the person, so the
    # audit records the page view that follows, once, and not this lookup as well
    nhs = "".join(ch for ch in request.args.get("nhs", "") if ch.isdigit())
    if not is_valid(nhs):
        return render_template("home.html", who=who, value=request.args.get("nhs", ""),
                               error="That is not a valid NHS number (10 digits with a valid check digit)."), 422
    return redirect(url_for("pages.person_page", nhs_number=nhs), code=303)


@bp.get("/people/<nhs_number>")
def person_page(nhs_number):
    """The clinician's page: decided and audited exactly like the API (one record per view)."""
    try:
        who, hidden, document = api.person()
    except Problem as problem:
        return refusal(problem)
    doc = portfolio.for_role(document, hidden)
    with ctx().db.session() as s:
        updated = s.execute(select(portfolios.c.updated_at)
                            .where(portfolios.c.nhs_number == nhs_number)).scalar_one_or_none()
    return render_template("person.html", who=who, doc=doc, view=person_view(doc),
                           updated_at=updated, now=datetime.now(timezone.utc))


@bp.get("/reports/coproduction")
def report_page():
    who = g.caller
    try:
        months = int(request.args.get("months", report.DEFAULT_MONTHS))
    except ValueError:
        months = report.DEFAULT_MONTHS
    months = max(1, min(report.MAX_MONTHS, months))
    data = report.report(months)
    return render_template("report.html", who=who, r=data, charts=report_charts(data), months=months)


def _problem_text(problem: Problem) -> str:
    detail = problem.detail or ""
    if problem.errors:
        detail += " " + "; ".join(f"{k}: {' '.join(v)}" for k, v in problem.errors.items())
    return detail.strip()


# -- shaping the portfolio for the page --------------------------------------------------------------
def person_view(doc: dict) -> dict:
    """What the template needs beyond the document: which priority each source id is, and counts."""
    # every priority id any source used -> where the page shows it (current: "priority N", past: its status)
    anchors: dict[str, tuple[str, str]] = {}
    for n, item in enumerate(doc["priorities"], 1):
        place = (f"priority-{item.get('position', n)}", f"priority {item.get('position', n)}")
        for pid in [item["id"], *(s.get("priority_id") for s in item["sources"])]:
            anchors.setdefault(pid, place)
    for n, item in enumerate(doc["past_priorities"], 1):
        place = (f"past-{n}", f"a priority now {item['status']}")
        for pid in [item["id"], *(s.get("priority_id") for s in item["sources"])]:
            anchors.setdefault(pid, place)

    def serves(ids) -> list[tuple[str, str]]:
        return sorted({anchors[i] for i in ids or [] if i in anchors},
                      key=lambda a: (not a[0].startswith("priority-"), len(a[0]), a[0]))
    conflicts = sum(1 for item in doc["priorities"] + doc["past_priorities"] if item["conflicts"])
    decisions = doc.get("decisions") or []
    open_decisions = [d for d in decisions if d.get("status") in ("opened", "deferred")]
    # open decisions first (what the team may need to act on), each group newest first as composed
    dots = {}
    for course in doc.get("groups") or []:
        attended = {a.get("session_no"): a.get("attended") for a in course.get("attendance") or []}
        dots[course["id"]] = [{"n": n, "state": {True: "attended", False: "missed"}.get(attended.get(n), "pending")}
                              for n in range(1, (course.get("sessions") or 0) + 1)]
    return {
        "serves": serves,
        "decisions": open_decisions + [d for d in decisions if d not in open_decisions],
        "dots": dots,
        "conflicts": conflicts,
        "open_decisions": len(open_decisions),
        "withheld": set(doc.get("withheld") or []),
        "earlier_plans": max(0, len(doc.get("plans") or []) - (1 if doc.get("plan") else 0)),
    }


# -- charts: inline SVG, drawn on the server -----------------------------------------------------------
def hbar_chart(rows: list[tuple[str, int | float]], total: int | None = None, unit: str = "",
               width: int = 520, bar_height: int = 24, gap: int = 10, label_width: int = 210) -> dict:
    """Horizontal bars; each row may show a share of ``total``."""
    top = max([v for _, v in rows] + [total or 0, 1])
    plot = width - label_width - 70
    bars = []
    for n, (label, value) in enumerate(rows):
        y = n * (bar_height + gap)
        w = round(plot * value / top, 1)
        share = f" ({round(100 * value / total)}%)" if total else ""
        bars.append({"label": label, "value": value, "y": y, "w": max(w, 1.5 if value else 0),
                     "text": f"{value:,}{unit}{share}", "ty": y + bar_height * 0.68})
    height = max(1, len(rows)) * (bar_height + gap) - gap
    return {"width": width, "height": height, "bars": bars, "bar_height": bar_height,
            "label_width": label_width, "plot": plot}


def column_chart(months: list[str], values: list[int], width: int = 440, height: int = 150) -> dict:
    """One series per month as columns, with the month labels below."""
    top = max(values + [1])
    left, bottom, right, top_pad = 34, 22, 6, 14
    plot_w, plot_h = width - left - right, height - bottom - top_pad
    step = plot_w / max(1, len(values))
    cols = []
    for n, (month, value) in enumerate(zip(months, values)):
        h = round(plot_h * value / top, 1)
        x = round(left + n * step + step * 0.15, 1)
        cols.append({"x": x, "w": round(step * 0.7, 1), "y": round(top_pad + plot_h - h, 1), "h": h,
                     "value": value, "month": _month_label(month), "cx": round(x + step * 0.35, 1),
                     "show_label": (len(months) - 1 - n) % max(1, -(-len(months) // 6)) == 0})
    return {"width": width, "height": height, "cols": cols, "top": top, "left": left,
            "base": top_pad + plot_h, "top_pad": top_pad, "right": width - right}


def _month_label(month: str) -> str:
    return datetime.strptime(month, "%Y-%m").strftime("%b %y")


def report_charts(r: dict) -> dict:
    people, plans, decisions, courses = r["people"], r["plans"], r["decisions"], r["courses"]
    by_count = people["by_initiative_count"]
    return {
        "initiatives": hbar_chart([(f"{n} initiative{'s' if n != '1' else ''}", by_count[n]) for n in by_count],
                                  total=people["with_portfolio"]),
        "by_initiative": hbar_chart([(SERVICE_LABEL[s], v) for s, v in people["by_initiative"].items()],
                                    total=people["with_portfolio"]),
        "plans": hbar_chart([("All plans", plans["total"]),
                             ("What matters recorded", plans["with_priorities"]),
                             ("Agreed with the person", plans["agreed_with_person"]),
                             ("Both", plans["with_priorities_and_agreed_with_person"])], total=plans["total"]),
        "decisions": hbar_chart([("All decisions", decisions["total"]),
                                 ("Person's priorities recorded", decisions["with_priorities"]),
                                 ("Decision recorded", decisions["recorded"]),
                                 ("Recorded, with priorities", decisions["recorded_with_priorities"]),
                                 ("Person's reason recorded", decisions["recorded_with_persons_reason"])],
                                total=decisions["total"]),
        "courses": hbar_chart([("In progress", courses["in_progress"]), ("Completed", courses["completed"]),
                               ("Not completed", courses["not_completed"]), ("Withdrawn", courses["withdrawn"])],
                              total=courses["enrolments"]),
        "budgets": hbar_chart([(label(k), v) for k, v in r["budgets"]["by_status"].items()],
                              total=r["budgets"]["total"]),
        "over_time": {name: column_chart(r["over_time"]["months"], values)
                      for name, values in r["over_time"]["series"].items()},
    }


# -- formatting filters ---------------------------------------------------------------------------------
def _parse(value) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@bp.app_template_filter("when")
def when(value) -> str:
    """25 Nov 2026 10:00 (UTC)."""
    moment = _parse(value)
    return moment.astimezone(timezone.utc).strftime("%-d %b %Y %H:%M") if moment else (value or "—")


@bp.app_template_filter("day")
def day(value) -> str:
    """25 Nov 2026 (dates stay dates)."""
    if not value:
        return "—"
    try:
        return datetime.fromisoformat(str(value)[:10]).strftime("%-d %b %Y")
    except ValueError:
        return str(value)


@bp.app_template_filter("ago")
def ago(value, now: datetime | None = None) -> str:
    moment = _parse(value)
    if moment is None:
        return "never"
    seconds = max(0, ((now or datetime.now(timezone.utc)) - moment).total_seconds())
    for size, name in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {name}{'s' if n != 1 else ''} ago"
    return "just now"


@bp.app_template_filter("money")
def money(pence, currency: str = "GBP") -> str:
    if pence is None:
        return "—"
    sign = "£" if (currency or "GBP") == "GBP" else f"{currency} "
    pounds, rest = divmod(int(pence), 100)
    return f"{sign}{pounds:,}.{rest:02d}"


@bp.app_template_filter("nhs")
def nhs(number: str) -> str:
    """NHS numbers are shown 3 3 4, as on NHS documents."""
    number = str(number)
    return f"{number[:3]} {number[3:6]} {number[6:]}" if len(number) == 10 else number


@bp.app_template_filter("label")
def label(value) -> str:
    if value is None:
        return "—"
    text = str(value).replace("_", " ").replace("-", " ")
    return text[:1].upper() + text[1:]


@bp.app_template_filter("month")
def month(value: str) -> str:
    """2026-11 -> Nov 2026."""
    try:
        return datetime.strptime(value, "%Y-%m").strftime("%b %Y")
    except ValueError:
        return value


@bp.app_template_filter("percent")
def percent(rate) -> str:
    return "—" if rate is None else f"{round(rate * 100)}%"
