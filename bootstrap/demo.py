"""``coproduction demo``: load a realistic story through the gateway's public HTTP API.

A man with type 2 diabetes and low mood (NHS number 943 476 5919 by default):

1. his GP and he agree a Year of Care care and support plan (what matters to him, goals, actions);
2. a community provider enrols him on an Expert Patients course: attendance and weekly action plans;
3. social care agrees a personal health budget for his weight and his mental health;
4. he is admitted; the hospital declares the admission (its care relationship with him), the
   inpatient team reads his portfolio and decides with him how to manage his
   blood glucose, reusing the id of "Keep driving for work" from the portfolio, and he defers a second
   decision until he has talked it over with his wife.

Every call goes through the gateway with the development clients' tokens (``var/dev-clients.json``,
written by ``coproduction run``) or a ``--token-file`` of the same shape (``{"gp": "cpt_…", …}``).
Nothing is skipped: if a service is not up, the demo stops and says which and at what step.
Creates carry an Idempotency-Key and transitions check the current state first, so running the demo
again completes a half-loaded story instead of duplicating it.
"""
from __future__ import annotations

import json
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Callable

import requests

from .demo_client import DemoError, Gateway, priority_id

DEFAULT_NHS = "9434765919"
ROLES = ("gp", "community", "social_care", "hospital")


# -- the story ----------------------------------------------------------------------------------
DRIVING = "Keep driving for work"
GRANDSON = "Walk my grandson to school"
MOOD = "Feel like myself again and get back to the allotment"
WEIGHT = "Lose enough weight to get off the sofa and out"


def plan_body(nhs: str, today: date) -> dict:
    return {
        "nhs_number": nhs,
        "conditions": ["type 2 diabetes", "low mood"],
        "priorities": [
            {"text": GRANDSON, "category": "physical_activity", "expressed_by": "person", "rank": 1},
            {"text": DRIVING, "category": "work_and_money", "expressed_by": "person", "rank": 2},
            {"text": MOOD, "category": "mental_wellbeing", "expressed_by": "person", "rank": 3},
            {"text": WEIGHT, "category": "weight_and_diet", "expressed_by": "person", "rank": 4},
        ],
        "goals": [
            {"description": "Weight 105 kg",
             "target": {"measure": "body weight", "value": 105, "unit": "kg",
                        "due": (today + timedelta(days=300)).isoformat()}},
            {"description": "HbA1c under 58 mmol/mol",
             "target": {"measure": "HbA1c", "value": 58, "unit": "mmol/mol",
                        "due": (today + timedelta(days=180)).isoformat()}},
            {"description": "Out of the house with friends most weeks"},
        ],
        "actions": [
            {"text": "Walk 15 minutes after lunch", "owner": "person"},
            {"text": "Refer to the Expert Patients course", "owner": "practice"},
            {"text": "Talk to social care about a personal health budget", "owner": "practice"},
            {"text": "Join the allotment society's Tuesday group", "owner": "community"},
        ],
        "results": [{"name": "HbA1c", "value": "71", "unit": "mmol/mol",
                     "taken_on": (today - timedelta(days=14)).isoformat()},
                    {"name": "PHQ-9", "value": "14", "taken_on": (today - timedelta(days=14)).isoformat()}],
        "next_review_date": (today + timedelta(days=180)).isoformat(),
        "care_coordinator": "Practice nurse J Okafor, Riverside Surgery",
    }


def step_plan(gw: Gateway, today: date) -> dict:
    step = "GP: Year of Care care and support plan"
    plan, _ = gw.call("gp", "POST", "/v1/plans", step, json_body=plan_body(gw.nhs, today), key="plan")
    plan, etag = gw.call("gp", "GET", f"/v1/plans/{plan['id']}", step)
    if plan["status"] == "draft":
        plan, _ = gw.call("gp", "POST", f"/v1/plans/{plan['id']}/agree", step, etag=etag,
                          json_body={"agreed_by": "Dr A Patel, Riverside Surgery", "person_agreed": True})
    gw.done("GP: care and support plan agreed with him", f"plans/{plan['id']}")
    return plan


def step_course(gw: Gateway, today: date, ids: dict[str, str]) -> dict:
    step = "community: Expert Patients course"
    course, _ = gw.call("community", "POST", "/v1/courses", step, key="course", json_body={
        "programme": "expert_patients", "title": "Living well with diabetes", "sessions": 6,
        "starts_on": (today - timedelta(days=21)).isoformat(), "capacity": 12,
        "venue": "Riverside Community Centre",
        "tutors": [{"name": "Sam Lee", "role": "lay_tutor"}, {"name": "Priya Shah", "role": "lay_tutor"}]})
    course, etag = gw.call("community", "GET", f"/v1/courses/{course['id']}", step)
    if course.get("status") == "planned":
        course, _ = gw.call("community", "POST", f"/v1/courses/{course['id']}/start", step, etag=etag)
    enrolment, _ = gw.call("community", "POST", f"/v1/courses/{course['id']}/enrolments", step, key="enrolment",
                           json_body={"nhs_number": gw.nhs, "referral_source": "care_plan", "priorities": [
                               {"id": ids[GRANDSON], "text": GRANDSON, "category": "physical_activity",
                                "expressed_by": "person"},
                               {"id": ids[MOOD], "text": MOOD, "category": "mental_wellbeing",
                                "expressed_by": "person"}]})
    path = f"/v1/enrolments/{enrolment['id']}"
    enrolment, etag = gw.call("community", "GET", path, step)
    attended = {a["session_no"] for a in enrolment.get("attendance", [])}
    for session_no, present in ((1, True), (2, True), (3, False)):
        if session_no not in attended:
            enrolment, etag = gw.call("community", "POST", path + "/attendance", step, etag=etag,
                                      json_body={"session_no": session_no, "attended": present})
    weeks = {p["week"] for p in enrolment.get("action_plans", [])}
    for week, plan in ((1, {"what": "walk", "how_much": "15 minutes", "when": "after lunch",
                            "how_often": "5 days", "confidence": 8}),
                       (2, {"what": "walk to the allotment", "how_much": "20 minutes", "when": "mornings",
                            "how_often": "3 days", "confidence": 7})):
        if week not in weeks:
            enrolment, etag = gw.call("community", "POST", path + "/action-plans", step, etag=etag,
                                      json_body=dict(plan, week=week))
    gw.done(f"community: Expert Patients course, {enrolment.get('sessions_attended', '?')} sessions attended, "
            f"{len(enrolment.get('action_plans', []))} action plans", f"enrolments/{enrolment['id']}")
    return enrolment


def step_budget(gw: Gateway, today: date, plan: dict, ids: dict[str, str]) -> dict:
    step = "social care: personal health budget"
    start = today - timedelta(days=7)
    budget, _ = gw.call("social_care", "POST", "/v1/budgets", step, key="budget", json_body={
        "nhs_number": gw.nhs, "plan_id": plan["id"], "annual_pence": 114000,
        "holdings": [{"type": "direct_payment", "pence": 54000},
                     {"type": "notional", "pence": 60000, "managed_by": "Riverside ICB"}],
        "priorities": [
            {"id": ids[WEIGHT], "text": WEIGHT, "category": "weight_and_diet", "expressed_by": "person"},
            {"id": ids[MOOD], "text": MOOD, "category": "mental_wellbeing", "expressed_by": "person"}],
        "line_items": [
            {"description": "Gym membership with a supported induction", "category": "physical_activity",
             "sector": "private", "pence": 30000, "frequency": "annual", "provider": "Riverside Leisure",
             "paid_from": "direct_payment", "priority_ids": [ids[WEIGHT]],
             "effective_from": start.isoformat()},
            {"description": "Weight management group", "category": "weight_management", "sector": "voluntary",
             "pence": 2000, "frequency": "monthly", "provider": "Healthy Steps", "paid_from": "direct_payment",
             "priority_ids": [ids[WEIGHT]], "effective_from": start.isoformat()},
            {"description": "Talking therapy sessions (weekly, 12 weeks)", "category": "therapy",
             "sector": "voluntary", "pence": 5000, "frequency": "weekly", "provider": "Mind in Riverside",
             "paid_from": "notional", "priority_ids": [ids[MOOD]], "effective_from": start.isoformat(),
             "effective_to": (start + timedelta(weeks=12)).isoformat()},
        ],
        "holder": {"relationship": "person"},
        "care_coordinator": "Jo Smith, personal health budget lead",
        "next_review_date": (today + timedelta(days=90)).isoformat()})
    path = f"/v1/budgets/{budget['id']}"
    budget, etag = gw.call("social_care", "GET", path, step)
    if budget["status"] == "requested":
        budget, etag = gw.call("social_care", "POST", path + "/start-planning", step, etag=etag, json_body={})
    if budget["status"] == "planning":
        budget, etag = gw.call("social_care", "POST", path + "/agree", step, etag=etag,
                               json_body={"agreed_by": "Jo Smith, personal health budget lead",
                                          "person_agreed": True})
    if budget["status"] == "agreed":
        budget, etag = gw.call("social_care", "POST", path + "/activate", step, etag=etag,
                               json_body={"start_date": start.isoformat()})
    gw.done(f"social care: personal health budget £{budget['annual_pence'] / 100:,.0f} a year, {budget['status']}",
            f"budgets/{budget['id']}")
    return budget


def glucose_decision(gw: Gateway, driving_id: str, encounter: str) -> dict:
    return {
        "nhs_number": gw.nhs, "setting": "inpatient", "encounter_id": encounter,
        "question": "How should we manage his blood glucose after this admission?",
        "priorities": [{"id": driving_id, "text": DRIVING, "category": "work_and_money", "expressed_by": "person"}],
        "options": [
            {"label": "Start insulin",
             "description": "Once-daily long-acting insulin, started on the ward with the diabetes nurse",
             "benefits": ["Glucose comes down within days", "HbA1c target more likely to be reached"],
             "risks": [{"text": "a hypo needing someone else's help", "natural_frequency": "10 in 100",
                        "timeframe": "in the first year"},
                       {"text": "weight gain of 2 kg or more", "natural_frequency": "50 in 100",
                        "timeframe": "in the first year"}],
             "consequences": ["Must tell the DVLA and check glucose before every drive",
                              "Injections and finger-prick checks every day"]},
            {"label": "Add an SGLT2 inhibitor tablet",
             "description": "A tablet added to metformin",
             "benefits": ["No injections", "Some weight loss"],
             "risks": [{"text": "genital thrush", "natural_frequency": "5 in 100", "timeframe": "in the first year"},
                       {"text": "diabetic ketoacidosis", "natural_frequency": "1 in 1,000",
                        "timeframe": "each year"}],
             "consequences": ["Kidney blood test in 3 months", "Stop it on sick days"]},
            {"label": "No change until his GP review", "is_no_change": True,
             "description": "Carry on with metformin alone and review with his GP in 2 weeks",
             "benefits": ["Nothing new to learn while in hospital"],
             "risks": [{"text": "glucose still high at the GP review", "natural_frequency": "70 in 100"}],
             "consequences": ["GP review within 2 weeks"]},
        ],
        "decision_aids": [{"title": "Type 2 diabetes: options for lowering blood glucose",
                           "format": "patient_decision_aid", "source": "NICE"}],
        "lead_clinician": "Dr R Mensah, diabetes and endocrinology",
    }


def step_admission(gw: Gateway, today: date) -> tuple[dict, dict]:
    step = "hospital: shared decisions on admission"
    encounter = f"ADM-{today:%Y%m%d}-0457"
    gw.call("hospital", "POST", f"/v1/people/{gw.nhs}/relationships", step, json_body={
        "kind": "admission", "encounter_id": encounter,
        "reason": "Emergency admission with high blood glucose; inpatient diabetes team"})
    gw.done("hospital: admission declared (its care relationship with him, for 72 hours)", encounter)
    doc = gw.portfolio("hospital")
    driving_id = priority_id(doc, DRIVING)  # what matters to him, read from the portfolio
    decision, _ = gw.call("hospital", "POST", "/v1/decisions", step, key="decision-glucose",
                          json_body=glucose_decision(gw, driving_id, encounter))
    path = f"/v1/decisions/{decision['id']}"
    decision, etag = gw.call("hospital", "GET", path, step)
    if decision["status"] in ("opened", "deferred"):
        chosen = next(o for o in decision["options"] if o["label"] == "Add an SGLT2 inhibitor tablet")
        decision, etag = gw.call("hospital", "POST", path + "/record", step, etag=etag, json_body={
            "chosen_option_id": chosen["id"],
            "persons_reason": "I drive for work and I'm worried about hypos at the wheel; "
                              "tablets I can manage.",
            "clinician": "Dr R Mensah", "others_involved": ["his wife, Angela"]})
    if not decision["follow_up"].get("letter_sent"):
        decision, etag = gw.call("hospital", "POST", path + "/follow-up", step, etag=etag, json_body={
            "summary_given": True, "letter_sent": True, "letter_sent_to": ["the person", "GP"],
            "revisit_by": (today + timedelta(days=90)).isoformat()})
    gw.done(f"hospital: decided with him: {decision['outcome']['chosen_option_label']}",
            f"decisions/{decision['id']}")

    mood_id = priority_id(doc, MOOD)
    deferred, _ = gw.call("hospital", "POST", "/v1/decisions", step, key="decision-mood", json_body={
        "nhs_number": gw.nhs, "setting": "inpatient", "encounter_id": encounter,
        "question": "Should we refer him to the liaison psychiatry team while he is on the ward?",
        "priorities": [{"id": mood_id, "text": MOOD, "category": "mental_wellbeing", "expressed_by": "person"}],
        "options": [
            {"label": "Refer to liaison psychiatry now", "benefits": ["Seen within 24 hours"],
             "risks": [{"text": "feels labelled or overwhelmed", "natural_frequency": "20 in 100"}],
             "consequences": ["An assessment on the ward"]},
            {"label": "Keep to his talking therapy after discharge", "is_no_change": True,
             "benefits": ["Stays with the therapist he knows"],
             "risks": [{"text": "mood worsens before the next session", "natural_frequency": "15 in 100"}],
             "consequences": ["Next session in 10 days"]}],
        "lead_clinician": "Dr R Mensah"})
    path = f"/v1/decisions/{deferred['id']}"
    deferred, etag = gw.call("hospital", "GET", path, step)
    if deferred["status"] == "opened":
        deferred, etag = gw.call("hospital", "POST", path + "/defer", step, etag=etag, json_body={
            "reason": "He wants to talk it over with his wife first",
            "revisit_by": (today + timedelta(days=2)).isoformat(), "clinician": "Dr R Mensah"})
    gw.done(f"hospital: liaison psychiatry referral deferred until {deferred['deferral']['revisit_by']}",
            f"decisions/{deferred['id']}")
    return decision, deferred


def run(url: str, tokens: dict[str, str], nhs: str = DEFAULT_NHS, timeout: float = 30.0,
        say: Callable[[str], None] = print) -> dict:
    """Load the story; return the final portfolio. Raises DemoError saying what failed."""
    missing = [r for r in ROLES if not tokens.get(r)]
    if missing:
        raise DemoError(f"no token for {', '.join(missing)}: the token file needs one per role ({', '.join(ROLES)}).")
    gw = Gateway(url, tokens, nhs, timeout, say)
    try:
        requests.get(gw.url + "/healthz", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        raise DemoError(f"cannot reach the gateway at {gw.url} ({type(exc).__name__}). "
                        "Start the platform first: `make run` (or `coproduction run`).") from None
    today = date.today()
    say(f"loading the demo story for NHS number {nhs} through {gw.url}")
    plan = step_plan(gw, today)
    doc = gw.wait_portfolio("GP: Year of Care care and support plan", "the agreed plan",
                            lambda d: bool(d.get("plan")) and d["plan"].get("status") == "active")
    ids = {text: priority_id(doc, text) for text in (GRANDSON, DRIVING, MOOD, WEIGHT)}
    enrolment = step_course(gw, today, ids)
    budget = step_budget(gw, today, plan, ids)
    gw.wait_portfolio("before the admission", "the course and the budget",
                      lambda d: any(g.get("id") == enrolment["id"] for g in d.get("groups") or [])
                      and (d.get("budget") or {}).get("id") == budget["id"])
    decision, deferred = step_admission(gw, today)
    doc = gw.wait_portfolio("hospital: shared decisions on admission", "both decisions",
                            lambda d: {x["id"]: x["status"] for x in d.get("decisions") or []}
                            .items() >= {decision["id"]: "recorded", deferred["id"]: "deferred"}.items())
    say("\nwhat matters to him, from every initiative:")
    for p in doc["priorities"]:
        say(f"  {p.get('position', '-')}. {p['text']}   ({', '.join(p['initiatives'])})")
    say(f"\nsee it:\n  portfolio          GET {gw.url}/v1/people/{nhs}/portfolio"
        f"\n  admission summary  GET {gw.url}/v1/people/{nhs}/admission-summary"
        "\n  (Authorization: Bearer <the hospital token in var/dev-clients.json>)")
    return doc


def load_tokens(path: Path) -> dict[str, str]:
    if not path.exists():
        raise DemoError(f"no token file at {path}: start the platform with `make run` (it writes "
                        "var/dev-clients.json), or pass --token-file with a JSON object of role -> token.")
    try:
        tokens = json.loads(path.read_text())
    except ValueError as exc:
        raise DemoError(f"{path} is not JSON ({exc}).") from None
    if not isinstance(tokens, dict):
        raise DemoError(f"{path} must hold a JSON object of role -> token.")
    return tokens


def main(url: str, token_file: Path, nhs: str, timeout: float) -> int:
    from coproduction.nhs_number import is_valid
    if not is_valid(nhs):
        print(f"demo: {nhs} is not a valid NHS number", file=sys.stderr)
        return 2
    try:
        run(url, load_tokens(token_file), nhs, timeout)
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0
