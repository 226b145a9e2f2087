"""examples/gp_sync_fhir.py, run as a separate process against the running platform: it gets a token
with its own key (private_key_jwt), pulls a patient's CarePlans page by page with fhirpy, and pushes a
change with If-Match, re-reading and retrying when someone else changed the plan first (412)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness import ROOT
from oauth_client import new_key, register
from test_fhir_api import call, create, new_nhs


@pytest.fixture(scope="module")
def platform(make_module_platform):
    p = make_module_platform().start()
    p.gp_key = new_key("ES384", kid="gp-sync-1")
    p.gp_client = register(p, p.gp_key, role="gp", org="A81001")
    p.other_client, p.other_key, p.hospital_client, p.hospital_key = p.gp_client, p.gp_key, None, None
    return p


def run(platform, tmp_path, *args: str) -> list[dict]:
    key_file = tmp_path / "gp-key.pem"
    key_file.write_bytes(platform.gp_key.as_pem(private=True))
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "gp_sync_fhir.py"), "--url", platform.url,
                          "--client-id", platform.gp_client, "--key", str(key_file), "--kid", "gp-sync-1",
                          "--state", str(tmp_path / "state"), "--page", "1", *args],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_the_fhir_gp_sync_pulls_pages_and_pushes_over_a_conflict(platform, tmp_path):
    nhs = new_nhs()
    plans = [create(platform, nhs), create(platform, nhs)]
    platform.portfolio_shows(nhs, lambda d: len(d["plans"]) == 2)  # searches read the projection
    lines = run(platform, tmp_path, "--patient", nhs)
    assert sorted(l["pulled"] for l in lines if "pulled" in l) == sorted(p["id"] for p in plans)
    assert lines[-1] == {"synced": True, "plans": 2, "changes": 2}

    # someone else changes the first plan after this GP system pulled it
    plan = plans[0]
    r = call(platform, "PUT", f"/CarePlan/{plan['id']}", json=dict(plan, addresses=[{"display": "asthma"}]),
             headers={"Content-Type": "application/fhir+json", "If-Match": 'W/"1"'})
    assert r.status_code == 200, r.text
    lines = run(platform, tmp_path, "--revise", plan["id"], "--add-condition", "low mood")
    assert {"conflict": plan["id"], "sent_if_match": "1"} in lines
    assert {"pushed": plan["id"], "version": "3", "retries": 1} in lines
    r = call(platform, "GET", f"/CarePlan/{plan['id']}")
    assert [a["display"] for a in r.json()["addresses"]] == ["asthma", "low mood"]  # nobody's change lost
