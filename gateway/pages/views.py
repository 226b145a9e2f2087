"""The pages themselves: signing in and out, the home page, the clinician's portfolio page and the
site report, the error pages, and the headers every page is sent with."""
from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path

from flask import Blueprint, Response, g, redirect, render_template, request, session, url_for
from sqlalchemy import select

from coproduction.http import Problem, ctx
from coproduction.nhs_number import is_valid

from .. import api, portfolio, report, tokens
from ..models import portfolios
from .charts import report_charts
from .filters import FILTERS, ROLE_LABEL, ROLE_TEAMS, SERVICE_LABEL, SHORT_LABEL
from .session import check_csrf, csrf_token, login_redirect, safe_next, signed_in

WEB = Path(__file__).resolve().parent.parent / "web"  # the templates and styles stay in gateway/web/
bp = Blueprint("pages", __name__, template_folder=str(WEB / "templates"), static_folder=str(WEB / "static"),
               static_url_path="/static/pages")
for _name, _filter in FILTERS.items():
    bp.add_app_template_filter(_filter, _name)

SECURITY_HEADERS = {
    # no script at all; styles only from our own static files; inline SVG needs nothing more
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def refusal(problem: Problem):
    """A page the access decision refused: the sign-in page, or an error page saying why."""
    if problem.code == 401:
        return login_redirect()
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
    check_csrf()
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
    return redirect(safe_next(target), code=303)


@bp.post("/logout")
def logout():
    check_csrf()
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


