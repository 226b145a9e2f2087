"""The FHIR R4 server (/fhir/R4) with an off-the-shelf FHIR client (fhirpy) and a token from the real
token endpoint: find a patient by NHS number, read, vread and page their CarePlans and Goals, update
a CarePlan with If-Match (the portfolio shows it) and get 412 when stale; every resource and Bundle
validates as FHIR R4 (fhir.resources R4B, with FHIR's required value sets); access, consent and audit
as on the JSON door; a CarePlan that cannot be mapped is a 422 naming each element."""
from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
import requests
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.goal import Goal
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound, OperationOutcome as FhirpyOutcome

from harness import wait_for
from nhs import new_nhs
from oauth_client import FHIR, access_token, bearer, fhir_request, new_key, register
from test_fhir import (ACTIVITY_STATUS, CAREPLAN_INTENT, CAREPLAN_STATUS, GOAL_LIFECYCLE_CODES, ISSUE_SEVERITY,
                       OBSERVATION_STATUS)

NHS = "https://fhir.nhs.uk/Id/nhs-number"
IN_A_YEAR = (date.today() + timedelta(days=365)).isoformat()
REQUIRED = {"CarePlan": lambda r: r["status"] in CAREPLAN_STATUS and r["intent"] in CAREPLAN_INTENT
            and all(a["detail"]["status"] in ACTIVITY_STATUS for a in r.get("activity", [])),
            "Goal": lambda r: r["lifecycleStatus"] in GOAL_LIFECYCLE_CODES,
            "Observation": lambda r: r["status"] in OBSERVATION_STATUS,
            "OperationOutcome": lambda r: all(i["severity"] in ISSUE_SEVERITY for i in r["issue"]),
            "Account": lambda r: r["status"] in {"active", "inactive", "entered-in-error", "on-hold", "unknown"},
            "Task": lambda r: r["intent"] == "plan" and r["status"] in {
                "draft", "requested", "received", "accepted", "rejected", "ready", "cancelled", "in-progress",
                "on-hold", "failed", "completed", "entered-in-error"},
            "EpisodeOfCare": lambda r: r["status"] in {"planned", "waitlist", "active", "onhold", "finished",
                                                       "cancelled", "entered-in-error"}}


def valid(resource: dict) -> dict:
    """Validate with fhir.resources and FHIR's required bindings; Bundles entry by entry."""
    from fhir.resources.R4B import get_fhir_model_class
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    if resource["resourceType"] == "Bundle":
        for entry in resource.get("entry", []):
            valid(entry["resource"])
    check = REQUIRED.get(resource["resourceType"])
    assert check is None or check(resource), resource
    return resource


@pytest.fixture(scope="module")
def platform(make_module_platform):
    p = make_module_platform(services=("plans", "budgets")).start()
    key = new_key("ES384")
    p.gp_key, p.gp_client = key, register(p, key, role="gp", org="A81001")
    p.other_key = new_key("ES384")
    p.other_client = register(p, p.other_key, role="gp", org="B82002", name="Elsewhere Surgery")
    p.hospital_key = new_key("RS384")
    p.hospital_client = register(p, p.hospital_key, role="hospital", org="RX101", name="St Elsewhere")
    return p


def token(platform, who: str = "gp", scope: str | None = None) -> str:
    client, key = {"gp": (platform.gp_client, platform.gp_key), "other": (platform.other_client, platform.other_key),
                   "hospital": (platform.hospital_client, platform.hospital_key)}[who]
    return access_token(platform, client, key, scope)["access_token"]


def fhir_client(platform, who: str = "gp", **headers) -> SyncFHIRClient:
    return SyncFHIRClient(platform.url + FHIR, authorization=f"Bearer {token(platform, who)}",
                          extra_headers=headers or None)


def call(platform, method: str, path: str, who: str | None = "gp", **kwargs) -> requests.Response:
    return fhir_request(platform, who and token(platform, who), method, path, **kwargs)


def care_plan(nhs: str, **extra) -> dict:
    walk = str(uuid.uuid4())
    ext = "https://coproduction.example.org/fhir/StructureDefinition/"
    return {"resourceType": "CarePlan", "status": "draft", "intent": "plan",
            "subject": {"identifier": {"system": NHS, "value": nhs}},
            "extension": [{"url": ext + "what-matters", "extension": [
                {"url": "id", "valueString": walk}, {"url": "text", "valueString": "Walk my grandson to school"},
                {"url": "category", "valueCode": "physical_activity"}, {"url": "rank", "valuePositiveInt": 1}]},
                {"url": ext + "next-review-date", "valueDate": IN_A_YEAR}],
            "addresses": [{"display": "type 2 diabetes"}],
            "contained": [{"resourceType": "Goal", "id": "g1", "lifecycleStatus": "active",
                           "description": {"text": "Weight 105 kg"},
                           "target": [{"measure": {"text": "body weight"},
                                       "detailQuantity": {"value": 105, "unit": "kg"}, "dueDate": IN_A_YEAR}],
                           "extension": [{"url": ext + "serves-priority", "valueString": walk}]},
                          {"resourceType": "Goal", "id": "g2", "lifecycleStatus": "proposed",
                           "description": {"text": "Feel less low"}},
                          {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "HbA1c"},
                           "valueQuantity": {"value": 58, "unit": "mmol/mol"},
                           "effectiveDateTime": date.today().isoformat()}],
            "goal": [{"reference": "#g1"}, {"reference": "#g2"}],
            "supportingInfo": [{"reference": "#o1"}],
            "activity": [{"detail": {"status": "not-started", "description": "Walk 15 minutes after lunch",
                                     "extension": [{"url": ext + "action-owner", "valueCode": "person"}]}}],
            **extra}


def create(platform, nhs: str, **extra) -> dict:
    r = call(platform, "POST", "/CarePlan", json=care_plan(nhs, **extra),
             headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    assert r.headers["ETag"] == 'W/"1"' and r.headers["Location"].endswith("/_history/1")
    return valid(r.json())


def test_the_capability_statement_is_public_valid_and_truthful(platform):
    r = requests.get(platform.url + FHIR + "/metadata", timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/fhir+json")
    statement = r.json()
    CapabilityStatement.model_validate(statement)
    [rest] = statement["rest"]
    token_uri = rest["security"]["extension"][0]["extension"][0]["valueUri"]
    assert token_uri == platform.url + "/oauth2/token"
    assert rest["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    by_type = {res["type"]: res for res in rest["resource"]}
    assert {i["code"] for i in by_type["CarePlan"]["interaction"]} == {
        "read", "vread", "history-instance", "search-type", "create", "update"}
    assert {p["name"] for p in by_type["CarePlan"]["searchParam"]} >= {"patient", "subject:identifier", "status",
                                                                      "_lastUpdated"}
    assert {o["name"] for o in by_type["Patient"]["operation"]} == {"everything", "summary"}
    assert len(by_type["Subscription"]["extension"]) == 3
    # every advertised interaction is served: an unknown id is a 404 OperationOutcome, never a 405
    for kind, res in by_type.items():
        if {"code": "read"} in res["interaction"]:
            r = call(platform, "GET", f"/{kind}/{uuid.uuid4()}", who="gp")
            assert r.status_code in (404, 403, 422), (kind, r.status_code, r.text)
            OperationOutcome.model_validate(r.json())


def test_a_gp_system_finds_reads_pages_and_updates_with_fhirpy(platform):
    nhs = new_nhs()
    first = create(platform, nhs)
    second = create(platform, nhs)
    platform.portfolio_shows(nhs, lambda d: len(d["plans"]) == 2)  # searches read the projection
    client = fhir_client(platform)

    [patient] = client.resources("Patient").search(identifier=f"{NHS}|{nhs}").fetch()
    assert patient["id"] == nhs and patient["identifier"][0] == {"system": NHS, "value": nhs}

    # paged one at a time through next links
    plans = client.resources("CarePlan").search(patient=f"Patient/{nhs}").limit(1).fetch_all()
    assert sorted(p["id"] for p in plans) == sorted([first["id"], second["id"]])
    goals = client.resources("Goal").search(**{"subject:identifier": f"{NHS}|{nhs}"}).limit(1).fetch_all()
    assert len(goals) == 4 and {g["description"]["text"] for g in goals} == {"Weight 105 kg", "Feel less low"}
    for goal in goals:
        Goal.model_validate(goal.serialize())

    read = client.reference("CarePlan", first["id"]).to_resource()
    CarePlan.model_validate(read.serialize())
    assert read["meta"]["versionId"] == "1" and read["status"] == "draft"

    # update with If-Match: a new version, the portfolio shows the change
    changed = read.serialize()
    changed["addresses"] = [{"display": "type 2 diabetes"}, {"display": "low mood"}]
    updated = fhir_client(platform, **{"If-Match": 'W/"1"'}).resource("CarePlan", **changed)
    updated.save()
    r = call(platform, "GET", f"/CarePlan/{first['id']}")
    assert r.headers["ETag"] == 'W/"2"' and "Last-Modified" in r.headers
    assert [a["display"] for a in r.json()["addresses"]] == ["type 2 diabetes", "low mood"]
    platform.portfolio_shows(nhs, lambda d: any(p["id"] == first["id"] and p["conditions"] == [
        "type 2 diabetes", "low mood"] for p in d["plans"]))

    # the same change again with the version it was read at: 412, nothing changes
    stale = fhir_client(platform, **{"If-Match": 'W/"1"'}).resource("CarePlan", **dict(changed, addresses=[]))
    with pytest.raises(MultipleResourcesFound):  # fhirpy's name for a 412
        stale.save()
    assert call(platform, "GET", f"/CarePlan/{first['id']}").headers["ETag"] == 'W/"2"'

    # vread and history
    v1 = client.execute(f"CarePlan/{first['id']}/_history/1", method="get")
    assert v1["meta"]["versionId"] == "1" and [a["display"] for a in v1["addresses"]] == ["type 2 diabetes"]
    history = valid(client.execute(f"CarePlan/{first['id']}/_history", method="get"))
    assert history["type"] == "history" and [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    goal_id = first["goal"][0]["reference"].removeprefix("Goal/")
    goal_v1 = client.execute(f"Goal/{goal_id}/_history/1", method="get")
    assert goal_v1["description"]["text"] == "Weight 105 kg"


def test_everything_and_summary_validate_and_leave_out_what_is_withheld(platform):
    nhs = new_nhs()
    plan = create(platform, nhs)
    platform.portfolio_shows(nhs, lambda d: d["plan"] is not None)
    r = call(platform, "GET", f"/Patient/{nhs}/$everything")
    assert r.status_code == 200, r.text
    bundle = valid(r.json())
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds[0] == "Patient" and kinds.count("CarePlan") == 1 and kinds.count("Goal") == 2
    r = call(platform, "GET", f"/Patient/{nhs}/$summary")
    summary = valid(r.json())
    assert summary["type"] == "document" and summary["entry"][0]["resource"]["resourceType"] == "Composition"
    sections = summary["entry"][0]["resource"]["section"]
    assert sections[0]["title"] == "What matters to me" and "Walk my grandson" in sections[0]["text"]["div"]

    # the person withholds their plans from hospitals: a hospital (admitted) is not shown them
    r = platform.call("admin", "PUT", f"/v1/people/{nhs}/sharing", json={"withhold": {"hospital": ["plans"]}})
    assert r.status_code == 200, r.text
    r = requests.post(f"{platform.url}/v1/people/{nhs}/relationships", timeout=30,
                      headers=bearer(token(platform, "hospital")),
                      json={"kind": "admission", "reason": "Admitted through the emergency department",
                            "encounter_id": "A1"})
    assert r.status_code == 201, r.text
    r = call(platform, "GET", f"/Patient/{nhs}/$everything", who="hospital")
    bundle = valid(r.json())
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert "CarePlan" not in kinds and "Goal" not in kinds and "OperationOutcome" in kinds
    assert plan["id"] not in r.text
    r = call(platform, "GET", f"/CarePlan/{plan['id']}", who="hospital")
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"
    r = call(platform, "GET", "/CarePlan", who="hospital", params={"patient": nhs})
    assert r.status_code == 403


def test_no_relationship_is_a_403_operation_outcome_and_the_audit_names_the_person(platform):
    nhs = new_nhs()
    plan = create(platform, nhs)
    for path, params in ((f"/CarePlan/{plan['id']}", None), ("/CarePlan", {"patient": f"Patient/{nhs}"}),
                         (f"/Patient/{nhs}", None), (f"/Patient/{nhs}/$everything", None)):
        r = call(platform, "GET", path, who="other", params=params)
        assert r.status_code == 403, (path, r.text)
        outcome = OperationOutcome.model_validate(r.json())
        assert outcome.issue[0].code == "forbidden" and "care relationship" in outcome.issue[0].diagnostics
    r = platform.call("admin", "GET", "/v1/audit", params={"nhs_number": nhs, "limit": 1000})
    records = r.json()["items"]
    assert any(a["resource"].startswith(f"{FHIR}/CarePlan/{plan['id']}") and a["outcome"] == "refused"
               and a["org"] == "B82002" for a in records)
    assert any(a["resource"].startswith(f"{FHIR}/CarePlan") and a["outcome"] == "allowed" and a["org"] == "A81001"
               for a in records)


def test_a_search_names_one_valid_patient(platform):
    for params in ({}, {"patient": ["Patient/9434765919", "Patient/9434765919"]}, {"patient": "Patient/123"},
                   {"patient": "Patient/9434765919", "subject:identifier": f"{NHS}|9434765919"}):
        r = call(platform, "GET", "/CarePlan", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    r = call(platform, "GET", "/CarePlan", params={"patient": f"Patient/{new_nhs()}", "category": "x"})
    assert r.status_code in (400, 403)


def test_a_care_plan_that_cannot_be_mapped_is_refused_naming_each_element(platform):
    nhs = new_nhs()
    body = care_plan(nhs, encounter={"reference": "Encounter/1"}, intent="order")
    body["contained"][0]["target"][0]["dueDate"] = "2001-01-01"
    body["activity"][0]["detail"]["status"] = "bogus"
    r = call(platform, "POST", "/CarePlan", json=body, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 422, r.text
    outcome = valid(r.json())
    named = {e for issue in outcome["issue"] for e in issue.get("expression", [])}
    assert {"CarePlan.encounter", "CarePlan.intent", "CarePlan.activity[0].detail.status"} <= named, named
    # the service's own rules, named as the element that was sent
    body = care_plan(nhs)
    body["contained"][0]["target"][0]["dueDate"] = "2001-01-01"
    r = call(platform, "POST", "/CarePlan", json=body, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 422, r.text
    assert [i["expression"] for i in r.json()["issue"]] == [["CarePlan.contained[0].target[0].dueDate"]]
    # nothing was stored
    r = platform.call("admin", "GET", "/v1/plans", params={"nhs_number": nhs})
    assert r.json()["items"] == []
    # PUT without If-Match: 428
    plan = create(platform, nhs)
    r = call(platform, "PUT", f"/CarePlan/{plan['id']}", json=plan, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 428 and r.json()["resourceType"] == "OperationOutcome"


def test_conditional_create_makes_one_plan(platform):
    nhs = new_nhs()
    headers = {"Content-Type": "application/fhir+json", "If-None-Exist": "status=draft"}
    r = call(platform, "POST", "/CarePlan", json=care_plan(nhs), headers=headers)
    assert r.status_code == 201, r.text
    again = call(platform, "POST", "/CarePlan", json=care_plan(nhs), headers=headers)
    assert again.status_code == 200 and again.json()["id"] == r.json()["id"]
