"""`coproduction demo` loads the whole story through the gateway's public API, and says clearly when it cannot."""
from __future__ import annotations

import json

from bootstrap.cli import main
from harness import free_port

NHS = "9434765919"


def run_demo(platform, tmp_path, *extra) -> int:
    token_file = tmp_path / "tokens.json"
    token_file.write_text(json.dumps(platform.tokens))
    return main(["demo", "--url", platform.url, "--token-file", str(token_file), "--timeout", "30", *extra])


def test_demo_loads_the_story_through_the_gateway_and_can_run_again(make_platform, tmp_path, capsys):
    platform = make_platform(services=("plans", "decisions", "budgets", "groups")).start()
    assert run_demo(platform, tmp_path) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "hospital: decided with him: Add an SGLT2 inhibitor tablet" in out

    doc = platform.call("hospital", "GET", f"/v1/people/{NHS}/portfolio").json()
    assert doc["plan"]["status"] == "active" and doc["plan"]["conditions"] == ["type 2 diabetes", "low mood"]
    assert doc["budget"]["status"] == "active" and doc["budget"]["annual_pence"] == 114000
    [enrolment] = doc["groups"]
    assert enrolment["programme"] == "expert_patients" and enrolment["sessions_attended"] == 2
    assert len(enrolment["action_plans"]) == 2
    assert sorted(d["status"] for d in doc["decisions"]) == ["deferred", "recorded"]
    by_text = {p["text"]: p for p in doc["priorities"]}
    driving = by_text["Keep driving for work"]
    assert driving["initiatives"] == ["decisions", "plans"], "the hospital reused the id it read"
    recorded = next(d for d in doc["decisions"] if d["status"] == "recorded")
    assert recorded["priorities"][0]["id"] == driving["id"]
    assert recorded["outcome"]["persons_reason"].startswith("I drive for work")
    mood = by_text["Feel like myself again and get back to the allotment"]
    assert mood["initiatives"] == ["budgets", "decisions", "groups", "plans"]
    assert by_text["Walk my grandson to school"]["initiatives"] == ["groups", "plans"]

    s = platform.call("hospital", "GET", f"/v1/people/{NHS}/admission-summary").json()
    assert [d["status"] for d in s["decisions"]["open"]] == ["deferred"]
    assert s["decisions"]["recent"][0]["chosen_option"] == "Add an SGLT2 inhibitor tablet"
    assert {a["category"] for a in s["budget"]["affected_support"]} == {"physical_activity", "weight_management",
                                                                          "therapy"}
    assert s["courses"]["in_progress"][0]["title"] == "Living well with diabetes"

    # again: the story completes where it is, nothing is created twice
    assert run_demo(platform, tmp_path) == 0, capsys.readouterr().err
    again = platform.call("hospital", "GET", f"/v1/people/{NHS}/portfolio").json()
    assert (len(again["plans"]), len(again["groups"]), len(again["decisions"])) == (1, 1, 2)
    assert again["budget"]["id"] == doc["budget"]["id"]
    assert len(again["timeline"]) == len(doc["timeline"])


def test_demo_stops_with_a_clear_message_when_a_service_is_not_up(make_platform, tmp_path, capsys):
    nobody = {"GROUPS_URL": f"http://127.0.0.1:{free_port()}", "BUDGETS_URL": f"http://127.0.0.1:{free_port()}"}
    platform = make_platform(services=("plans", "decisions"), extra_env=nobody).start()
    assert run_demo(platform, tmp_path) == 1
    err = capsys.readouterr().err
    assert "community: Expert Patients course: the groups service is not up or not ready" in err
    assert "run the demo again" in err
    # it stopped there: nothing after the course was attempted (the GP practice holds his plan)
    doc = platform.call("gp", "GET", f"/v1/people/{NHS}/portfolio").json()
    assert doc["plan"]["status"] == "active" and doc["decisions"] == [] and doc["budget"] is None


def test_demo_needs_a_gateway_and_tokens(tmp_path, capsys):
    missing = tmp_path / "none.json"
    assert main(["demo", "--url", f"http://127.0.0.1:{free_port()}", "--token-file", str(missing)]) == 1
    assert "no token file" in capsys.readouterr().err
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"gp": "x", "community": "x", "social_care": "x", "hospital": "x"}))
    assert main(["demo", "--url", f"http://127.0.0.1:{free_port()}", "--token-file", str(tokens)]) == 1
    assert "cannot reach the gateway" in capsys.readouterr().err
    tokens.write_text(json.dumps({"gp": "x"}))
    assert main(["demo", "--token-file", str(tokens)]) == 1
    assert "no token for community, social_care, hospital" in capsys.readouterr().err


def test_demo_on_the_embedded_defaults(make_platform, tmp_path, capsys):
    """What a newcomer runs: `make run` (SQLite files, the filesystem bus), then `coproduction demo`."""
    platform = make_platform(services=("plans", "decisions", "budgets", "groups"), broker="filesystem",
                             database="sqlite").start()
    assert run_demo(platform, tmp_path) == 0, capsys.readouterr().err
    doc = platform.call("hospital", "GET", f"/v1/people/{NHS}/portfolio").json()
    assert {p["text"]: p["initiatives"] for p in doc["priorities"]}["Keep driving for work"] == ["decisions", "plans"]
    assert platform.call("hospital", "GET", f"/v1/people/{NHS}/admission-summary").status_code == 200
