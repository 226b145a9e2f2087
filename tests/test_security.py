"""Issue 3: who may do what, an audit of every access, consent, and limits on what a client sends."""
from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st
from joserfc import jwt
from joserfc.jwk import OctKey
from sqlalchemy import func, select, text

from bodies import COURSE, plan_body, priority
from coproduction.auth import ROLES, Caller, issue_service_token
from coproduction.nhs_number import with_check_digit
from harness import ROOT, wait_for
from oauth_client import bearer

NHS = "9434765919"
OTHER = with_check_digit("943476592")
ROLE_NAMES = list(ROLES)

PLAN = plan_body(NHS, priority("Keep my allotment going", "learning_and_hobbies"))


def scopes_of(role):
    return set(ROLES[role])


def allowed(role, scope):
    if scope is None:
        return True
    if "|" in scope:
        return any(allowed(role, s) for s in scope.split("|"))
    return scope in scopes_of(role) or "admin" in scopes_of(role)


@pytest.fixture
def seeded(make_platform):
    """Every service running, so each route answers for itself."""
    platform = make_platform(services=("plans", "budgets", "decisions", "groups")).start()
    r = platform.call("gp", "POST", "/v1/plans", json=PLAN)  # the GP practice holds the plan
    assert r.status_code == 201
    plan = r.json()
    give_every_role_a_relationship(platform, NHS)
    platform.portfolio_shows(NHS, lambda d: d["plan"])
    return platform, plan


def give_every_role_a_relationship(platform, nhs):
    """The hospital declares an admission, social care uses emergency access, and the course
    provider enrols the person, so each role meets only its scopes on the routes below."""
    platform.admit(nhs, "hospital")
    platform.admit(nhs, "social_care", kind="emergency")
    course = platform.call("community", "POST", "/v1/courses", json=COURSE).json()
    r = platform.call("community", "POST", f"/v1/courses/{course['id']}/enrolments",
                      json={"nhs_number": nhs, "referral_source": "self", "priorities": []})
    assert r.status_code == 201, r.text


def routes(plan_id):
    """(method, path, scope the route needs, json body) for every gateway route of a person's data."""
    return [
        ("GET", f"/v1/people/{NHS}/portfolio", "portfolio:read", None),
        ("GET", f"/v1/people/{NHS}/priorities", "portfolio:read", None),
        ("GET", f"/v1/people/{NHS}/access-log", "portfolio:read", None),
        ("GET", f"/v1/people/{NHS}/sharing", "portfolio:read", None),
        ("PUT", f"/v1/people/{NHS}/sharing", "admin|plans:write", {"withhold": {}}),
        ("GET", "/v1/audit", "audit:read", None),
        ("GET", f"/v1/plans?nhs_number={NHS}", "plans:read", None),
        ("GET", f"/v1/plans/{plan_id}", "plans:read", None),
        ("POST", "/v1/plans", "plans:write", PLAN),
        ("POST", f"/v1/plans/{plan_id}/agree", "plans:write", {"agreed_by": "Dr A", "person_agreed": True}),
        ("GET", f"/v1/budgets?nhs_number={NHS}", "budgets:read", None),
        ("POST", "/v1/budgets", "budgets:write", {}),
        ("GET", f"/v1/decisions?nhs_number={NHS}", "decisions:read", None),
        ("POST", "/v1/decisions", "decisions:write", {}),
        ("GET", "/v1/courses", "groups:read", None),
        ("POST", "/v1/courses", "groups:write", {}),
        ("GET", f"/v1/enrolments/{uuid.uuid4()}", "groups:read", None),
    ]


def test_every_route_times_every_role(seeded):
    platform, plan = seeded
    from gateway import clients
    db = platform.database("gateway")
    revoked_id, revoked = clients.create(db, "old", "X1", "admin")
    clients.revoke(db, revoked_id)
    unauthorised_successes = []
    for method, path, scope, body in routes(plan["id"]):
        for label, headers in (("none", {}), ("bad", {"Authorization": "Bearer cpt_not-a-token"}),
                               ("revoked", bearer(revoked))):
            r = platform.call(None, method, path, json=body, headers=headers)
            assert r.status_code == 401, (label, method, path, r.status_code)
            assert r.headers["Content-Type"] == "application/problem+json"
        for role in ROLE_NAMES:
            r = platform.call(role, method, path, json=body, headers={"If-Match": '"99"'})
            if allowed(role, scope):
                assert r.status_code not in (401, 403), (role, method, path, r.status_code, r.text)
            else:
                assert r.status_code == 403, (role, method, path, r.status_code, r.text)
                if r.status_code < 300:
                    unauthorised_successes.append((role, method, path))
    assert unauthorised_successes == []


def test_services_refuse_without_a_valid_gateway_token(seeded):
    platform, plan = seeded
    base = f"http://127.0.0.1:{platform.ports['plans']}"
    secret = platform.env["SERVICE_TOKEN_SECRET"]
    caller = Caller("c1", "n", "o", "gp", frozenset(ROLES["gp"]))
    assert requests.get(f"{base}/v1/plans/{plan['id']}").status_code == 401
    expired = issue_service_token(caller, "plans", secret, lifetime=-5)
    assert requests.get(f"{base}/v1/plans/{plan['id']}", headers=bearer(expired)).status_code == 401
    wrong_audience = issue_service_token(caller, "budgets", secret)
    assert requests.get(f"{base}/v1/plans/{plan['id']}",
                        headers=bearer(wrong_audience)).status_code == 401
    forged = jwt.encode({"alg": "HS256"}, {"sub": "x", "aud": "plans", "iss": "coproduction-gateway",
                                           "iat": int(time.time()), "exp": int(time.time()) + 60, "scopes": ["admin"]},
                        OctKey.import_key("another-secret-of-32-bytes-or-more!!"))
    assert requests.get(f"{base}/v1/plans/{plan['id']}", headers=bearer(forged)).status_code == 401
    community = issue_service_token(Caller("c2", "n", "o", "community", frozenset(ROLES["community"])), "plans", secret)
    assert requests.get(f"{base}/v1/plans/{plan['id']}", headers=bearer(community)).status_code == 403
    good = issue_service_token(caller, "plans", secret)
    assert requests.get(f"{base}/v1/plans/{plan['id']}", headers=bearer(good)).status_code == 200
    assert requests.get(f"{base}/healthz").status_code == 200


def test_consent_withholds_sections_and_says_so(seeded):
    platform, plan = seeded
    r = platform.call("admin", "PUT", f"/v1/people/{NHS}/sharing", json={"withhold": {"hospital": ["plans"]}})
    assert r.status_code == 200, r.text
    doc = platform.call("hospital", "GET", f"/v1/people/{NHS}/portfolio").json()
    assert doc["plan"] is None and doc["plans"] == [] and doc["withheld"] == ["plans"]
    assert doc["priorities"] == []  # its only source is withheld
    assert platform.call("hospital", "GET", f"/v1/plans/{plan['id']}").status_code == 403
    gp_doc = platform.call("gp", "GET", f"/v1/people/{NHS}/portfolio").json()
    assert gp_doc["plan"]["id"] == plan["id"] and gp_doc["withheld"] == []
    r = platform.call("admin", "PUT", f"/v1/people/{NHS}/sharing", json={"withhold": {"hospital": ["nonsense"]}})
    assert r.status_code == 422 and any(k.startswith("withhold") for k in r.json()["errors"])
    assert platform.call("hospital", "PUT", f"/v1/people/{NHS}/sharing", json={"withhold": {}}).status_code == 403


def _audit_rows(platform):
    from gateway.models import audit_log
    db = platform.database("gateway")
    with db.session() as s:
        rows = s.execute(select(audit_log).order_by(audit_log.c.id)).mappings().all()
    db.dispose()
    return rows


def test_every_access_is_audited_once_and_the_log_verifies(seeded):
    platform, plan = seeded
    before = len(_audit_rows(platform))
    calls = [
        ("hospital", "GET", f"/v1/people/{NHS}/portfolio", None, 200),
        ("community", "GET", f"/v1/plans/{plan['id']}", None, 403),
        (None, "GET", f"/v1/people/{NHS}/portfolio", None, 401),
        ("gp", "GET", f"/v1/plans?nhs_number={NHS}", None, 200),
        ("gp", "GET", f"/v1/plans/{plan['id']}", None, 200),
        ("admin", "GET", f"/v1/people/{OTHER}/portfolio", None, 404),  # nobody's portfolio yet
        ("hospital", "GET", f"/v1/people/{OTHER}/portfolio", None, 403),  # no care relationship
    ]
    for role, method, path, body, status in calls:
        r = platform.call(role, method, path, json=body, headers={"X-Purpose": "admission"})
        assert r.status_code == status, (path, r.text)
    platform.call("gp", "GET", "/v1/courses")  # names no person: not audited
    rows = _audit_rows(platform)[before:]
    assert len(rows) == len(calls)
    assert [r["status"] for r in rows] == [c[4] for c in calls]
    assert [r["outcome"] for r in rows] == ["allowed", "refused", "refused", "allowed", "allowed", "failed",
                                            "refused"]
    assert rows[0]["purpose"] == "admission" and rows[0]["role"] == "hospital" and rows[0]["scope"] == "portfolio:read"
    assert rows[4]["nhs_number"] == NHS  # learned from the plan the service returned
    log = platform.call("gp", "GET", f"/v1/people/{NHS}/access-log").json()["items"]
    assert {"hospital", "gp", None} <= {i["role"] for i in log}  # the refused anonymous read too
    assert rows[1]["nhs_number"] is None and rows[1]["resource"].startswith("/v1/plans/")
    assert platform.call("hospital", "GET", "/v1/audit").status_code == 403
    assert len(platform.call("admin", "GET", "/v1/audit?limit=1000").json()["items"]) >= len(rows)

    platform.start_sequencer()
    wait_for(lambda: all(r["leaf_index"] is not None for r in _audit_rows(platform)), message="every record sequenced")
    env = dict(platform.env)
    verify = subprocess.run([sys.executable, "-m", "bootstrap.cli", "audit", "verify"], env=env, cwd=ROOT,
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    platform.stop_thread("gateway-sequencer")
    altered = _audit_rows(platform)[before + 1]
    db = platform.database("gateway")
    with db.session() as s:
        s.execute(text("UPDATE audit_log SET purpose = 'curiosity' WHERE id = :id"), {"id": altered["id"]})
    db.dispose()
    verify = subprocess.run([sys.executable, "-m", "bootstrap.cli", "audit", "verify"], env=env, cwd=ROOT,
                            capture_output=True, text=True)
    assert verify.returncode == 1
    assert f"leaf {altered['leaf_index']} (record id {altered['id']}) does not match" in verify.stdout
    assert f"first bad leaf: {altered['leaf_index']}" in verify.stdout


def test_clients_command_prints_the_token_last_and_stores_only_its_hash(platform):
    env = dict(platform.env)
    out = subprocess.run([sys.executable, "-m", "bootstrap.cli", "clients", "create", "--name", "Ward 7",
                          "--org", "RXX01", "--role", "hospital"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    token = out.stdout.split()[-1]
    r = platform.call(None, "GET", f"/v1/people/{NHS}/priorities", headers=bearer(token))
    assert r.status_code == 403  # authenticated (not a 401); it has no care relationship with anyone yet
    db = platform.database("gateway")
    with db.session() as s:
        stored = " ".join(str(v) for row in s.execute(text("SELECT * FROM clients")).all() for v in row)
    assert token not in stored
    listing = subprocess.run([sys.executable, "-m", "bootstrap.cli", "clients", "list"], env=env, cwd=ROOT,
                             capture_output=True, text=True).stdout
    client_id = next(c for c in __import__("json").loads(listing) if c["name"] == "Ward 7")["id"]
    subprocess.run([sys.executable, "-m", "bootstrap.cli", "clients", "revoke", client_id], env=env, cwd=ROOT, check=True,
                   capture_output=True)
    r = platform.call(None, "GET", f"/v1/people/{NHS}/priorities", headers=bearer(token))
    assert r.status_code == 401


def test_oversized_bodies_get_413_even_when_chunked(platform):
    big = b'{"nhs_number": "' + b"9" * 2_000_000 + b'"}'
    r = platform.call("gp", "POST", "/v1/plans", data=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.headers["Content-Type"] == "application/problem+json"

    def chunks():
        yield b'{"nhs_number": "'
        for _ in range(40):
            yield b"9" * 65536
        yield b'"}'
    r = platform.call("gp", "POST", "/v1/plans", data=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    r = platform.call("gp", "POST", "/v1/plans", json=dict(PLAN, conditions=["x" * 201]))
    assert r.status_code == 422 and "conditions.0" in r.json()["errors"]
    r = platform.call("gp", "POST", "/v1/plans", json=dict(PLAN, conditions=["x"] * 51))
    assert r.status_code == 422 and "conditions" in r.json()["errors"]
    r = platform.call("admin", "GET", "/v1/audit?limit=100000")
    assert r.status_code == 422 and "limit" in r.json()["errors"]
    assert platform.call("gp", "GET", "/healthz").status_code == 200


def test_rate_limit_answers_429_with_retry_after(make_platform):
    platform = make_platform(extra_env={"RATE_LIMIT": "5 per minute"}).start()
    statuses = [platform.call("admin", "GET", f"/v1/people/{NHS}/priorities").status_code for _ in range(7)]
    assert statuses[:5] == [404] * 5 and statuses[5:] == [429, 429]
    r = platform.call("admin", "GET", f"/v1/people/{NHS}/priorities")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.headers["Content-Type"] == "application/problem+json"
    assert platform.call("gp", "GET", f"/v1/people/{NHS}/priorities").status_code == 403  # another client: not 429
    assert platform.call(None, "GET", "/readyz").status_code == 200


def test_no_response_carries_what_scopes_or_sharing_forbid(platform):
    """Random clients try random ids and NHS numbers: nothing leaks past scopes or consent."""
    people = {NHS: None, OTHER: None}
    for number in people:
        r = platform.call("gp", "POST", "/v1/plans", json=dict(PLAN, nhs_number=number))
        people[number] = r.json()["id"]
        platform.portfolio_shows(number, lambda d: d["plan"])
    platform.call("admin", "PUT", f"/v1/people/{NHS}/sharing",
                  json={"withhold": {"hospital": ["plans"], "social_care": ["plans"]}})
    withheld = {NHS: {"hospital", "social_care"}, OTHER: set()}
    plan_owner = {plan_id: number for number, plan_id in people.items()}

    numbers = st.sampled_from([NHS, OTHER, with_check_digit("401023213"), "1234567890", "94347659"])
    ids = st.one_of(st.sampled_from(list(plan_owner)), st.uuids().map(str), st.text(min_size=1, max_size=12))

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(role=st.sampled_from(ROLE_NAMES), number=numbers, plan_id=ids,
           kind=st.sampled_from(["portfolio", "priorities", "plan", "plans"]))
    def probe(role, number, plan_id, kind):
        path = {"portfolio": f"/v1/people/{number}/portfolio", "priorities": f"/v1/people/{number}/priorities",
                "plan": f"/v1/plans/{requests.utils.quote(plan_id, safe='')}",
                "plans": f"/v1/plans?nhs_number={number}"}[kind]
        r = platform.call(role, "GET", path)
        assert r.status_code < 500, (path, r.text)
        if r.status_code != 200:
            return
        body = r.json()
        if kind in ("portfolio", "priorities"):
            assert allowed(role, "portfolio:read")
            hidden = role in withheld.get(number, set())
            items = body["priorities"] if kind == "portfolio" else body["items"]
            if hidden:
                assert body["withheld"] == ["plans"]
                assert all(s["service"] != "plans" for i in items for s in i["sources"])
                if kind == "portfolio":
                    assert body["plan"] is None and body["plans"] == []
        elif kind == "plan":
            assert allowed(role, "plans:read")
            assert role not in withheld[plan_owner[body["id"]]]
        else:
            assert allowed(role, "plans:read") and role not in withheld.get(number, set())

    probe()
