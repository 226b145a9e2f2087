"""The audit routes: the records, the signed tree head, proofs, the public key, leaf hashes.

Who may call what (docs/audit.md; the rules are gateway/policy/'s):
- ``GET /v1/audit``, consistency proofs and leaf hashes: ``audit:read`` (auditors, witnesses);
- the tree head and inclusion proofs: ``audit:read``, or ``portfolio:read`` for the records a
  portfolio reader sees in a person's access log (those naming a person), so whoever is shown an
  access-log item can check it is in the signed log;
- the public key: anyone, without a token;
- a person's access log (``GET /v1/people/{nhs_number}/access-log``, on the people blueprint of
  gateway/api.py): ``portfolio:read`` and the access decision, like the person's other routes.
Proofs answer only for tree sizes that have a signed head: a proof against an unsigned size
proves nothing to anyone.
"""
from __future__ import annotations

import re

import flask_smorest
import marshmallow as ma
from flask import jsonify
from sqlalchemy import select

from coproduction.http import Problem, ctx

from .. import policy
from ..api import bp as people, nhs_path
from ..models import audit_log, subjects
from ..security import caller, request_session
from . import keys, leaf_hash_of, to_json, tree

bp = flask_smorest.Blueprint("audit", __name__, url_prefix="/v1/audit",
                             description="Who accessed a person's data: the audit trail, a signed Merkle log")
BIGINT = ma.validate.Range(min=0, max=2**63 - 1)
MAX_LEAF_HASHES = 1000


def invalid(field: str, message: str) -> Problem:
    return Problem(422, "Unprocessable Content", f"Some fields are not valid: {field}", errors={field: [message]})


class AuditQuery(ma.Schema):
    after = ma.fields.Integer(load_default=0, validate=BIGINT, metadata={"description": "a record id: start after it"})
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(min=1, max=1000))
    nhs_number = ma.fields.String(load_default=None)


class AuditPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Dict())
    next_cursor = ma.fields.String(allow_none=True)


def page(where, after: int, limit: int) -> dict:
    """Records oldest first by id (an id never changes, so the cursor is stable); each carries its
    leaf index, null until sequenced."""
    with ctx().db.session() as session:
        rows = session.execute(select(audit_log).where(audit_log.c.id > after, *where)
                               .order_by(audit_log.c.id).limit(limit)).mappings().all()
    items = [to_json(r) for r in rows]
    return {"items": items, "next_cursor": str(items[-1]["id"]) if len(items) == limit else None}


@bp.route("")
@bp.arguments(AuditQuery, location="query")
@bp.alt_response(200, schema=AuditPageSchema, description="The audit trail, oldest first.")
def list_audit(query):
    where = [audit_log.c.nhs_number == query["nhs_number"]] if query["nhs_number"] else []
    return jsonify(page(where, query["after"], query["limit"]))


class TreeHeadQuery(ma.Schema):
    tree_size = ma.fields.Integer(load_default=None, validate=BIGINT,
                                  metadata={"description": "a signed head of this size (default: the latest)"})


class TreeHeadSchema(ma.Schema):
    tree_size = ma.fields.Integer()
    timestamp = ma.fields.Integer(metadata={"description": "milliseconds since the epoch"})
    root_hash = ma.fields.String(metadata={"description": "hex"})
    signature = ma.fields.String(metadata={"description": "Ed25519 over TreeHeadDataV2 (RFC 9162 §4.10), hex"})
    key_id = ma.fields.String()
    public_key = ma.fields.String(metadata={"description": "where the key is published"})


def _reader_of_heads():
    who = caller()
    if not (who.has("audit:read") or who.has("portfolio:read")):
        raise Problem(403, "Forbidden", "This needs the scope audit:read or portfolio:read.")
    return who


def _head(session, tree_size: int | None, field: str = "tree_size") -> keys.TreeHead:
    head = tree.latest_head(session) if tree_size is None else tree.head_at(session, tree_size)
    if head is None and tree_size is None:
        raise Problem(404, "Not Found", "The log has no signed tree head yet (is `coproduction audit sequence` running?).")
    if head is None:
        raise invalid(field, "No signed tree head has this size.")
    return head


def _head_json(head: keys.TreeHead) -> dict:
    return dict(head.to_json(), public_key="/v1/audit/public-key")


@bp.route("/tree-head")
@bp.arguments(TreeHeadQuery, location="query")
@bp.alt_response(200, schema=TreeHeadSchema, description="A signed tree head.")
def tree_head(query):
    _reader_of_heads()
    with ctx().db.session() as session:
        return jsonify(_head_json(_head(session, query["tree_size"])))


class InclusionQuery(ma.Schema):
    seq = ma.fields.Integer(required=True, validate=BIGINT, metadata={"description": "the record's leaf index"})
    tree_size = ma.fields.Integer(load_default=None, validate=BIGINT,
                                  metadata={"description": "a signed head's size (default: the latest)"})


class InclusionSchema(ma.Schema):
    leaf_index = ma.fields.Integer()
    tree_size = ma.fields.Integer()
    leaf_hash = ma.fields.String()
    inclusion_path = ma.fields.List(ma.fields.String())
    tree_head = ma.fields.Nested(TreeHeadSchema)


@bp.route("/proof/inclusion")
@bp.arguments(InclusionQuery, location="query")
@bp.alt_response(200, schema=InclusionSchema, description="An RFC 9162 inclusion proof against a signed head.")
def inclusion(query):
    who = _reader_of_heads()
    with ctx().db.session() as session:
        head = _head(session, query["tree_size"])
        if query["seq"] >= head.tree_size:
            raise invalid("seq", f"Leaf {query['seq']} is not in the tree of {head.tree_size}.")
        if not who.has("audit:read"):
            record = tree.record_at(session, query["seq"])
            if record is None or record["nhs_number"] is None:
                raise Problem(403, "Forbidden", "This leaf is in no person's access log: proving it needs audit:read.")
        proof = tree.inclusion_proof(session, query["seq"], head.tree_size)
    return jsonify(dict(proof, tree_head=_head_json(head)))


class ConsistencyQuery(ma.Schema):
    first = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=2**63 - 1))
    second = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=2**63 - 1))


class ConsistencySchema(ma.Schema):
    first = ma.fields.Integer()
    second = ma.fields.Integer()
    consistency_path = ma.fields.List(ma.fields.String())


@bp.route("/proof/consistency")
@bp.arguments(ConsistencyQuery, location="query")
@bp.alt_response(200, schema=ConsistencySchema, description="An RFC 9162 consistency proof between two signed heads.")
def consistency(query):
    if query["first"] > query["second"]:
        raise invalid("first", "Must not be larger than second.")
    with ctx().db.session() as session:
        _head(session, query["first"], "first")
        _head(session, query["second"], "second")
        return jsonify(tree.consistency_proof(session, query["first"], query["second"]))


class LeafHashesQuery(ma.Schema):
    start = ma.fields.Integer(required=True, validate=BIGINT)
    end = ma.fields.Integer(required=True, validate=BIGINT, metadata={"description": "exclusive"})


@bp.route("/leaf-hashes")
@bp.arguments(LeafHashesQuery, location="query")
@bp.alt_response(200, schema=ma.Schema.from_dict({"start": ma.fields.Integer(), "end": ma.fields.Integer(),
                                                   "leaf_hashes": ma.fields.List(ma.fields.String())},
                                                  name="LeafHashes")(),
                 description="The leaf hashes [start, end) of the log, for witnesses (no personal data).")
def leaf_hashes(query):
    start, end = query["start"], query["end"]
    if not start < end <= start + MAX_LEAF_HASHES:
        raise invalid("end", f"Must be more than start and at most start + {MAX_LEAF_HASHES}.")
    with ctx().db.session() as session:
        head = tree.latest_head(session)
        if head is None or end > head.tree_size:
            raise invalid("end", f"The signed log holds {head.tree_size if head else 0} leaves.")
        hashes = tree.leaf_hashes(session, start, end)
    return jsonify(start=start, end=end, leaf_hashes=[h.hex() for h in hashes])


@bp.route("/public-key")
@bp.doc(security=[])  # public: anyone checking a signed head needs it
@bp.alt_response(200, schema=ma.Schema.from_dict({"key_id": ma.fields.String(), "algorithm": ma.fields.String(),
                                                   "pem": ma.fields.String(), "jwk": ma.fields.Dict()},
                                                  name="PublicKey")(),
                 description="The key the tree heads are signed with (no token needed).")
def public_key():
    key = keys.public_key()
    return jsonify(key_id=keys.key_id(key), algorithm="Ed25519", pem=keys.public_pem(key),
                   jwk=keys.jwk(key))


# -- the person's access log -----------------------------------------------------------------------
class AccessLogSchema(AuditPageSchema):
    withheld = ma.fields.Integer(metadata={"description": "records of this page left out: of what the "
                                                          "caller's role may not see itself"})


@people.route("/<nhs_number>/access-log", parameters=nhs_path())
@people.arguments(AuditQuery, location="query")
@people.alt_response(200, schema=AccessLogSchema, description="Who looked at this person's record.")
def access_log(query, nhs_number):
    """Who looked at this person's record, when, why and with what outcome. Each item carries every
    field its leaf commits to, its ``leaf_index`` (null until sequenced, within a second) and its
    ``leaf_hash``, so anyone shown it can check it is in the signed log (docs/audit.md). A role is
    shown only the records of what it may see itself: the others are left out and counted in
    ``withheld``; and where a record holds text its caller wrote (a path, a purpose) naming another
    person or a record this role may not see, that is replaced and the item says ``redacted``
    (its ``leaf_hash`` still proves it is in the log)."""
    decision = policy.current()
    log = page([audit_log.c.nhs_number == decision.subject], query["after"], query["limit"])
    items = [item for item in log["items"] if item.get("initiative") not in decision.unseen]
    log["withheld"] = len(log["items"]) - len(items)
    shown = set(request_session().execute(select(subjects.c.resource_id).where(
        subjects.c.nhs_number == decision.subject, subjects.c.service.not_in(decision.unseen))).scalars())
    log["items"] = [_for_the_log(item, decision.subject, shown) for item in items]
    return jsonify(log)


def _for_the_log(item: dict, nhs_number: str, shown_ids: set[str]) -> dict:
    out = dict(item, leaf_hash=leaf_hash_of(item).hex())
    out["resource"] = redact(item["resource"], nhs_number, shown_ids)
    out["purpose"] = redact(item["purpose"], nhs_number, shown_ids)
    out["redacted"] = (out["resource"], out["purpose"]) != (item["resource"], item["purpose"])
    return out


# one pass, ids first: ten digits inside a record id are not an NHS number
IDENTIFIERS = re.compile(r"(?P<id>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
                         r"|(?P<nhs>(?<!\d)\d{10}(?!\d))")


def redact(text: str, nhs_number: str, shown_ids: set[str]) -> str:
    """What a caller wrote into its request (a path, a purpose) as this person's carers may read it:
    another person's NHS number, or the id of a record they may not see, is replaced."""
    def replace(match: re.Match) -> str:
        if match.group("id"):
            return match.group(0) if match.group(0).lower() in shown_ids else "[withheld]"
        return match.group(0) if match.group(0) == nhs_number else "[another person]"
    return IDENTIFIERS.sub(replace, text)
