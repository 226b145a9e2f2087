#!/usr/bin/env python3
"""An example GP system that syncs care and support plans with coproduction over FHIR R4, with a
standard FHIR client (fhirpy) and the SMART Backend Services token flow (authlib, private_key_jwt).

Pull: for each patient (by NHS number) find the Patient, then page through their CarePlans
(``CarePlan?patient=Patient/<nhs>``, following ``next`` links), keeping each plan's newest version in
a local store. Push: change a plan here (add a condition, move the review date) and ``PUT`` it with
``If-Match: W/"<the version last seen>"``; on 412 read it again, apply the change on top and retry.

    python examples/gp_sync_fhir.py --url http://127.0.0.1:8000 --client-id <id> --key gp-key.pem \\
        --kid gp-2026-12 --state var/gp-sync-fhir --patient 9434765919
    python examples/gp_sync_fhir.py ... --revise <plan id> --add-condition "low mood"

Output: one JSON object per line (``pulled``, ``pushed``, ``conflict``, then ``synced``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound
from joserfc.jwk import ECKey, RSAKey

NHS = "https://fhir.nhs.uk/Id/nhs-number"
SCOPES = "system/Patient.rs system/CarePlan.rus"


class SmartPrivateKeyJWT(PrivateKeyJWT):
    """authlib's private_key_jwt, with the assertion valid 5 minutes (SMART's limit), not an hour."""

    def sign(self, auth, token_endpoint):
        return private_key_jwt_sign(auth.client_secret, client_id=auth.client_id, token_endpoint=token_endpoint,
                                    alg=self.alg, header=dict(self.headers or {}), expires_in=300)


def access_token(url: str, client_id: str, key_file: Path, kid: str) -> str:
    pem = key_file.read_text()
    key = RSAKey.import_key(pem) if "RSA" in pem else ECKey.import_key(pem)
    alg = "RS384" if isinstance(key, RSAKey) else "ES384"
    token_url = url.rstrip("/") + "/oauth2/token"
    session = OAuth2Session(client_id, key, scope=SCOPES,
                            token_endpoint_auth_method=SmartPrivateKeyJWT(token_url, headers={"kid": kid}, alg=alg))
    return session.fetch_token(token_url, grant_type="client_credentials")["access_token"]


def emit(**fields) -> None:
    print(json.dumps(fields, sort_keys=True), flush=True)


class Store:
    """Each plan's newest version, as this GP system last saw it."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.file = directory / "careplans.json"
        self.plans = json.loads(self.file.read_text()) if self.file.exists() else {}

    def keep(self, plan: dict) -> bool:
        held = self.plans.get(plan["id"])
        if held is not None and int(held["meta"]["versionId"]) >= int(plan["meta"]["versionId"]):
            return False
        self.plans[plan["id"]] = plan
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.plans, indent=1, sort_keys=True))
        tmp.replace(self.file)
        return True


def pull(fhir: SyncFHIRClient, store: Store, nhs: str, page: int) -> int:
    patients = fhir.resources("Patient").search(identifier=f"{NHS}|{nhs}").fetch()
    if not patients:
        emit(patient=nhs, found=False)
        return 0
    count = 0
    for plan in fhir.resources("CarePlan").search(patient=f"Patient/{nhs}").limit(page).fetch_all():
        plan = plan.serialize()
        emit(pulled=plan["id"], version=plan["meta"]["versionId"], status=plan["status"], kept=store.keep(plan))
        count += 1
    return count


def push(url: str, token: str, store: Store, plan_id: str, condition: str | None, review: str | None,
         attempts: int = 5) -> dict:
    reader = SyncFHIRClient(url, authorization=f"Bearer {token}")
    held = store.plans.get(plan_id) or reader.reference("CarePlan", plan_id).to_resource().serialize()
    for attempt in range(attempts):
        changed = dict(held)
        if condition and condition not in [a.get("display") for a in changed.get("addresses", [])]:
            changed["addresses"] = [*changed.get("addresses", []), {"display": condition}]
        if review:
            ext = [e for e in changed.get("extension", []) if not e["url"].endswith("/next-review-date")]
            ext.append({"url": "https://coproduction.example.org/fhir/StructureDefinition/next-review-date",
                        "valueDate": review})
            changed["extension"] = ext
        writer = SyncFHIRClient(url, authorization=f"Bearer {token}",
                                extra_headers={"If-Match": f'W/"{held["meta"]["versionId"]}"'})
        try:
            saved = writer.resource("CarePlan", **changed)
            saved.save()
        except MultipleResourcesFound:  # fhirpy's name for 412 Precondition Failed
            emit(conflict=plan_id, sent_if_match=held["meta"]["versionId"])
            held = reader.reference("CarePlan", plan_id).to_resource().serialize()
            store.keep(held)
            continue
        fresh = reader.reference("CarePlan", plan_id).to_resource().serialize()
        store.keep(fresh)
        emit(pushed=plan_id, version=fresh["meta"]["versionId"], retries=attempt)
        return fresh
    raise SystemExit(f"gave up after {attempts} conflicting attempts on CarePlan {plan_id}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway's base URL")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--key", required=True, type=Path, help="the client's private key (PEM)")
    parser.add_argument("--kid", required=True, help="the key's id in the registered JWK Set")
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--patient", action="append", default=[], metavar="NHS_NUMBER")
    parser.add_argument("--page", type=int, default=20)
    parser.add_argument("--revise", metavar="CAREPLAN_ID")
    parser.add_argument("--add-condition")
    parser.add_argument("--next-review", metavar="YYYY-MM-DD")
    args = parser.parse_args(argv)
    token = access_token(args.url, args.client_id, args.key, args.kid)
    base = args.url.rstrip("/") + "/fhir/R4"
    fhir = SyncFHIRClient(base, authorization=f"Bearer {token}", extra_headers={"X-Purpose": "GP record sync"})
    store = Store(args.state)
    pulled = sum(pull(fhir, store, nhs, args.page) for nhs in args.patient)
    if args.revise:
        push(base, token, store, args.revise, args.add_condition, args.next_review)
    emit(synced=True, plans=len(store.plans), changes=pulled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
