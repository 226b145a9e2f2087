"""Issue 18: the audit trail as a signed Merkle log. Proofs of a person's access-log items checked
independently (tests/audit_checks.py, from RFC 9162), the routes' rules, the sequencer's batches,
the embedded SQLite default, and no start without a signing key."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import func, select

from audit_checks import consistency_holds, head_signed, inclusion_holds, leaf_hash, leaf_of
from bodies import plan_body, priority
from coproduction.auth import Caller
from harness import ROOT, wait_for
from stored import count_rows

NHS = "9434765919"
PLAN = plan_body(NHS, priority("Keep my allotment going", "learning_and_hobbies"))
ROLES = ("gp", "hospital", "community", "social_care")


def cli(platform, *argv, env=None):
    return subprocess.run([sys.executable, "-m", "bootstrap.cli", *argv], env=dict(platform.env, **(env or {})),
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def records(platform) -> int:
    from gateway.models import audit_log
    return count_rows(platform, "gateway", audit_log)


def head_covering(platform, n: int, role: str = "admin") -> dict:
    def check():
        r = platform.call(role, "GET", "/v1/audit/tree-head")
        return r.json() if r.status_code == 200 and r.json()["tree_size"] >= n else None
    return wait_for(check, timeout=10, message=f"a signed tree head covering {n} records")


def test_access_log_items_are_proven_in_the_signed_log_and_heads_are_consistent(make_platform, tmp_path):
    platform = make_platform().start()
    platform.start_sequencer()
    pem = platform.call(None, "GET", "/v1/audit/public-key").json()["pem"]  # published without a token
    state = tmp_path / "witness.json"
    heads = []
    assert platform.call("gp", "POST", "/v1/plans", json=PLAN).status_code == 201
    platform.portfolio_shows(NHS, lambda d: d["plan"])
    for round_ in range(4):
        for role in ROLES:
            platform.call(role, "GET", f"/v1/people/{NHS}/portfolio", headers={"X-Purpose": f"round {round_}"})
        platform.call("community", "GET", "/v1/plans/00000000-0000-0000-0000-000000000000")  # no person: 403
        head = head_covering(platform, records(platform))
        assert head_signed(head, pem), head
        heads.append(head)
        out = cli(platform, "audit", "witness", "--state", str(state), "--url", platform.url,
                  "--token", platform.tokens["admin"])
        assert out.returncode == 0, out.stdout + out.stderr
        assert "witnessed the log at" in out.stdout or "no new records" in out.stdout

    latest = heads[-1]
    items = platform.call("gp", "GET", f"/v1/people/{NHS}/access-log", params={"limit": 1000}).json()["items"]
    sequenced = [i for i in items if i["leaf_index"] is not None and i["leaf_index"] < latest["tree_size"]]
    assert len(sequenced) >= 4 * len(ROLES)
    assert {i["purpose"] for i in sequenced} >= {f"round {r}" for r in range(4)}
    for item in sequenced:
        r = platform.call("gp", "GET", "/v1/audit/proof/inclusion",  # a portfolio reader checks their own view
                          params={"seq": item["leaf_index"], "tree_size": latest["tree_size"]})
        assert r.status_code == 200, r.text
        proof = r.json()
        mine = leaf_hash(leaf_of(item))
        assert proof["leaf_hash"] == mine.hex()
        path = [bytes.fromhex(h) for h in proof["inclusion_path"]]
        assert inclusion_holds(item["leaf_index"], latest["tree_size"], mine, path, bytes.fromhex(latest["root_hash"]))
        assert proof["tree_head"]["signature"] == latest["signature"]
        forged = leaf_hash(leaf_of(dict(item, purpose="curiosity")))
        assert not inclusion_holds(item["leaf_index"], latest["tree_size"], forged, path,
                                   bytes.fromhex(latest["root_hash"]))
    sizes = sorted({h["tree_size"] for h in heads})
    assert len(sizes) >= 3
    for first, second in itertools.combinations_with_replacement(sizes, 2):
        r = platform.call("admin", "GET", "/v1/audit/proof/consistency", params={"first": first, "second": second})
        assert r.status_code == 200, r.text
        path = [bytes.fromhex(h) for h in r.json()["consistency_path"]]
        roots = {h["tree_size"]: bytes.fromhex(h["root_hash"]) for h in heads}
        assert consistency_holds(first, second, roots[first], roots[second], path), (first, second)
        if first < second:
            assert not consistency_holds(first, second, roots[second], roots[second], path)
    verify = cli(platform, "audit", "verify", "--witness", str(state))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "leaf by leaf" in verify.stdout


def test_the_routes_name_bad_parameters_and_keep_to_their_scopes(make_platform):
    platform = make_platform().start()
    assert platform.call("gp", "GET", "/v1/audit/tree-head").status_code == 404  # nothing signed yet
    platform.start_sequencer()
    platform.call("community", "GET", "/v1/plans/00000000-0000-0000-0000-000000000000")  # names nobody
    assert platform.call("gp", "POST", "/v1/plans", json={  # the practice holds his plan: it reads his log
        "nhs_number": NHS, "priorities": [{"text": "Walk the dog", "category": "physical_activity"}]}).status_code == 201
    platform.call("gp", "GET", f"/v1/people/{NHS}/portfolio")
    from gateway import audit
    db = platform.database("gateway")
    with db.session() as s:  # what an emergency access under the access decision writes
        audit.record(s, caller=Caller("c9", "A&E", "RX9", "hospital", ("portfolio:read",), "emergency care"),
                     scope="portfolio:read", nhs_number=NHS, action="GET", resource=f"/v1/people/{NHS}/portfolio",
                     purpose="emergency care", status=200, initiative="plans", break_glass=True,
                     relationship="emergency")
    head = head_covering(platform, records(platform))
    size = head["tree_size"]
    log = platform.call("admin", "GET", "/v1/audit", params={"limit": 1000}).json()["items"]
    nobody = next(i for i in log if i["nhs_number"] is None)
    someone = next(i for i in log if i["nhs_number"] == NHS)
    assert [i["id"] for i in log] == sorted(i["id"] for i in log)
    page = platform.call("admin", "GET", "/v1/audit", params={"limit": 1}).json()
    assert page["next_cursor"] == str(log[0]["id"])
    assert platform.call("admin", "GET", "/v1/audit", params={"after": page["next_cursor"]}).json()["items"][0] == log[1]

    def problem(role, path, field, **params):
        r = platform.call(role, "GET", path, params=params)
        assert r.status_code == 422 and r.headers["Content-Type"] == "application/problem+json", (path, params, r.text)
        assert field in r.json()["errors"], r.json()
    problem("admin", "/v1/audit/proof/inclusion", "seq")
    beyond = size + 100_000  # the log grows as these very calls are audited: far past its end
    problem("admin", "/v1/audit/proof/inclusion", "seq", seq=beyond)
    problem("admin", "/v1/audit/proof/inclusion", "seq", seq=-1)
    problem("admin", "/v1/audit/proof/inclusion", "seq", seq="x")
    problem("admin", "/v1/audit/proof/inclusion", "tree_size", seq=0, tree_size=beyond)
    problem("admin", "/v1/audit/proof/consistency", "first", first=size, second=1)
    problem("admin", "/v1/audit/proof/consistency", "second", first=1)
    problem("admin", "/v1/audit/proof/consistency", "second", first=size, second=beyond)
    problem("admin", "/v1/audit/tree-head", "tree_size", tree_size=beyond)
    problem("admin", "/v1/audit/leaf-hashes", "end", start=size + 500, end=size + 600)  # beyond the signed log
    problem("admin", "/v1/audit/leaf-hashes", "end", start=0, end=5000)
    assert platform.call("admin", "GET", "/v1/audit/tree-head", params={"tree_size": size}).json() == head

    assert platform.call(None, "GET", "/v1/audit/tree-head").status_code == 401
    assert platform.call("hospital", "GET", "/v1/audit/proof/consistency",
                         params={"first": size, "second": size}).status_code == 403
    assert platform.call("hospital", "GET", "/v1/audit/leaf-hashes", params={"start": 0, "end": size}).status_code == 403
    assert platform.call("hospital", "GET", "/v1/audit/proof/inclusion",
                         params={"seq": nobody["leaf_index"]}).status_code == 403
    assert platform.call("hospital", "GET", "/v1/audit/proof/inclusion",
                         params={"seq": someone["leaf_index"]}).status_code == 200
    assert platform.call("admin", "GET", "/v1/audit/proof/inclusion", params={"seq": nobody["leaf_index"]}).status_code == 200
    hashes = platform.call("admin", "GET", "/v1/audit/leaf-hashes", params={"start": 0, "end": size}).json()
    assert hashes["leaf_hashes"][someone["leaf_index"]] == leaf_hash(leaf_of(someone)).hex()
    [glass] = [i for i in platform.call("gp", "GET", f"/v1/people/{NHS}/access-log").json()["items"] if i["break_glass"]]
    assert (glass["initiative"], glass["relationship"]) == ("plans", "emergency")
    assert hashes["leaf_hashes"][glass["leaf_index"]] == leaf_hash(leaf_of(glass)).hex()  # all three in the leaf
    assert leaf_hash(leaf_of(dict(glass, break_glass=False))).hex() != hashes["leaf_hashes"][glass["leaf_index"]]
    with pytest.raises(ValueError, match="initiative"):
        with db.session() as s:
            audit.record(s, caller=None, scope=None, nhs_number=NHS, action="GET", resource="/x", purpose="p",
                         status=200, initiative="everything")


def test_a_backlog_is_sequenced_in_batches_exactly_once_even_by_two_sequencers(make_platform):
    """Two sequencers at once (one started by mistake) share the work; each record gets one leaf."""
    from gateway import audit
    from gateway.audit import keys as audit_keys, verify as audit_verify
    from gateway.models import audit_log, audit_tree_heads, audit_tree_nodes
    from gateway.audit.sequencer import Sequencer
    platform = make_platform(services=())
    platform.migrate()
    db = platform.database("gateway")
    who = Caller("c1", "Ward 7", "RX1", "hospital", ("portfolio:read",), "direct care")
    n = 12_000
    with db.session() as s:
        for i in range(n):
            audit.record(s, caller=who, scope="portfolio:read", nhs_number=NHS, action="GET",
                         resource=f"/v1/people/{NHS}/portfolio?i={i}", purpose="direct care", status=200,
                         initiative="portfolio", relationship="admission", break_glass=i % 1000 == 0)
    key = audit_keys.signing_key()
    sequencers = [Sequencer(db, key, batch=2000, interval=0.01) for _ in range(2)]
    started = time.monotonic()
    threads = [threading.Thread(target=s.run, daemon=True) for s in sequencers]
    for t in threads:
        t.start()

    def done():
        with db.session() as s:
            return s.execute(select(func.max(audit_tree_heads.c.tree_size))).scalar_one() == n
    wait_for(done, timeout=120, interval=0.01, message="the backlog sequenced")
    seconds = time.monotonic() - started
    for s in sequencers:
        s.stop()
    for t in threads:
        t.join(10)
    with db.session() as s:
        leaves = s.execute(select(audit_log.c.leaf_index).order_by(audit_log.c.id)).scalars().all()
        sizes = s.execute(select(audit_tree_heads.c.tree_size).order_by(audit_tree_heads.c.tree_size)).scalars().all()
        stored = s.execute(select(func.count()).select_from(audit_tree_nodes)).scalar_one()
        report = audit_verify.verify(s, key.public_key())
    assert leaves == list(range(n))  # one leaf each, in id order (all committed before sequencing began)
    assert sizes == list(range(2000, n + 1, 2000))  # each batch one head, none skipped, none repeated
    assert stored == sum(n >> level for level in range(n.bit_length()))
    assert report.problems == [] and report.leaves == n
    print(f"\nsequenced {n} records in {seconds:.2f}s: {n / seconds:,.0f} records/s, batches of 2000")


def test_the_embedded_sqlite_default_sequences_and_proves(make_platform):
    platform = make_platform(services=(), broker="filesystem", database="sqlite")
    platform.migrate()
    platform.start_web("gateway")
    platform.create_clients()
    platform.start_sequencer()
    platform.admit(NHS, "gp", kind="emergency")  # a portfolio reader with a relationship, to read the log
    for role in ROLES:  # audited all the same, allowed or refused
        expected = 404 if role in ("gp", "admin") else 403
        assert platform.call(role, "GET", f"/v1/people/{NHS}/portfolio").status_code == expected
    head = head_covering(platform, records(platform), role="gp")
    pem = platform.call(None, "GET", "/v1/audit/public-key").json()["pem"]
    assert head_signed(head, pem)
    items = wait_for(lambda: (lambda items: items if all(i["leaf_index"] is not None for i in items) else None)(
        platform.call("gp", "GET", f"/v1/people/{NHS}/access-log").json()["items"]), message="every item sequenced")
    for item in items:
        if item["leaf_index"] >= head["tree_size"]:
            continue
        proof = platform.call("gp", "GET", "/v1/audit/proof/inclusion",
                              params={"seq": item["leaf_index"], "tree_size": head["tree_size"]}).json()
        assert inclusion_holds(item["leaf_index"], head["tree_size"], leaf_hash(leaf_of(item)),
                               [bytes.fromhex(h) for h in proof["inclusion_path"]], bytes.fromhex(head["root_hash"]))
    platform.stop_thread("gateway-sequencer")
    verify = cli(platform, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_no_gateway_and_no_sequencer_without_a_usable_signing_key(make_platform, monkeypatch, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from coproduction.secrets import ConfigurationError
    from gateway.app import create_app
    platform = make_platform(services=())
    unset = {k: v for k, v in platform.env.items() if k != "AUDIT_SIGNING_KEY"}
    env = dict(os.environ, **unset)
    env.pop("AUDIT_SIGNING_KEY", None)
    for argv in (["serve", "gateway", "--port", "1"], ["audit", "sequence"]):
        out = subprocess.run([sys.executable, "-m", "bootstrap.cli", *argv], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "AUDIT_SIGNING_KEY is not set" in out.stderr, (argv, out.stderr)
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "rsa.pem").write_bytes(rsa_pem)
    out = subprocess.run([sys.executable, "-m", "bootstrap.cli", "audit", "sequence"],
                         env=dict(env, AUDIT_SIGNING_KEY_FILE=str(tmp_path / "rsa.pem")), cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "not an Ed25519 key" in out.stderr, out.stderr
    monkeypatch.delenv("AUDIT_SIGNING_KEY")
    with pytest.raises(ConfigurationError, match="AUDIT_SIGNING_KEY"):
        create_app(platform.settings("gateway"))


def test_an_access_whose_record_cannot_be_written_is_not_answered(make_platform, monkeypatch):
    """The database fails at the audit INSERT (the read before it went through): 503, no data."""
    from sqlalchemy.exc import OperationalError
    from gateway import security
    platform = make_platform().start()
    assert platform.call("gp", "POST", "/v1/plans", json=PLAN).status_code == 201
    platform.portfolio_shows(NHS, lambda d: d["plan"])
    platform.admit(NHS)
    before = records(platform)

    def database_gone(*_args, **_kwargs):
        raise OperationalError("INSERT INTO audit_log", {}, ConnectionError("server closed the connection"))
    monkeypatch.setattr(security.audit, "record", database_gone)
    r = platform.call("hospital", "GET", f"/v1/people/{NHS}/portfolio")
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1, r.text
    assert "allotment" not in r.text and r.headers["Content-Type"] == "application/problem+json"
    monkeypatch.undo()
    assert records(platform) == before
    assert platform.call("hospital", "GET", f"/v1/people/{NHS}/portfolio").status_code == 200
    assert records(platform) == before + 1


def test_ten_digits_inside_a_withheld_record_id_are_not_read_as_an_nhs_number():
    from gateway.audit.routes import redact
    own, other = "9434765919", "9434765870"
    shown = "0b7e1c9d-2f40-4a1b-9c3d-aa1234567890"
    hidden = "5c0f5e7a-1b2c-4d3e-8f90-ac9434765870"  # its last group ends in ten digits
    text = f"/v1/people/{own}/x {other} {shown} {hidden}"
    assert redact(text, own, {shown}) == f"/v1/people/{own}/x [another person] {shown} [withheld]"
