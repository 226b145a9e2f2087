"""Bad input everywhere (reliability fault 8).

schemathesis runs the OpenAPI of every service and of the gateway against the real running platform
(PostgreSQL, RabbitMQ, the gateway's projection fed by the services' events), with every check it has
and every phase: the schema's examples, the coverage phase (boundary and schema-violating values of
each field), random fuzzing (valid and invalid data) and stateful sequences (links inferred from the
schemas: create, then read, change and act on what was created). The services' operations are also
sent through the gateway, which forwards them, so the proxy is tried with the same input.

hypothesis properties cover NHS numbers (every single-digit change and adjacent swap of a valid
number is refused, by the checker and by the API), event envelopes, the priority merge fed anything,
and JSON that is too large, nested too deeply or carries NUL characters.

What we promise: no 5xx anywhere, and no response that breaks its own documented schema.
RELIABILITY_SCALE=full (``make reliability``) sends many more examples; the default is a quick run.
"""
from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import Counter
from datetime import date, timedelta

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.engine import events, from_schema

from coproduction.auth import SCOPES, Caller, issue_service_token
from coproduction.events import REGISTRY, InvalidEvent, dumps, make_event, parse_event
from coproduction.nhs_number import is_valid, with_check_digit
from harness import Platform
from reliability_report import Row, record

SCALE = os.environ.get("RELIABILITY_SCALE", "small")
FULL = SCALE == "full"
SERVICES = ("plans", "budgets", "decisions", "groups")
#: random examples per operation (the examples and coverage phases add their own deterministic cases)
FUZZ_EXAMPLES = 100 if FULL else 3
#: stateful scenarios per API (each a chain of calls that follows what was created)
STATEFUL_EXAMPLES = 100 if FULL else 6
PROPERTY_EXAMPLES = 500 if FULL else 60
API_EXAMPLES = 100 if FULL else 6
#: a fixed seed keeps the quick run reproducible; the full run explores (BAD_INPUT_SEED to replay one)
SEED = int(os.environ.get("BAD_INPUT_SEED") or (random.randrange(2**31) if FULL else 8))

ADMIN = Caller(client_id="bad-input", name="bad input suite", org="ORGTEST", role="admin",
               scopes=frozenset(SCOPES))
#: the person loaded with a plan, budget, course and decisions, so the gateway's reads have data to show
PERSON = with_check_digit("943476591")

REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "412", "413", "415", "422", "428", "429"]


def _valid_nhs_numbers():
    return st.from_regex(r"\A[0-9]{9}\Z").map(with_check_digit).filter(bool)


# An NHS number in our OpenAPI documents is `format: nhs-number`; a regex cannot hold the check digit,
# so tell schemathesis how to make a valid one (sometimes the loaded person's, so reads find data).
schemathesis.openapi.format("nhs-number", st.one_of(st.just(PERSON), _valid_nhs_numbers()))


def config(*, coverage: bool) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "continue-on-failure": True,
        "generation": {"mode": "all", "max-examples": FUZZ_EXAMPLES},
        "checks": {
            # 412 (stale If-Match) and 413 (over the size limit) are refusals too
            "negative_data_rejection": {"expected-statuses": REFUSALS},
            # a well-formed request may still break a domain rule (422 naming it), or conflict (409)
            "positive_data_acceptance": {"expected-statuses": [
                "2xx", "401", "403", "404", "409", "412", "422", "428", "429"]},
            "missing_required_header": {"expected-statuses": REFUSALS},
        },
        "phases": {
            "coverage": {"enabled": coverage},
            "stateful": {"generation": {"max-examples": STATEFUL_EXAMPLES}},
        },
    })


@pytest.fixture(scope="module")
def running(make_module_platform):
    from bootstrap.demo import run as load_story
    p = make_module_platform(services=SERVICES).start()
    load_story(p.url, p.tokens, nhs=PERSON, say=lambda _line: None)
    return p


def service_header(p: Platform, service: str):
    secret = p.env["SERVICE_TOKEN_SECRET"]
    return lambda: "Bearer " + issue_service_token(ADMIN, service, secret)  # 60 s: a fresh one per call


def client_header(p: Platform, role: str = "admin"):
    token = p.tokens[role]
    return lambda: f"Bearer {token}"


def load(p: Platform, target: str, owner: str):
    """The OpenAPI of `owner`, sent to `target` (the service itself, or the gateway in front of it).
    The quick run leaves the (long, deterministic) coverage phase out through the gateway: the
    service's own run has it, and the full run has it both ways."""
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{p.ports[owner]}/openapi.json",
                                           config=config(coverage=FULL or target == owner))
    if target != owner:
        # a service's event feed is read from the service itself (by rebuilds): no gateway route has it
        schema = schema.exclude(path="/v1/events")
    header = client_header(p) if target == "gateway" else service_header(p, target)

    @schema.auth(refresh_interval=None)
    class _Bearer:
        def get(self, case, context):
            return header()

        def set(self, case, data, context):
            case.headers = case.headers or {}
            case.headers["Authorization"] = data
            # writes need If-Match; "*" lets the fuzzer reach every transition (412/428 are tested elsewhere)
            case.headers.setdefault("If-Match", "*")

    schema.config.update(base_url=p.url if target == "gateway" else f"http://127.0.0.1:{p.ports[owner]}")
    return schema


class Outcome:
    def __init__(self):
        self.failures: dict[tuple, list] = {}
        self.errors: list[str] = []
        self.statuses: Counter = Counter()
        self.cases: Counter = Counter()
        self.inferred_links = 0
        self.stop_reason = None

    def add_recorder(self, phase, recorder):
        self.cases[str(phase)] += len(recorder.cases)
        for interaction in recorder.interactions.values():
            if interaction.response is not None:
                self.statuses[interaction.response.status_code] += 1
        for checks in recorder.checks.values():
            for check in checks:
                if check.failure_info is not None:
                    failure = check.failure_info.failure
                    key = (recorder.label, check.name, failure.title)
                    self.failures.setdefault(key, []).append(check.failure_info)

    def report(self) -> str:
        lines = []
        for (label, check, title), infos in sorted(self.failures.items()):
            first = infos[0]
            lines.append(f"{label}: {check}: {title} (x{len(infos)})\n    "
                         + first.failure.message.strip().replace("\n", "\n    ")[:1500]
                         + f"\n    reproduce: {first.code_sample.strip()[:1500]}")
        lines += [f"error: {e}" for e in self.errors]
        return "\n".join(lines)


def run_schemathesis(schema) -> Outcome:
    out = Outcome()
    for event in from_schema(schema).execute():
        if isinstance(event, (events.ScenarioFinished, events.FuzzScenarioFinished)):
            out.add_recorder(getattr(event, "phase", "fuzz"), event.recorder)
        elif isinstance(event, events.NonFatalError):
            out.errors.append(f"{event.label}: {event.info.title}: {event.info.message}"[:2000])
        elif isinstance(event, events.FatalError):
            out.errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.PhaseStarted) and isinstance(event.payload, events.StatefulPhasePayload):
            out.inferred_links = event.payload.transitions_total
        elif isinstance(event, events.EngineFinished):
            out.stop_reason = event.stop_reason
            for failure in event.failures:
                out.errors.append(f"after the run: {failure.title}: {failure.message}"[:2000])
    return out


TOTALS = Counter()
TARGETS = [*[(s, s) for s in SERVICES], ("gateway", "gateway"), *[("gateway", s) for s in SERVICES]]


@pytest.mark.parametrize(("target", "owner"), TARGETS,
                         ids=[owner if target == owner else f"{owner}-through-gateway" for target, owner in TARGETS])
def test_openapi_holds_under_schemathesis(running, target, owner):
    """Every check, every phase: no 5xx, no response off its schema, no bad input taken."""
    started = time.monotonic()
    out = run_schemathesis(load(running, target, owner))
    server_errors = sum(n for status, n in out.statuses.items() if status >= 500)
    TOTALS.update(requests=sum(out.statuses.values()), server_errors=server_errors,
                  failures=sum(len(v) for v in out.failures.values()), targets=1,
                  seconds=round(time.monotonic() - started))
    assert not out.failures and not out.errors, (
        f"schemathesis against {owner} (sent to {target}), seed {SEED}:\n{out.report()}")
    # it really ran: requests went out, some were accepted, stateful chains were followed
    assert sum(out.statuses.values()) > 50, out.statuses
    assert sum(n for status, n in out.statuses.items() if 200 <= status < 300) > 0, out.statuses
    assert server_errors == 0, out.statuses
    assert out.cases.get("stateful", 0) > 0 and out.inferred_links > 0, (out.cases, out.inferred_links)
    assert str(out.stop_reason) == "completed", out.stop_reason


# -- NHS numbers ---------------------------------------------------------------------------------
def single_digit_changes(nhs: str):
    for i, digit in enumerate(nhs):
        for other in "0123456789":
            if other != digit:
                yield nhs[:i] + other + nhs[i + 1:]


def adjacent_swaps(nhs: str):
    for i in range(len(nhs) - 1):
        if nhs[i] != nhs[i + 1]:  # equal digits swap into the same number
            yield nhs[:i] + nhs[i + 1] + nhs[i] + nhs[i + 2:]


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(_valid_nhs_numbers())
def test_every_single_digit_change_and_adjacent_swap_of_an_nhs_number_is_refused(nhs):
    assert is_valid(nhs)
    changed = list(single_digit_changes(nhs))
    swapped = list(adjacent_swaps(nhs))
    assert len(changed) == 90
    assert [n for n in changed if is_valid(n)] == []
    assert [n for n in swapped if is_valid(n)] == []


def test_nhs_number_checker_against_every_nine_digit_prefix_of_a_block():
    """Exhaustive over 100,000 numbers: the check digit is the one the modulus 11 rule gives, and the
    prefixes whose remainder would need a check digit of 10 have no valid number at all."""
    for n in range(943_400_000, 943_500_000):
        first_nine = str(n)
        total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1)))
        expected = (11 - total % 11) % 11
        valid = [first_nine + d for d in "0123456789" if is_valid(first_nine + d)]
        assert valid == ([] if expected == 10 else [first_nine + str(expected)]), first_nine


def _mutations():
    return st.sampled_from(["change", "swap"])


def _mutate(nhs: str, how: str, pick: int) -> str | None:
    options = list(single_digit_changes(nhs)) if how == "change" else list(adjacent_swaps(nhs))
    return options[pick % len(options)] if options else None


def _creates(nhs: str, plan_id: str, course_id: str) -> list[tuple[str, dict]]:
    today = date.today()
    priority = {"text": "Keep walking the dog", "category": "physical_activity"}
    return [
        ("/v1/plans", {"nhs_number": nhs, "conditions": ["asthma"], "priorities": [priority],
                       "next_review_date": (today + timedelta(days=90)).isoformat()}),
        ("/v1/budgets", {"nhs_number": nhs, "plan_id": plan_id, "annual_pence": 1000,
                         "holdings": [{"type": "notional", "pence": 1000}], "priorities": [priority]}),
        ("/v1/decisions", {"nhs_number": nhs, "setting": "primary", "question": "Which inhaler?",
                           "priorities": [priority],
                           "options": [{"label": "A new inhaler"}, {"label": "No change", "is_no_change": True}]}),
        (f"/v1/courses/{course_id}/enrolments", {"nhs_number": nhs, "referral_source": "self",
                                                  "priorities": [priority]}),
    ]


@pytest.fixture(scope="module")
def person_refs(running):
    """A plan and a course to refer to, so a create fails on the NHS number and nothing else."""
    plan = running.call("admin", "GET", f"/v1/plans?nhs_number={PERSON}").json()["items"][0]
    r = running.call("admin", "POST", "/v1/courses", json={
        "programme": "expert_patients", "title": "Living well", "sessions": 6, "capacity": 500,
        "starts_on": (date.today() + timedelta(days=30)).isoformat(),
        "tutors": [{"name": "Sam Lee", "role": "lay_tutor"}]})
    assert r.status_code == 201, r.text
    return plan["id"], r.json()["id"]


def test_a_changed_nhs_number_is_a_422_naming_nhs_number_through_the_api(running, person_refs):
    plan_id, course_id = person_refs

    @settings(max_examples=API_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(nhs=_valid_nhs_numbers(), how=_mutations(), pick=st.integers(min_value=0, max_value=10_000))
    def check(nhs, how, pick):
        wrong = _mutate(nhs, how, pick)
        if wrong is None:
            return
        for path, body in _creates(wrong, plan_id, course_id):
            r = running.call("admin", "POST", path, json=body)
            assert r.status_code == 422, (path, wrong, r.status_code, r.text)
            assert r.headers["Content-Type"] == "application/problem+json"
            assert "nhs_number" in r.json()["errors"], (path, r.json())
        for path in (f"/v1/people/{wrong}/portfolio", f"/v1/people/{wrong}/admission-summary"):
            r = running.call("admin", "GET", path)
            assert r.status_code == 422 and "nhs_number" in r.json()["errors"], (path, r.text)

    check()
    # the same bodies with a valid number are taken: the refusals above were the number's alone
    nhs = with_check_digit("401023213")
    for path, body in _creates(nhs, plan_id, course_id):
        if path == "/v1/budgets":
            body["plan_id"] = plan_id  # agreed against this person's own plan
        r = running.call("admin", "POST", path, json=body)
        assert r.status_code == 201, (path, r.status_code, r.text)
        if path == "/v1/plans":
            plan_id = r.json()["id"]


# -- event envelopes -----------------------------------------------------------------------------
SAMPLE_DATA = {}


def _samples():
    if not SAMPLE_DATA:
        import importlib
        for service in SERVICES:
            module = importlib.import_module(f"services.{service}.events")
            for type_, data in module.SAMPLES.items():
                SAMPLE_DATA[type_] = (service, data)
    return SAMPLE_DATA


@st.composite
def made_events(draw):
    type_ = draw(st.sampled_from(sorted(REGISTRY)))
    service, data = _samples()[type_]
    traceparent = draw(st.one_of(st.none(), st.from_regex(r"\A00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]\Z")))
    return make_event(source=service, type=type_, subject=draw(_valid_nhs_numbers()),
                      aggregate_id=draw(st.text("abcdef0123456789-", min_size=1, max_size=64)),
                      aggregate_version=draw(st.integers(min_value=1, max_value=2**53)), data=data,
                      traceparent=traceparent)


REQUIRED = ("specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema",
            "aggregateid", "aggregateversion", "data")
_not_text = st.one_of(st.none(), st.integers(), st.booleans(), st.lists(st.integers(), max_size=2),
                      st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
BAD_VALUES = {
    "specversion": st.one_of(_not_text, st.text().filter(lambda s: s != "1.0")),
    "id": st.one_of(_not_text, st.text(max_size=40).filter(lambda s: not _is_uuid(s))),
    "source": st.one_of(_not_text, st.text().filter(lambda s: not _matches(r"/services/[a-z]+", s))),
    "type": st.one_of(_not_text, st.text().filter(lambda s: not _matches(r"[a-z]+\.[a-z][a-z-]*", s))),
    "subject": st.one_of(_not_text, st.text(max_size=12).filter(lambda s: not is_valid(s)),
                         _valid_nhs_numbers().map(lambda n: n[::-1]).filter(lambda s: not is_valid(s))),
    "time": st.one_of(_not_text, st.just("2026-01-01T10:00:00"), st.just("yesterday"),
                      st.text(max_size=30).filter(lambda s: not _aware_iso(s))),
    "datacontenttype": st.one_of(_not_text, st.text().filter(lambda s: s != "application/json")),
    "dataschema": st.one_of(_not_text, st.text().filter(lambda s: not s.startswith("urn:coproduction:"))),
    "aggregateid": st.one_of(_not_text, st.just(""), st.text(min_size=65, max_size=80)),
    "aggregateversion": st.one_of(st.none(), st.integers(max_value=0), st.floats(allow_nan=False),
                                  st.text(max_size=5), st.just("1"), st.booleans()),
    "traceparent": st.one_of(st.integers(), st.text(max_size=60).filter(lambda s: not _matches(
        r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", s))),
    "data": st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers(), max_size=3)),
}


def _matches(pattern: str, s: str) -> bool:
    import re
    return re.fullmatch(pattern, s) is not None


def _is_uuid(s: str) -> bool:
    try:
        uuid.UUID(s)
        return True
    except (ValueError, AttributeError, TypeError):
        return False


def _aware_iso(s: str) -> bool:
    from datetime import datetime
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(made_events())
def test_every_event_make_event_builds_is_accepted(event):
    assert parse_event(dumps(event)) == json.loads(dumps(event))


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(made_events(), st.sampled_from(REQUIRED))
def test_an_envelope_missing_a_required_field_is_refused(event, field):
    del event[field]
    with pytest.raises(InvalidEvent):
        parse_event(dumps(event))


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(made_events(), st.data())
def test_an_envelope_with_a_field_spoilt_is_refused(event, data):
    field = data.draw(st.sampled_from(sorted(BAD_VALUES)), label="field")
    event[field] = data.draw(BAD_VALUES[field], label="value")
    with pytest.raises(InvalidEvent):
        parse_event(dumps(event))


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(made_events(), st.data())
def test_an_event_from_another_service_is_refused(event, data):
    kind = event["type"].split(".")[0]  # plan, budget, decision, group
    other = data.draw(st.sampled_from([s for s in SERVICES if not s.startswith(kind)]), label="source")
    event["source"] = f"/services/{other}"
    with pytest.raises(InvalidEvent):
        parse_event(dumps(event))


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.lists(st.integers(), max_size=3).map(lambda v: json.dumps(v).encode()),
                 st.sampled_from([b"null", b"1", b'"event"', b"[]", b"\xff\xfe", b"{", b"[" * 5000])))
def test_anything_that_is_not_an_envelope_object_is_refused(body):
    with pytest.raises(InvalidEvent):
        parse_event(body)


# -- the priority merge, with anything a service may hold ------------------------------------------
@st.composite
def held_priorities(draw):
    from gateway.priorities import Held
    from coproduction.events import EXPRESSED_BY, PRIORITY_CATEGORIES, PRIORITY_STATUSES
    priority = {
        "id": draw(st.sampled_from(["p1", "p2", "p3"]) | st.uuids().map(str)),
        "text": draw(st.text(min_size=1, max_size=80) | st.sampled_from(["the", "!!!", "Walk", "walking", "WALKS."])),
        "category": draw(st.sampled_from(PRIORITY_CATEGORIES[:3])),
        "expressed_by": draw(st.sampled_from(EXPRESSED_BY)),
        "status": draw(st.sampled_from(PRIORITY_STATUSES)),
        "rank": draw(st.none() | st.integers(1, 100)),
        "recorded_at": draw(st.sampled_from(["", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"])
                            | st.datetimes().map(lambda d: d.isoformat() + "Z")),
    }
    return Held(draw(st.sampled_from(SERVICES)), draw(st.sampled_from(["r1", "r2"])), priority,
                plan_rank=draw(st.none() | st.integers(1, 100)))


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(st.lists(held_priorities(), max_size=15))
def test_the_priority_merge_loses_nothing_whatever_the_services_hold(held):
    from gateway.priorities import PAST, merge
    merged = merge(held)
    items = merged["current"] + merged["past"]
    sources = [(s["service"], s["ref"], s["priority_id"]) for item in items for s in item["sources"]]
    assert sorted(sources) == sorted({(h.service, h.ref, h.priority["id"]) for h in held})  # each once
    assert [i["position"] for i in merged["current"]] == list(range(1, len(merged["current"]) + 1))
    assert all(i["status"] not in PAST for i in merged["current"])
    assert all(i["status"] in PAST for i in merged["past"])
    assert {i["id"] for i in items} <= {h.priority["id"] for h in held}


# -- too large, too deep -------------------------------------------------------------------------
def _bodies(limit: int) -> dict[str, bytes]:
    deep = 10_000
    return {
        "nested arrays": b"[" * deep + b"]" * deep,
        "nested objects": b'{"a":' * deep + b"1" + b"}" * deep,
        "nested, unclosed": b'{"nhs_number":' + b"[" * deep,
        "nested in a field": b'{"nhs_number": "9434765919", "priorities": ' + b"[" * deep + b"]" * deep + b"}",
        "over the size limit": json.dumps({"conditions": ["x" * 1000] * (limit // 1000 + 2)}).encode(),
    }


def _post_targets(p: Platform, course_id: str):
    """Every route that takes a JSON body, on every service and the gateway (own and forwarded)."""
    creates = {"plans": "/v1/plans", "budgets": "/v1/budgets", "decisions": "/v1/decisions",
               "groups": f"/v1/courses/{course_id}/enrolments"}
    for service, path in creates.items():
        yield f"{service} {path}", f"http://127.0.0.1:{p.ports[service]}{path}", service_header(p, service), "POST"
        yield f"gateway -> {service} {path}", p.url + path, client_header(p), "POST"
    yield "gateway sharing", f"{p.url}/v1/people/{PERSON}/sharing", client_header(p), "PUT"
    yield "gateway subscriptions", f"{p.url}/v1/subscriptions", client_header(p), "POST"


def test_too_large_and_too_deeply_nested_json_is_refused_cleanly_everywhere(running, person_refs):
    limit = running.settings("gateway").max_body_bytes
    bad = []
    for label, body in _bodies(limit).items():
        for name, url, header, method in _post_targets(running, person_refs[1]):
            for chunked in (False, True):
                data = iter([body[i:i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
                r = requests.request(method, url, data=data, timeout=30,
                                     headers={"Authorization": header(), "Content-Type": "application/json"})
                expected = (413,) if label == "over the size limit" else (400, 413, 422)
                if r.status_code not in expected or r.headers.get("Content-Type") != "application/problem+json":
                    bad.append(f"{name} ({'chunked' if chunked else 'sized'}): {label}: {r.status_code} {r.text[:200]}")
    assert not bad, "\n".join(bad)


def test_nul_characters_are_refused_by_name_not_by_the_database(running, person_refs):
    """U+0000 is valid JSON and a valid %00 in a URL, but PostgreSQL cannot store it."""
    plan_id, course_id = person_refs
    r = running.call("admin", "POST", "/v1/plans", json={"nhs_number": PERSON, "conditions": ["asthma\u0000"]})
    assert r.status_code == 422 and list(r.json()["errors"]) == ["conditions.0"], r.text
    for path, body in _creates(PERSON, plan_id, course_id):
        body["priorities"][0]["text"] = "walk\u0000"
        r = running.call("admin", "POST", path, json=body)
        assert r.status_code == 422 and "priorities.0.text" in r.json()["errors"], (path, r.text)
    for path in (f"/v1/people/{PERSON[:5]}%00{PERSON[5:]}/portfolio", "/v1/plans/%00",
                 f"/v1/plans?nhs_number={PERSON}%00", "/v1/audit?nhs_number=%00"):
        r = running.call("admin", "GET", path)
        assert r.status_code in (400, 422), (path, r.status_code, r.text)
        assert r.headers["Content-Type"] == "application/problem+json"


@pytest.fixture(scope="module", autouse=True)
def figures():
    """One row in the reliability table for this module's schemathesis runs (when any ran)."""
    yield
    if not TOTALS:
        return
    record(Row(fault="8. bad input (schemathesis)", sent=TOTALS["requests"],
               confirmed=TOTALS["requests"] - TOTALS["failures"], delivered=TOTALS["requests"] - TOTALS["server_errors"],
               lost=TOTALS["server_errors"], duplicated=0, dead_lettered=0, recovery_s=0.0,
               note=f"{TOTALS['targets']} API runs in {TOTALS['seconds']} s; sent = requests, confirmed = "
                    f"responses that met every check, delivered = answered below 500, lost = 5xx answers"))
