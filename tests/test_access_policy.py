"""Issue 15: access is decided before anything is touched. A probe suite over one small world of
three people, eight clients of nine organisations, care relationships of every kind (held, declared,
expired, emergency) and sharing preferences: every route, every caller, the subject named in
another place than the one used, repeated parameters, every list filter, HEAD and OPTIONS, and
writes to what is withheld, checked in the services afterwards.

The oracle is written here from the world's own facts, not read from the gateway: a 2xx answer may
name a person only to an organisation with a relationship with them, and a resource only to a caller
whose role, scopes and the person's preferences allow its initiative; a refused write leaves every
service's outbox (every change writes one row) exactly as it was.
"""
from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select, text

from bodies import COURSE, notional_budget, plan_body
from calls import if_match
from coproduction.auth import ROLES
from coproduction.nhs_number import with_check_digit
from harness import Platform

SERVICES = ("plans", "budgets", "decisions", "groups")
A, B, C = (with_check_digit(f"98100000{n}") or with_check_digit(f"98100001{n}") for n in (1, 3, 5))
PEOPLE = (A, B, C)
TODAY = date.today()
PRIORITY = {"text": "Keep walking the dog", "category": "physical_activity"}
LIVING_WELL = dict(COURSE, title="Living well", capacity=30, starts_on=(TODAY + timedelta(days=20)).isoformat())
#: the clients beyond the harness's one per role: (name, organisation, role)
MORE_CLIENTS = {"gp2": ("GP2", "gp"), "hospital2": ("HOS2", "hospital"), "social_care2": ("SOC2", "social_care"),
                "community2": ("COM2", "community")}
PREFERENCES = {A: {"hospital": ["budgets"], "community": ["plans"]},
               B: {"community": ["groups"], "hospital": ["plans"]},
               C: {"hospital": ["decisions"]}}


def ok(r, status=(200, 201)):
    assert r.status_code in ((status,) if isinstance(status, int) else status), f"{r.request.method} " \
        f"{r.request.url}: {r.status_code} {r.text[:500]}"
    return r.json()


class World:
    """What is true, as the test made it: the oracle asks this, never the gateway."""

    def __init__(self, p: Platform):
        self.p = p
        self.org = {"hospital": "ORGHOS", "gp": "ORGGP", "social_care": "ORGSOC", "community": "ORGCOM",
                    "admin": "ORGADM", **{k: org for k, (org, _role) in MORE_CLIENTS.items()}}
        self.role = {k: k for k in ROLES} | {k: role for k, (_org, role) in MORE_CLIENTS.items()}
        self.related: dict[str, set[str]] = {}   # organisation -> people
        self.ids: dict[str, tuple[str, str]] = {}  # resource id -> (person, initiative)
        self.refs: dict[tuple[str, str], str] = {}  # (person, kind) -> resource id
        self.prefs = {nhs: dict(withhold) for nhs, withhold in PREFERENCES.items()}

    def relate(self, client: str, nhs: str) -> None:
        self.related.setdefault(self.org[client], set()).add(nhs)

    def keep(self, nhs: str, initiative: str, kind: str, resource: dict) -> str:
        self.ids[resource["id"]] = (nhs, initiative)
        self.refs[(nhs, kind)] = resource["id"]
        return resource["id"]

    def may_see_person(self, client: str, nhs: str) -> bool:
        return self.role[client] == "admin" or nhs in self.related.get(self.org[client], set())

    def may_see(self, client: str, nhs: str, initiative: str) -> bool:
        role = self.role[client]
        if role == "admin":
            return True
        return (self.may_see_person(client, nhs) and f"{initiative}:read" in ROLES[role]
                and initiative not in self.prefs[nhs].get(role, []))

    def leaks(self, client: str, body: str) -> list[str]:
        found = [f"person {n}" for n in PEOPLE if n in body and not self.may_see_person(client, n)]
        found += [f"{initiative} {rid} of {nhs}" for rid, (nhs, initiative) in self.ids.items()
                  if rid in body and not self.may_see(client, nhs, initiative)]
        return found

    def outboxes(self) -> dict[str, int]:
        counts = {}
        for name in SERVICES:
            db = self.p.database(name)
            with db.session() as s:
                counts[name] = s.execute(text("SELECT count(*) FROM outbox")).scalar_one()
            db.dispose()
        return counts


def build(p: Platform) -> World:
    from gateway import clients
    w = World(p)
    db = p.database("gateway")
    for key, (org, role) in MORE_CLIENTS.items():
        _id, p.tokens[key] = clients.create(db, f"test {key}", org, role)
    db.dispose()
    course = ok(p.call("community", "POST", "/v1/courses", json=LIVING_WELL))
    w.course = course["id"]
    for nhs, gp, social, community in ((A, "gp", "social_care", "community"), (B, "gp2", "social_care2", "community"),
                                       (C, "gp", None, None)):
        plan = ok(p.call(gp, "POST", "/v1/plans", json=plan_body(nhs, PRIORITY)))
        w.keep(nhs, "plans", "plan", plan)
        w.relate(gp, nhs)
        if social:
            budget = ok(p.call(social, "POST", "/v1/budgets", json=notional_budget(
                nhs, plan["id"], 1000, priorities=[PRIORITY])))
            w.keep(nhs, "budgets", "budget", budget)
            w.relate(social, nhs)
        if community:
            place = ok(p.call(community, "POST", f"/v1/courses/{w.course}/enrolments",
                              json={"nhs_number": nhs, "referral_source": "self", "priorities": [PRIORITY]}))
            w.keep(nhs, "groups", "enrolment", place)
            w.relate(community, nhs)
    p.admit(A, "hospital")
    w.relate("hospital", A)
    decision = ok(p.call("hospital", "POST", "/v1/decisions", json={
        "nhs_number": A, "setting": "inpatient", "question": "Which tablet?", "priorities": [PRIORITY],
        "options": [{"label": "A new tablet"}, {"label": "No change", "is_no_change": True}]}))
    w.keep(A, "decisions", "decision", decision)
    expired = p.admit(B, "hospital2")  # then over: an expired admission is no relationship
    db = p.database("gateway")
    with db.session() as s:
        s.execute(text("UPDATE care_relationships SET expires_at = started_at - interval '1 hour' WHERE id = :id"),
                  {"id": expired["id"]})
    db.dispose()
    p.admit(C, "hospital2", kind="emergency")
    w.relate("hospital2", C)
    for nhs, withhold in PREFERENCES.items():
        ok(p.call("admin", "PUT", f"/v1/people/{nhs}/sharing", json={"withhold": withhold}))
    for nhs in PEOPLE:
        kinds = {k for (n, k) in w.refs if n == nhs}
        p.portfolio_shows(nhs, lambda d, kinds=kinds: ("plan" not in kinds or d["plan"])
                          and ("budget" not in kinds or d["budget"]) and ("enrolment" not in kinds or d["groups"])
                          and ("decision" not in kinds or d["decisions"]))
    return w


@pytest.fixture(scope="module")
def world(make_module_platform):
    p = make_module_platform(services=SERVICES).start()
    return build(p)


def reads(w: World, nhs: str) -> list[str]:
    ref = lambda kind: w.refs.get((nhs, kind)) or w.refs[(A, kind)]  # noqa: E731  (another's, if none)
    return [
        *(f"/v1/people/{nhs}/{part}" for part in ("portfolio", "priorities", "admission-summary", "fhir", "changes",
                                                  "access-log", "sharing", "sharing/history", "relationships")),
        *(f"/v1/{kind}?nhs_number={nhs}" for kind in ("plans", "budgets", "decisions", "enrolments")),
        f"/v1/plans?nhs_number={nhs}&status=draft", f"/v1/budgets?nhs_number={nhs}&status=requested",
        f"/v1/decisions?nhs_number={nhs}&setting=inpatient", f"/v1/enrolments?nhs_number={nhs}&status=enrolled",
        f"/v1/enrolments?course_id={w.course}", f"/v1/enrolments?course_id={w.course}&status=enrolled",
        "/v1/changes", "/v1/changes?types=decision.*", "/v1/changes?types=budget.*,plan.*",
        f"/v1/plans/{ref('plan')}", f"/v1/plans/{ref('plan')}/fhir", f"/v1/plans/{ref('plan')}/versions",
        f"/v1/budgets/{ref('budget')}", f"/v1/budgets/{ref('budget')}/line-items",
        f"/v1/budgets/{ref('budget')}/changes", f"/v1/decisions/{ref('decision')}",
        f"/v1/enrolments/{ref('enrolment')}", "/v1/relationships/review", f"/v1/audit?nhs_number={nhs}",
        "/v1/subscriptions", "/v1/reports/coproduction", f"/people/{nhs}",
    ]


def writes(w: World, nhs: str) -> list[tuple[str, str, dict | None]]:
    ref = lambda kind: w.refs.get((nhs, kind)) or w.refs[(A, kind)]  # noqa: E731
    out = [("POST", "/v1/plans", plan_body(nhs, PRIORITY)),
           ("PATCH", f"/v1/plans/{ref('plan')}", {"conditions": ["asthma"]}),
           ("POST", f"/v1/plans/{ref('plan')}/agree", {"agreed_by": "Dr A", "person_agreed": True}),
           ("PUT", f"/v1/people/{nhs}/sharing", {"withhold": w.prefs[nhs]}),  # the same again
           ("POST", f"/v1/budgets/{ref('budget')}/start-planning", {}),
           ("POST", f"/v1/decisions/{ref('decision')}/defer", {"reason": "To talk it over", "revisit_by":
                                                             (TODAY + timedelta(days=7)).isoformat()}),
           ("POST", f"/v1/enrolments/{ref('enrolment')}/attendance", {"session_no": 1, "attended": True})]
    if (nhs, "budget") in w.refs:
        out.append(("POST", "/v1/budgets", {"nhs_number": nhs, "plan_id": ref("plan"), "annual_pence": 500,
                                            "holdings": [{"type": "notional", "pence": 500}], "priorities": []}))
    if (nhs, "enrolment") in w.refs:
        out.append(("POST", f"/v1/courses/{w.course}/enrolments", {"nhs_number": nhs, "referral_source": "self",
                                                                  "priorities": []}))
    if (nhs, "decision") in w.refs:
        out.append(("POST", "/v1/decisions", {"nhs_number": nhs, "setting": "primary", "question": "Which?",
                                              "priorities": [], "options": [{"label": "One"},
                                                                            {"label": "No change", "is_no_change": True}]}))
    return out


def other_than(nhs: str) -> str:
    return PEOPLE[(PEOPLE.index(nhs) + 1) % len(PEOPLE)]


def send(w: World, client: str, method: str, path: str, body=None, mutation: str = "none", headers=None):
    headers = dict(headers or {})
    kwargs = {}
    other = other_than(next((n for n in PEOPLE if n in path or n in json.dumps(body or {})), A))
    sep = "&" if "?" in path else "?"
    if mutation == "query_other":
        path += f"{sep}nhs_number={other}"
    elif mutation == "repeat" and "nhs_number=" in path:
        path += f"&nhs_number={other}"
    elif mutation == "body_other" and method in ("GET", "HEAD", "DELETE"):
        kwargs["data"] = json.dumps({"nhs_number": other})
        headers["Content-Type"] = "application/json"
    if body is not None and "data" not in kwargs:
        if mutation == "text_body":
            kwargs["data"] = json.dumps(body)
            headers["Content-Type"] = "text/plain"
        else:
            kwargs["json"] = body
    if mutation == "lower_bearer":
        headers["Authorization"] = f"bearer {w.p.tokens[client]}"
    headers.setdefault("If-Match", "*")
    if path.startswith("/people/"):  # a page: signed in with the session cookie, not a token
        return page_session(w, client).request(method, w.p.url + path, headers=headers, timeout=30, **kwargs)
    return w.p.call(client, method, path, headers=headers, **kwargs)


_sessions: dict[str, requests.Session] = {}


def page_session(w: World, client: str) -> requests.Session:
    if client not in _sessions:
        s = requests.Session()
        form = s.get(w.p.url + "/login").text
        csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        r = s.post(w.p.url + "/login", data={"token": w.p.tokens[client], "csrf": csrf}, allow_redirects=False)
        assert r.status_code == 303, r.text
        _sessions[client] = s
    return _sessions[client]


CLIENTS = ["hospital", "gp", "social_care", "community", "admin", *MORE_CLIENTS]
MUTATIONS = ["none", "query_other", "repeat", "body_other", "lower_bearer", "text_body"]


def check_read(w: World, client: str, method: str, path: str, mutation: str) -> None:
    r = send(w, client, method, path, mutation=mutation)
    assert r.status_code < 500, (client, method, path, mutation, r.status_code, r.text[:300])
    if r.status_code < 300:
        leaked = w.leaks(client, r.text + json.dumps(dict(r.headers)))
        assert leaked == [], (client, method, path, mutation, leaked)
    if method == "HEAD" and r.status_code >= 400:
        assert "ETag" not in r.headers, (client, path)


def check_write(w: World, client: str, method: str, path: str, body, mutation: str) -> None:
    before = w.outboxes()
    r = send(w, client, method, path, body=body, mutation=mutation)
    assert r.status_code < 500, (client, method, path, mutation, r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert w.outboxes() == before, (client, method, path, mutation, r.status_code, "a refused write left a change")
    else:
        leaked = w.leaks(client, r.text)
        assert leaked == [], (client, method, path, mutation, leaked)
        nhs = next((n for n in PEOPLE if n in path or n in json.dumps(body or {})), None)
        if nhs is not None or path.split("/")[2] in ("plans", "budgets", "decisions", "enrolments"):
            owner = nhs or w.ids.get(path.split("/")[3], (None,))[0]
            assert owner is None or w.may_see_person(client, owner), (client, method, path, "wrote without a relationship")


def test_every_route_for_every_caller_and_method(world):
    """The whole matrix once, deterministic: every read with GET, HEAD and OPTIONS, every caller."""
    for nhs in PEOPLE:
        for path in reads(world, nhs):
            for client in CLIENTS:
                for method in ("GET", "HEAD", "OPTIONS"):
                    check_read(world, client, method, path, "none")


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_probes_find_nothing_the_caller_may_not_see(world, data):
    nhs = data.draw(st.sampled_from(PEOPLE), label="person")
    client = data.draw(st.sampled_from(CLIENTS), label="client")
    mutation = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    if data.draw(st.booleans(), label="write"):
        method, path, body = data.draw(st.sampled_from(writes(world, nhs)), label="write")
        check_write(world, client, method, path, body, mutation)
    else:
        path = data.draw(st.sampled_from(reads(world, nhs)), label="read")
        check_read(world, client, data.draw(st.sampled_from(["GET", "HEAD"]), label="method"), path, mutation)


SHAREABLE = ("plans", "budgets", "decisions", "groups")
DECLARING = {"hospital2": ("admission", "emergency"), "gp2": ("emergency",), "social_care2": ("emergency",)}


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_generated_preferences_and_relationships_hold_on_every_read(world, data):
    """Hypothesis makes the preferences and the relationships too: a person's withholdings for every
    role, and admissions or emergency access declared by other organisations; every read by every
    client must then show exactly what the oracle allows, and nothing once they are ended."""
    p = world.p
    nhs = data.draw(st.sampled_from(PEOPLE), label="person")
    withhold = data.draw(st.fixed_dictionaries({role: st.lists(st.sampled_from(SHAREABLE), unique=True)
                                                for role in ("hospital", "gp", "social_care", "community")}),
                         label="preferences")
    declared = data.draw(st.lists(st.sampled_from([(c, k) for c, kinds in DECLARING.items() for k in kinds]),
                                  unique_by=lambda d: d[0], max_size=3), label="relationships")
    ok(p.call("admin", "PUT", f"/v1/people/{nhs}/sharing", json={"withhold": withhold}))
    world.prefs[nhs] = {role: initiatives for role, initiatives in withhold.items() if initiatives}
    made, before = [], {org: set(people) for org, people in world.related.items()}
    try:
        for client, kind in declared:
            made.append((client, p.admit(nhs, client, kind=kind)))
            world.relate(client, nhs)
        for path in data.draw(st.lists(st.sampled_from(reads(world, nhs)), min_size=3, max_size=8), label="reads"):
            for client in CLIENTS:
                check_read(world, client, "GET", path, "none")
    finally:
        for client, relationship in made:
            ok(p.call(client, "DELETE", f"/v1/people/{nhs}/relationships/{relationship['id']}"))
        world.related = before
        ok(p.call("admin", "PUT", f"/v1/people/{nhs}/sharing", json={"withhold": PREFERENCES[nhs]}))
        world.prefs[nhs] = dict(PREFERENCES[nhs])
    for client, _relationship in made:  # ended: nothing of the person any more, unless held otherwise
        if not world.may_see_person(client, nhs):
            assert p.call(client, "GET", f"/v1/people/{nhs}/portfolio").status_code == 403


# -- the defects found by probing the running platform, one test each -----------------------------
def audit_rows(p: Platform, **where):
    from gateway.models import audit_log
    db = p.database("gateway")
    with db.session() as s:
        stmt = select(audit_log).where(*(getattr(audit_log.c, k) == v for k, v in where.items()))
        rows = s.execute(stmt.order_by(audit_log.c.id)).mappings().all()
    db.dispose()
    return rows


def test_a_get_is_decided_on_its_query_and_never_on_a_body(world):
    p = world.p
    budget = world.refs[(A, "budget")]
    before = len(audit_rows(p, nhs_number=C))
    r = p.call("hospital", "GET", f"/v1/budgets?nhs_number={A}", data=json.dumps({"nhs_number": C}),
               headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and budget not in r.text
    chunked = p.call("hospital", "GET", f"/v1/budgets?nhs_number={A}", data=iter([json.dumps({"nhs_number": C}).encode()]),
                     headers={"Content-Type": "application/json"})  # no Content-Length: Transfer-Encoding
    assert chunked.status_code == 400 and budget not in chunked.text
    r = p.call("hospital", "GET", f"/v1/budgets?nhs_number={A}")
    assert r.status_code == 403 and budget not in r.text  # A withheld budgets from hospitals
    assert audit_rows(p, nhs_number=A)[-1]["resource"] == f"/v1/budgets?nhs_number={A}"
    assert len(audit_rows(p, nhs_number=C)) == before  # the body's person was never the subject
    r = p.call("hospital", "GET", f"/v1/budgets?nhs_number={A}&nhs_number={C}")
    assert r.status_code == 422 and "nhs_number" in r.json()["errors"]


def test_a_course_roster_is_checked_person_by_person(world):
    p = world.p
    assert p.call("hospital", "GET", f"/v1/enrolments?course_id={world.course}").status_code == 403
    assert p.call("community2", "GET", f"/v1/enrolments?course_id={world.course}").json()["items"] == []
    b_before = len(audit_rows(p, nhs_number=B))
    roster = ok(p.call("community", "GET", f"/v1/enrolments?course_id={world.course}"))
    assert [i["nhs_number"] for i in roster["items"]] == [A]  # B withheld groups from course providers
    assert roster["withheld"] == 1 and world.refs[(B, "enrolment")] not in json.dumps(roster)
    assert audit_rows(p, nhs_number=A)[-1]["resource"] == f"/v1/enrolments?course_id={world.course}"
    assert len(audit_rows(p, nhs_number=B)) == b_before  # not shown: not audited as shown


def test_refused_writes_never_reach_the_service(world):
    p = world.p
    d = with_check_digit("981000020") or with_check_digit("981000021")
    plan = ok(p.call("gp", "POST", "/v1/plans", json=plan_body(d, PRIORITY)))
    budget = ok(p.call("social_care", "POST", "/v1/budgets", json=notional_budget(d, plan["id"], 1000, priorities=[])))
    ok(p.call("gp", "PUT", f"/v1/people/{d}/sharing", json={"withhold": {"social_care": ["budgets"]},
                                                             "on_behalf_of": "person"}))
    before = world.outboxes()
    r = p.call("social_care", "POST", f"/v1/budgets/{budget['id']}/start-planning", headers=if_match(1),
               json={})
    assert r.status_code == 403, r.text
    r = p.call("social_care", "POST", "/v1/budgets", json=notional_budget(d, plan["id"], 500, priorities=[]))
    assert r.status_code == 403, r.text
    assert world.outboxes() == before
    held = ok(p.call("admin", "GET", f"/v1/budgets?nhs_number={d}"))["items"]
    assert [(b["id"], b["status"], b["version"]) for b in held] == [(budget["id"], "requested", 1)]


def test_head_and_options_are_decided_like_a_get(world):
    p = world.p
    budget = world.refs[(A, "budget")]
    for method in ("HEAD", "OPTIONS"):
        r = p.call("hospital", method, f"/v1/budgets/{budget}")
        assert r.status_code == 403 and "ETag" not in r.headers, (method, r.headers)
    assert p.call("social_care", "HEAD", f"/v1/budgets/{budget}").headers["ETag"]


def whole_access_log(p: Platform, client: str, nhs: str) -> dict:
    """Every page of a person's access log as the client sees it: the items, and what was withheld."""
    items, withheld, after = [], 0, 0
    while True:
        page = ok(p.call(client, "GET", f"/v1/people/{nhs}/access-log?limit=1000&after={after}"))
        items += page["items"]
        withheld += page["withheld"]
        if not page["next_cursor"]:
            return {"items": items, "withheld": withheld}
        after = page["next_cursor"]


def test_the_access_log_shows_a_role_only_what_it_may_see(world):
    p = world.p
    budget = world.refs[(A, "budget")]
    ok(p.call("social_care", "GET", f"/v1/budgets/{budget}"))
    ok(p.call("gp", "GET", f"/v1/people/{A}/portfolio", headers={"X-Purpose": f"about {C} and {world.refs[(C, 'plan')]}"}))
    log = whole_access_log(p, "hospital", A)
    assert budget not in json.dumps(log) and log["withheld"] >= 1
    assert C not in json.dumps(log) and world.refs[(C, "plan")] not in json.dumps(log)
    assert "about [another person] and [withheld]" in {i["purpose"] for i in log["items"]}
    full = whole_access_log(p, "social_care", A)
    assert any(budget in i["resource"] for i in full["items"])


def test_only_the_practice_holding_the_plan_sets_preferences(world):
    p = world.p
    r = p.call("gp2", "PUT", f"/v1/people/{A}/sharing", json={"withhold": {}})
    assert r.status_code == 403  # gp2 has no relationship with A
    r = p.call("gp2", "PUT", f"/v1/people/{B}/sharing", json={"withhold": PREFERENCES[B],
                                                               "on_behalf_of": "representative",
                                                               "representative": "Mrs B, his daughter (LPA)"})
    assert r.status_code == 200 and r.json()["set_by"]["org"] == "GP2"
    r = p.call("gp", "PUT", f"/v1/people/{B}/sharing", json={"withhold": {}})
    assert r.status_code == 403  # a practice that does not hold B's plan cannot lift anything
    for client in ("hospital", "social_care"):
        assert p.call(client, "PUT", f"/v1/people/{A}/sharing", json={"withhold": {}}).status_code == 403
    assert ok(p.call("admin", "GET", f"/v1/people/{A}/sharing"))["withhold"] == PREFERENCES[A]
    history = ok(p.call("gp2", "GET", f"/v1/people/{B}/sharing/history"))["items"]
    assert history[0]["on_behalf_of"] == "representative" and history[0]["representative"].startswith("Mrs B")
    assert len(history) >= 2 and history[-1]["set_by"]["role"] == "admin"


def test_the_change_feed_honours_each_types_read_scope(world):
    p = world.p
    page = ok(p.call("social_care", "GET", "/v1/changes?types=decision.*&limit=1000"))
    assert page["items"] == [] and page["withheld"] >= 1  # A's decision: social care may not read decisions
    page = ok(p.call("social_care", "GET", "/v1/changes?limit=1000"))
    assert {e["type"].split(".")[0] for e in page["items"]} <= {"plan", "budget"}
    assert {e["subject"] for e in page["items"]} & {B, C} == set()  # only people it holds a budget of


def test_relationships_expire_and_emergency_access_is_flagged_and_reviewed(world):
    p = world.p
    r = p.call("hospital2", "GET", f"/v1/people/{B}/portfolio")  # its admission is over
    assert r.status_code == 403 and "declare the admission" in r.json()["detail"]
    ok(p.call("hospital2", "GET", f"/v1/people/{C}/portfolio", headers={"X-Purpose": "unconscious in ED"}))
    log = whole_access_log(p, "gp", C)["items"]
    flagged = [i for i in log if i["break_glass"] and i["org"] == "HOS2"]
    assert flagged and all(i["relationship"] == "emergency" for i in flagged)
    assert not [i for i in log if i["break_glass"] and i["relationship"] != "emergency"]
    review = ok(p.call("gp", "GET", "/v1/relationships/review"))["items"]
    # the generated-relationships test may have declared and ended others of HOS2's for C since
    mine = [i for i in review if i["nhs_number"] == C and i["org"] == "HOS2" and i["ended_at"] is None]
    assert len(mine) == 1 and mine[0]["break_glass"] and mine[0]["accesses"] >= 2 and mine[0]["reason"]
    assert C not in json.dumps(ok(p.call("gp2", "GET", "/v1/relationships/review")))  # gp2 does not hold C
    everyone = {i["nhs_number"] for i in ok(p.call("admin", "GET", "/v1/relationships/review"))["items"]}
    assert {A, B, C} <= everyone
    assert p.call("community", "GET", "/v1/relationships/review").status_code == 403
    r = p.call("community", "POST", f"/v1/people/{C}/relationships", json={"kind": "emergency",
                                                                            "reason": "Curious about him"})
    assert r.status_code == 403
    r = p.call("hospital", "POST", f"/v1/people/{C}/relationships", json={"kind": "admission",
                                                                           "reason": "Admitted to ward 7"})
    assert r.status_code == 422 and "encounter_id" in r.json()["errors"]


def test_unauthenticated_callers_put_nothing_of_theirs_in_an_access_log(world):
    p = world.p
    r = p.call(None, "GET", f"/v1/people/{A}/portfolio?note=I-am-his-lawyer",
               headers={"X-Purpose": "legal claim against the hospital"})
    assert r.status_code == 401
    row = audit_rows(p, nhs_number=A)[-1]
    assert row["purpose"] == "unauthenticated" and row["resource"] == f"/v1/people/{A}/portfolio"


def test_bearer_is_read_in_any_letter_case(world):
    p = world.p
    for scheme in ("bearer", "BEARER", "BeArEr"):
        r = p.call(None, "GET", f"/v1/people/{A}/portfolio", headers={"Authorization": f"{scheme} {p.tokens['gp']}"})
        assert r.status_code == 200, (scheme, r.text)


def test_a_create_is_decided_on_the_body_it_forwards(world):
    p = world.p
    r = p.call("gp2", "POST", "/v1/plans", data=json.dumps({"nhs_number": A, "priorities": []}),
               headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = p.call("gp2", "POST", "/v1/plans", data='{"nhs_number": "%s", "nhs_number": "%s"}' % (B, A),
               headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "more than once" in r.json()["detail"]
    r = p.call("gp2", "POST", f"/v1/plans?nhs_number={B}", json={"nhs_number": A, "priorities": [PRIORITY]})
    assert r.status_code == 403  # decided on A, the person the body would store: gp2 has no relationship


def test_lone_surrogates_are_refused_like_nul(world):
    r = world.p.call("gp", "POST", "/v1/plans", data='{"nhs_number": "%s", "priorities": [{"text": "a\\ud800b", '
                     '"category": "other"}]}' % C, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "priorities.0.text" in r.json()["errors"], r.text
