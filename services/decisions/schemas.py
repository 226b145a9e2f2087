"""What the decisions API accepts and returns.

A shared decision (NICE NG197) holds the question, what matters to the person, and at least two
options, exactly one of them "no change" (doing nothing, or not changing what is done now). Each
option says what it involves, its benefits, its risks as natural frequencies ("10 in 100") and its
consequences.
"""
from __future__ import annotations

import re

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from coproduction.events import PrioritySchema, StrictBoolean, now
from coproduction.nhs_number import NHSNumber
from coproduction.paging import limit_field, page_schema
from coproduction.shapes import StrictSchema, TolerantSchema

SETTINGS = ("primary", "outpatient", "inpatient", "community", "mental_health")
STATUSES = ("opened", "recorded", "deferred", "superseded")
AID_FORMATS = ("leaflet", "web", "video", "option_grid", "patient_decision_aid", "other")
#: denominators a natural frequency may use ("x in 100"; rarer risks "x in 1,000" and up)
DENOMINATORS = (10, 100, 1000, 10000, 100000)
NATURAL_FREQUENCY = re.compile(r"^\s*(\d{1,3}(?:,\d{3})*|\d+)\s+in\s+(\d{1,3}(?:,\d{3})*|\d+)\s*$")

Text = lambda n=500, **kw: fields.String(validate=validate.Length(min=1, max=n), **kw)  # noqa: E731


def not_past(value) -> None:
    if value is not None and value < now().date():
        raise ValidationError("A revisit date cannot be in the past.")


def parse_natural_frequency(value: str) -> tuple[int, int]:
    """'10 in 100' -> (10, 100); ValueError saying what a natural frequency looks like."""
    match = NATURAL_FREQUENCY.match(value or "")
    if not match:
        raise ValueError(f"Give a natural frequency such as \"10 in 100\" (not {value!r}).")
    count, out_of = (int(g.replace(",", "")) for g in match.groups())
    if out_of not in DENOMINATORS:
        raise ValueError("The \"in\" number must be 10, 100, 1,000, 10,000 or 100,000, so risks compare "
                         f"(not {out_of:,}).")
    if count > out_of:
        raise ValueError(f"{count:,} in {out_of:,} is more than everyone.")
    return count, out_of


class NaturalFrequency(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        try:
            count, out_of = parse_natural_frequency(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        return f"{count:,} in {out_of:,}"


class RiskSchema(StrictSchema):
    text = Text(500, required=True, metadata={"description": "The harm, in plain words"})
    natural_frequency = NaturalFrequency(required=True, metadata={"example": "10 in 100"})
    timeframe = Text(100, load_default=None, allow_none=True, metadata={"example": "over 5 years"})
    # returned by the service; accepted back (a client may send what it read) and recomputed
    count = fields.Integer(metadata={"description": "Read-only: x of \"x in N\""})
    out_of = fields.Integer(metadata={"description": "Read-only: N of \"x in N\""})


class OptionSchema(StrictSchema):
    id = fields.UUID(load_default=None, metadata={"description": "Given by the service if absent"})
    label = Text(200, required=True)
    description = Text(2000, load_default=None, allow_none=True)
    is_no_change = StrictBoolean(load_default=False,
                                 metadata={"description": "Doing nothing, or not changing what is done now"})
    benefits = fields.List(Text(500), load_default=list, validate=validate.Length(max=20))
    risks = fields.List(fields.Nested(RiskSchema), load_default=list, validate=validate.Length(max=20))
    consequences = fields.List(Text(500), load_default=list, validate=validate.Length(max=20))


class DecisionAidSchema(StrictSchema):
    title = Text(300, required=True)
    url = fields.Url(load_default=None, allow_none=True, validate=validate.Length(max=1000))
    format = fields.String(load_default="other", validate=validate.OneOf(AID_FORMATS))
    source = Text(200, load_default=None, allow_none=True, metadata={"example": "NICE"})


class FollowUpSchema(StrictSchema):
    """What was done after the conversation; only the fields sent change (send null to clear one)."""

    summary_given = StrictBoolean(allow_none=True,
                                  metadata={"description": "A written summary was given to the person"})
    summary_given_at = fields.AwareDateTime(allow_none=True)
    letter_sent = StrictBoolean(allow_none=True)
    letter_sent_to = fields.List(Text(200), allow_none=True, validate=validate.Length(max=10),
                                 metadata={"example": ["person", "GP"]})
    letter_sent_at = fields.AwareDateTime(allow_none=True)
    revisit_by = fields.Date(allow_none=True, validate=not_past)
    notes = Text(2000, allow_none=True)



FOLLOW_UP_FIELDS = ("summary_given", "summary_given_at", "letter_sent", "letter_sent_to", "letter_sent_at",
                    "revisit_by", "notes")


def check_options(options: list[dict]) -> None:
    """NG197: at least two options, exactly one of them 'no change', labels and ids distinct."""
    if len(options) < 2:
        raise ValidationError("A shared decision needs at least two options, one of them \"no change\" "
                              "(doing nothing or carrying on as now).", "options")
    no_change = [o for o in options if o.get("is_no_change")]
    if len(no_change) != 1:
        raise ValidationError("Exactly one option must be the \"no change\" option (is_no_change: true); "
                              f"{len(no_change)} are.", "options")
    ids = [str(o["id"]) for o in options if o.get("id")]
    if len(ids) != len(set(ids)):
        raise ValidationError("Two options have the same id.", "options")
    labels = [o["label"].strip().lower() for o in options]
    if len(labels) != len(set(labels)):
        raise ValidationError("Two options have the same label.", "options")


class DecisionFields(StrictSchema):
    """The parts of a decision a clinician and the person write together."""

    setting = fields.String(required=True, validate=validate.OneOf(SETTINGS))
    encounter_id = Text(100, load_default=None, allow_none=True,
                        metadata={"description": "The admission, appointment or contact this decision belongs to"})
    question = Text(500, required=True)
    priorities = fields.List(fields.Nested(PrioritySchema), load_default=list, validate=validate.Length(max=50),
                             metadata={"description": "What matters to the person; an id read from the "
                                                      "portfolio may be reused and is kept as given"})
    options = fields.List(fields.Nested(OptionSchema), required=True, validate=validate.Length(max=10))
    decision_aids = fields.List(fields.Nested(DecisionAidSchema), load_default=list,
                                validate=validate.Length(max=20))
    lead_clinician = Text(200, load_default=None, allow_none=True)

    @validates_schema
    def _options(self, data, **kwargs):
        if "options" in data:
            check_options(data["options"])


class DecisionCreateSchema(DecisionFields):
    nhs_number = NHSNumber(required=True)
    supersedes = fields.UUID(load_default=None, allow_none=True,
                             metadata={"description": "A decision of the same person that this one replaces"})
    supersede_reason = Text(1000, load_default=None, allow_none=True)


class DecisionPatchSchema(DecisionFields):
    """Changing an opened or deferred decision (fields not given stay as they are)."""

    class Meta:
        unknown = RAISE

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("partial", True)
        super().__init__(*args, **kwargs)


class SupersedeSchema(StrictSchema):
    """Revisit a decision: a new one replaces it. Fields not given are carried over from the old one."""

    reason = Text(1000, required=True, metadata={"description": "Why the decision is being revisited"})
    setting = fields.String(validate=validate.OneOf(SETTINGS))
    encounter_id = Text(100, allow_none=True)
    question = Text(500)
    priorities = fields.List(fields.Nested(PrioritySchema), validate=validate.Length(max=50))
    options = fields.List(fields.Nested(OptionSchema), validate=validate.Length(max=10))
    decision_aids = fields.List(fields.Nested(DecisionAidSchema), validate=validate.Length(max=20))
    lead_clinician = Text(200, allow_none=True)

    @validates_schema
    def _options(self, data, **kwargs):
        if "options" in data:
            check_options(data["options"])


class RecordSchema(StrictSchema):
    chosen_option_id = fields.UUID(required=True)
    persons_reason = Text(2000, required=True, metadata={"description": "The person's reason, in their words"})
    clinician = Text(200, required=True, metadata={"description": "Who made the decision with the person"})
    others_involved = fields.List(Text(200), load_default=list, validate=validate.Length(max=10),
                                  metadata={"example": ["his wife"]})
    follow_up = fields.Nested(FollowUpSchema, load_default=None, allow_none=True)


class DeferSchema(StrictSchema):
    reason = Text(1000, required=True, metadata={"example": "Wants to talk it over with his wife"})
    revisit_by = fields.Date(required=True, validate=not_past)
    clinician = Text(200, load_default=None, allow_none=True)



class DecisionSchema(TolerantSchema):
    """A decision as returned (documentation; responses are built by ``handlers.decision_json``)."""

    id = fields.String()
    version = fields.Integer()
    status = fields.String(validate=validate.OneOf(STATUSES))
    nhs_number = fields.String()
    setting = fields.String()
    encounter_id = fields.String(allow_none=True)
    question = fields.String()
    priorities = fields.List(fields.Dict())
    options = fields.List(fields.Dict())
    decision_aids = fields.List(fields.Dict())
    lead_clinician = fields.String(allow_none=True)
    outcome = fields.Dict(allow_none=True)
    deferral = fields.Dict(allow_none=True)
    deferrals = fields.List(fields.Dict())
    follow_up = fields.Dict()
    supersedes = fields.String(allow_none=True)
    superseded_by = fields.String(allow_none=True)
    supersede_reason = fields.String(allow_none=True)
    created_at = fields.String()
    updated_at = fields.String()


class DecisionListQuery(Schema):
    nhs_number = NHSNumber(required=True)
    status = fields.String(validate=validate.OneOf(STATUSES))
    setting = fields.String(validate=validate.OneOf(SETTINGS))
    encounter_id = Text(100)
    limit = limit_field(200)
    cursor = Text(200)


DecisionListSchema = page_schema("DecisionListSchema", DecisionSchema)
