"""GP systems syncing plans both ways, through the gateway, over RabbitMQ and PostgreSQL.

- Two GP clients update the same plan at once: one wins, the other gets 412, re-reads, and its
  change lands on top: nothing is lost.
- A client paging the change feed while writes continue gets every change exactly once, in
  cursor order (a property test with concurrent writers).
- The feed filters by type, respects the person's sharing choices, audits who read whom, and
  refuses cursors and types it did not give out.
- ``examples/gp_sync.py`` pulls the feed from its saved cursor and pushes a local change with
  If-Match, run as a separate process against the running platform.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calls import agree, if_match
from harness import ROOT, wait_for
from nhs import new_nhs


@pytest.fixture(scope="module")
def platform(make_module_platform):
    p = make_module_platform().start()
    from gateway import clients
    db = p.database("gateway")
    for name in ("gp_a", "gp_b"):  # two GP systems of one practice: both hold its patients' plans
        _id, p.tokens[name] = clients.create(db, f"practice system {name}", "A81001", "gp")
    _id, p.tokens["no_portfolio"] = clients.create(db, "no portfolio", "X1", "gp", without=["portfolio:read"])
    db.dispose()
    return p


IN_A_YEAR = (date.today() + timedelta(days=365)).isoformat()


def create(platform, nhs: str, role: str = "gp") -> dict:
    r = platform.call(role, "POST", "/v1/plans", json={
        "nhs_number": nhs, "conditions": ["type 2 diabetes"],
        "priorities": [{"text": "Walk my grandson to school", "category": "physical_activity", "rank": 1}],
        "goals": [{"description": "Weight 105 kg",
                   "target": {"measure": "body weight", "value": 105, "unit": "kg", "due": IN_A_YEAR}}],
        "actions": [{"text": "Walk 15 minutes after lunch", "owner": "person"}],
        "next_review_date": IN_A_YEAR})
    assert r.status_code == 201, r.text
    return r.json()


def read_feed(platform, path: str = "/v1/changes", role: str = "gp", after: str | None = None,
              limit: int = 1000, **params) -> tuple[list[dict], str]:
    """Page to the end of a feed; return (items, cursor)."""
    items = []
    while True:
        query = dict(params, limit=limit, **({"after": after} if after else {}))
        r = platform.call(role, "GET", path, params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        after = page["next_cursor"]
        if not page["has_more"]:
            return items, after


# -- two GP systems, one plan ---------------------------------------------------------------------
def test_two_gp_clients_update_the_same_plan_at_once_and_nothing_is_lost(platform):
    nhs = new_nhs()
    plan = agree(platform, create(platform, nhs, role="gp_a"), role="gp_a")
    pid, rounds = plan["id"], 6
    for n in range(rounds):
        barrier, answers = threading.Barrier(2), {}

        def revise(who: str):
            r = platform.call(who, "GET", f"/v1/plans/{pid}")
            etag, conditions = r.headers["ETag"], r.json()["conditions"]
            barrier.wait()  # both hold the same version, and both write now
            r = platform.call(who, "PATCH", f"/v1/plans/{pid}", headers={"If-Match": etag},
                              json={"conditions": conditions + [f"{who} round {n}"], "reason": f"{who} {n}"})
            answers[who] = r

        threads = [threading.Thread(target=revise, args=(who,)) for who in ("gp_a", "gp_b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in answers.values())
        assert codes == [200, 412], {w: r.text for w, r in answers.items()}
        loser = next(w for w, r in answers.items() if r.status_code == 412)
        assert answers[loser].headers["ETag"] == f'"{3 + 2 * n}"'  # says which version is current
        # the loser reads again and puts its change on top of the winner's
        r = platform.call(loser, "GET", f"/v1/plans/{pid}")
        r = platform.call(loser, "PATCH", f"/v1/plans/{pid}", headers={"If-Match": r.headers["ETag"]},
                          json={"conditions": r.json()["conditions"] + [f"{loser} round {n}"]})
        assert r.status_code == 200, r.text

    final = platform.call("gp_a", "GET", f"/v1/plans/{pid}").json()
    assert final["version"] == 2 + 2 * rounds
    assert sorted(final["conditions"]) == sorted(["type 2 diabetes"] + [f"{w} round {n}" for n in range(rounds)
                                                                         for w in ("gp_a", "gp_b")])
    versions = platform.call("gp_a", "GET", f"/v1/plans/{pid}/versions").json()["items"]
    assert [v["version"] for v in versions] == list(range(1, final["version"] + 1))
    # and every version reaches the feed once, in order
    events = wait_for(lambda: (lambda e: e if len(e) == final["version"] else None)(
        read_feed(platform, f"/v1/people/{nhs}/changes", role="gp_a")[0]), message="every version in the feed")
    assert [e["aggregateversion"] for e in events] == list(range(1, final["version"] + 1))
    assert sorted(events[-1]["data"]["conditions"]) == sorted(final["conditions"])


# -- the feed under concurrent writes ------------------------------------------------------------
ops = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["create", "revise", "revise", "agree"])),
               min_size=1, max_size=10)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(writers=st.lists(ops, min_size=1, max_size=3), page_size=st.integers(1, 4))
def test_paging_the_feed_while_writes_continue_gets_every_change_once_in_order(platform, writers, page_size):
    _, start = read_feed(platform)  # the head before this example's writes
    people = [new_nhs() for _ in range(3)]
    expected: set[tuple[str, int]] = set()
    lock = threading.Lock()
    failures: list[str] = []

    def write(plan_ops):
        mine: list[dict] = []
        try:
            for who, op in plan_ops:
                if op == "create" or not mine:
                    plan = create(platform, people[who])
                    mine.append(plan)
                else:
                    plan = mine[-1]
                    if op == "agree" and plan["status"] == "draft":
                        plan = agree(platform, plan)
                    else:
                        r = platform.call("gp", "PATCH", f"/v1/plans/{plan['id']}",
                                          headers=if_match(plan["version"]),
                                          json={"conditions": plan["conditions"] + [f"c{len(plan['conditions'])}"]})
                        assert r.status_code == 200, r.text
                        plan = r.json()
                    mine[-1] = plan
                with lock:
                    expected.add((plan["id"], plan["version"]))
        except Exception as exc:  # reported by the test body
            failures.append(repr(exc))

    threads = [threading.Thread(target=write, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    # page while they write: every page from the cursor the last one gave
    seen, cursor, deadline = [], start, time.monotonic() + 30
    plan_ids = lambda: {p for p, _v in expected}  # noqa: E731
    while True:
        r = platform.call("gp", "GET", "/v1/changes", params={"after": cursor, "limit": page_size, "types": "plan.*"})
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= page_size
        seen += page["items"]
        cursor = page["next_cursor"]
        writing = any(t.is_alive() for t in threads)
        mine = {(e["aggregateid"], e["aggregateversion"]) for e in seen if e["aggregateid"] in plan_ids()}
        if not writing and mine >= expected:
            break
        assert time.monotonic() < deadline, f"missing {expected - mine}"
        if not page["has_more"]:
            time.sleep(0.01)
    for t in threads:
        t.join()
    assert not failures, failures

    ids = [e["id"] for e in seen]
    assert len(ids) == len(set(ids)), "a change was delivered twice"
    ours = [(e["aggregateid"], e["aggregateversion"]) for e in seen if e["aggregateid"] in plan_ids()]
    assert sorted(ours) == sorted(expected) and len(ours) == len(expected)
    for plan_id in plan_ids():  # each plan's versions arrive in order
        versions = [v for p, v in ours if p == plan_id]
        assert versions == sorted(versions) and versions[0] == 1
    # the paged read is exactly the feed's own order from the same cursor, read in one go afterwards
    whole, _ = read_feed(platform, after=start, types="plan.*")
    assert [e["id"] for e in whole[:len(seen)]] == ids
    # and each person's own feed is the global one, filtered to them, in the same order
    for nhs in people:
        if not any(e["subject"] == nhs for e in whole):  # nobody wrote for them: the practice holds nothing
            assert platform.call("gp", "GET", f"/v1/people/{nhs}/changes").status_code == 403
            continue
        person, _ = read_feed(platform, f"/v1/people/{nhs}/changes", limit=2)
        assert [e["id"] for e in person] == [e["id"] for e in whole if e["subject"] == nhs]


# -- filters, consent, audit, refusals -------------------------------------------------------------
def test_the_feed_filters_respects_consent_and_refuses_what_it_did_not_give(platform):
    _, start = read_feed(platform)
    shared, private = new_nhs(), new_nhs()
    plans = {nhs: agree(platform, create(platform, nhs)) for nhs in (shared, private)}
    r = platform.call("gp", "POST", f"/v1/plans/{plans[shared]['id']}/hold", headers=if_match(2),
                      json={"reason": "Admitted to hospital"})
    assert r.status_code == 200, r.text
    wait_for(lambda: len(read_feed(platform, after=start)[0]) == 5, message="five changes in the feed")

    items, end = read_feed(platform, after=start, types="plan.agreed")
    assert [(e["type"], e["subject"]) for e in items] == [("plan.agreed", shared), ("plan.agreed", private)]
    items, _ = read_feed(platform, after=start, types="plan.held,plan.created")
    assert [e["type"] for e in items] == ["plan.created", "plan.created", "plan.held"]
    items, _ = read_feed(platform, after=start, types="budget.*")
    assert items == []
    # at the end, the cursor stays put and nothing repeats
    r = platform.call("gp", "GET", "/v1/changes", params={"after": end})
    assert r.json() == {"items": [], "next_cursor": end, "has_more": False, "withheld": 0}

    # the person withholds plans from hospitals: the hospital's feed leaves them out, cursor moves on
    r = platform.call("admin", "PUT", f"/v1/people/{private}/sharing", json={"withhold": {"hospital": ["plans"]}})
    assert r.status_code == 200, r.text
    for person in (shared, private):  # the hospital has both admitted: its care relationship with them
        platform.admit(person)
    items, _ = read_feed(platform, role="hospital", after=start)
    assert {e["subject"] for e in items} == {shared} and len(items) == 3
    items, _ = read_feed(platform, f"/v1/people/{private}/changes", role="hospital")
    assert items == []
    items, _ = read_feed(platform, f"/v1/people/{private}/changes", role="gp")
    assert [e["type"] for e in items] == ["plan.created", "plan.agreed"]

    # every read is audited against the person it showed
    audit = platform.call("admin", "GET", "/v1/audit", params={"nhs_number": shared, "limit": 1000}).json()["items"]
    assert any(a["resource"].startswith("/v1/changes") and a["role"] == "hospital" for a in audit)
    audit = platform.call("admin", "GET", "/v1/audit", params={"nhs_number": private, "limit": 1000}).json()["items"]
    assert any(a["resource"].startswith(f"/v1/people/{private}/changes") and a["role"] == "hospital"
               for a in audit)
    assert not any(a["resource"].startswith("/v1/changes") and a["role"] == "hospital" for a in audit)

    for params, field in (({"after": "not-a-cursor"}, "after"), ({"types": "plan"}, "types"),
                          ({"types": "plan.*,DROP TABLE"}, "types"), ({"limit": 0}, "limit"),
                          ({"limit": 5000}, "limit")):
        r = platform.call("gp", "GET", "/v1/changes", params=params)
        assert r.status_code == 422 and list(r.json()["errors"]) == [field], (params, r.text)
    r = platform.call("gp", "GET", "/v1/people/1234567890/changes")
    assert r.status_code == 422 and list(r.json()["errors"]) == ["nhs_number"]
    assert platform.call("no_portfolio", "GET", "/v1/changes").status_code == 403
    assert platform.call("no_portfolio", "GET", f"/v1/people/{shared}/changes").status_code == 403
    assert platform.call(None, "GET", "/v1/changes").status_code == 401


# -- the example client, as its own process ---------------------------------------------------------
def run_example(platform, state, *args, role: str = "gp_a") -> list[dict]:
    env = dict(os.environ, COPRODUCTION_TOKEN=platform.tokens[role])
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "gp_sync.py"), "--url", platform.url,
                          "--state", str(state), "--limit", "2", *args],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_the_example_gp_client_pulls_from_its_cursor_and_pushes_with_if_match(platform, tmp_path):
    state = tmp_path / "practice-a"
    nhs = new_nhs()
    _, head = read_feed(platform, role="gp_a")
    plan = agree(platform, create(platform, nhs, role="gp_b"), role="gp_b")
    pid = plan["id"]
    wait_for(lambda: len(read_feed(platform, role="gp_a", after=head)[0]) == 2, message="the plan's events in the feed")

    lines = run_example(platform, state)
    pulled = [line for line in lines if "pulled" in line]
    assert [(p["plan"], p["version"]) for p in pulled if p["plan"] == pid] == [(pid, 1), (pid, 2)]
    assert (state / "cursor").exists() and json.loads((state / "plans.json").read_text())[pid]["version"] == 2
    first_ids = [p["id"] for p in pulled]

    # nothing new: nothing pulled again
    lines = run_example(platform, state)
    assert [line for line in lines if "pulled" in line] == []

    # a change made elsewhere is pulled, then the GP's own change is pushed on top of it
    r = platform.call("gp_b", "PATCH", f"/v1/plans/{pid}", headers=if_match(2),
                      json={"conditions": ["type 2 diabetes", "hypertension"]})
    assert r.status_code == 200, r.text
    wait_for(lambda: any(e["aggregateversion"] == 3 for e in read_feed(platform, f"/v1/people/{nhs}/changes", role="gp_a")[0]),
             message="version 3 in the feed")
    review = (date.today() + timedelta(days=90)).isoformat()
    lines = run_example(platform, state, "--revise", pid, "--set", f"next_review_date={review}",
                        "--reason", "Reviewed at practice A")
    assert [(p["plan"], p["version"]) for p in lines if "pulled" in p] == [(pid, 3)]
    assert [line for line in lines if "pushed" in line] == [{"pushed": pid, "version": 4, "retries": 0}]

    # a stale local copy: the push gets 412, re-reads and lands on top, and both changes stay
    r = platform.call("gp_b", "PATCH", f"/v1/plans/{pid}", headers=if_match(4),
                      json={"actions": [{"text": "Walk 20 minutes after lunch", "owner": "person"}]})
    assert r.status_code == 200, r.text
    lines = run_example(platform, state, "--no-pull", "--revise", pid,
                        "--set", "care_coordinator=Nurse B Jones")
    assert [line for line in lines if "conflict" in line] == [
        {"conflict": pid, "sent_if_match": 4, "now": '"5"'}]
    assert [line for line in lines if "pushed" in line] == [{"pushed": pid, "version": 6, "retries": 1}]
    final = platform.call("gp_a", "GET", f"/v1/plans/{pid}").json()
    assert final["conditions"] == ["type 2 diabetes", "hypertension"] and final["next_review_date"] == review
    assert final["actions"][0]["text"] == "Walk 20 minutes after lunch"
    assert final["care_coordinator"] == "Nurse B Jones"
    versions = platform.call("gp_a", "GET", f"/v1/plans/{pid}/versions").json()["items"]
    assert versions[3]["reason"] == "Reviewed at practice A"

    # across every run, each change was pulled exactly once
    wait_for(lambda: len(read_feed(platform, f"/v1/people/{nhs}/changes", role="gp_a")[0]) == 6, message="six versions")
    lines = run_example(platform, state)
    all_ids = first_ids + [p["id"] for p in lines if "pulled" in p]
    assert len(all_ids) == len(set(all_ids))
    feed_ids = [e["id"] for e in read_feed(platform, role="gp_a", after=None, types="plan.*")[0]]
    ours = [i for i in feed_ids if i in set(all_ids)]
    assert ours == [i for i in all_ids if i in set(feed_ids)]
    local = json.loads((state / "plans.json").read_text())[pid]
    assert local["version"] == 6 and local["care_coordinator"] == "Nurse B Jones"
    # the local copy holds every pulled change of this plan
    assert sorted(p["version"] for p in lines if p.get("plan") == pid) == [4, 5, 6]
    assert uuid.UUID(pid)
