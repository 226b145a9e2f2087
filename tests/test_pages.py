"""The web pages in a real headless Chromium: the clinician's portfolio page and the site report.

The demo person is built from all four services through the gateway's public API (``bootstrap.demo``:
an agreed care plan, an Expert Patients course, a personal health budget, two decisions on
admission), plus one decision that says a priority was achieved while the plan still holds it (a
conflict the page must flag). A client signs in with its token; the page must show the same ranked
priorities with the same sources as the API, flag the conflict, and, once the person withholds
their budget from hospital teams, say "withheld" and show nothing of the budget. Screenshots (and a
printed PDF) go to the test's output folder and to ``test-output/`` at the repository root.
"""
from __future__ import annotations

import base64
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from coproduction.nhs_number import with_check_digit
from bootstrap import demo
from gateway import clients, pages
from harness import ROOT, wait_for

NHS = demo.DEFAULT_NHS
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,900")
SERVICE_LABEL = pages.SERVICE_LABEL
WEIGHT = demo.WEIGHT


# -- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(make_module_platform):
    """All four services and the gateway, with the demo person loaded through the gateway's API."""
    p = make_module_platform(services=("plans", "budgets", "decisions", "groups")).start()
    demo.run(p.url, p.tokens, NHS, say=lambda _line: None)
    doc = p.portfolio_shows(NHS, lambda d: len(d["decisions"]) == 2 and d["budget"] and d["groups"])
    weight = next(x for x in doc["priorities"] if x["text"] == WEIGHT)
    # a newer decision says "achieved" of a priority the plan and the budget still hold: a conflict
    r = p.call("hospital", "POST", "/v1/decisions", json={
        "nhs_number": NHS, "setting": "inpatient", "encounter_id": "ADM-2",
        "question": "Does he still want weight-loss support after discharge?",
        "priorities": [{"id": weight["id"], "text": WEIGHT, "category": "weight_and_diet",
                        "expressed_by": "person", "status": "achieved"}],
        "options": [{"label": "Stop the weight management group", "benefits": ["Fewer appointments"],
                     "risks": [{"text": "weight goes back on", "natural_frequency": "30 in 100"}],
                     "consequences": ["Budget line item ends"]},
                    {"label": "No change", "is_no_change": True, "benefits": ["Keeps the support he knows"],
                     "risks": [{"text": "loses interest", "natural_frequency": "20 in 100"}],
                     "consequences": ["Reviewed with the budget"]}]})
    assert r.status_code == 201, r.text
    p.portfolio_shows(NHS, lambda d: len(d["decisions"]) == 3 and any(
        x["conflicts"] for x in d["priorities"] + d["past_priorities"]))
    return p


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-', dir=tmp_path_factory.getbasetemp())}")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path):
    """Save a full-page screenshot (and optionally the printed PDF) under the test's output folder."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    published = ROOT / "test-output"
    published.mkdir(exist_ok=True)

    def save(driver, name: str, width: int = 1280, pdf: bool = False) -> Path:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, height + 120)
        path = folder / f"{name}.png"
        assert driver.save_screenshot(str(path)), f"no screenshot for {name}"
        driver.set_window_size(1280, 900)
        shutil.copy(path, published / path.name)
        if pdf:
            printed = driver.execute_cdp_cmd("Page.printToPDF", {"preferCSSPageSize": True, "printBackground": True})
            pdf_path = folder / f"{name}.pdf"
            pdf_path.write_bytes(base64.b64decode(printed["data"]))
            shutil.copy(pdf_path, published / pdf_path.name)
        return path

    return save


def sign_in(driver, site, role: str, path: str):
    """Open a page; the gateway asks for the token; paste it; land on the page asked for."""
    driver.get(site.url + path)
    assert urlpath(driver.current_url).startswith("/login"), driver.current_url
    driver.find_element(By.ID, "token").send_keys(site.tokens[role])
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
    wait_for(lambda: urlpath(driver.current_url) == path, timeout=10, message=f"{path} after signing in")


def sign_out(driver):
    driver.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait_for(lambda: "signed_out" in driver.current_url, timeout=10, message="the signed-out page")


def urlpath(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def visible_priorities(driver) -> list[dict]:
    out = []
    for li in driver.find_elements(By.CSS_SELECTOR, "ol.priorities > li.priority"):
        out.append({
            "text": li.find_element(By.CSS_SELECTOR, ".priority-text").text.strip("“”\" "),
            "services": [s.get_attribute("data-service") for s in li.find_elements(By.CSS_SELECTOR, "li.source")],
            "source_text": [s.text for s in li.find_elements(By.CSS_SELECTOR, "li.source")],
            "conflict": bool(li.find_elements(By.CSS_SELECTOR, ".conflict-flag")),
        })
    return out


def api_portfolio(site, role: str) -> dict:
    r = site.call(role, "GET", f"/v1/people/{NHS}/portfolio")
    assert r.status_code == 200, r.text
    return r.json()


# -- the browser tests -------------------------------------------------------------------------------
def test_the_clinicians_page_shows_the_ranked_priorities_with_their_sources(site, browser, shots):
    sign_in(browser, site, "gp", f"/people/{NHS}")
    doc = api_portfolio(site, "gp")
    shown = visible_priorities(browser)
    assert [p["text"] for p in shown] == [p["text"] for p in doc["priorities"]], "same items, same order as the API"
    assert shown[0]["text"] == demo.GRANDSON, "the person's own first priority leads"
    for on_page, item in zip(shown, doc["priorities"]):
        assert on_page["services"] == [s["service"] for s in item["sources"]]
        for text, source in zip(on_page["source_text"], item["sources"]):
            assert text.startswith(SERVICE_LABEL[source["service"]]) and "recorded " in text
    grandson = shown[0]
    assert {"plans", "groups"} <= set(grandson["services"]), grandson
    assert len(doc["priorities"]) >= 3 and all(p["services"] for p in shown)
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "943 476 5919" in page

    # the conflict is flagged where the priority is shown, and announced at the top
    assert browser.find_element(By.CSS_SELECTOR, ".banner-conflict").text.startswith(
        "1 priority where initiatives disagree")
    weight_flags = browser.find_elements(By.XPATH, f"//*[contains(., '{WEIGHT}')]/ancestor::li[contains(@class,"
                                                   "'has-conflict')]")
    assert weight_flags, "the achieved-versus-active priority is flagged"

    # then every section, none withheld from a GP
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-withheld]")
    plan = browser.find_element(By.ID, "plan").text
    assert "type 2 diabetes" in plan and "Weight 105 kg" in plan and "Practice nurse J Okafor" in plan
    assert "with the person" in plan and "Walk 15 minutes after lunch" in plan
    budget = browser.find_element(By.ID, "budget").text
    assert "£1,140.00" in budget and "Gym membership with a supported induction" in budget
    assert "Direct payment" in budget and "Notional" in budget
    decisions = browser.find_element(By.ID, "decisions").text
    assert "Add an SGLT2 inhibitor tablet" in decisions and "worried about hypos" in decisions
    assert "He wants to talk it over with his wife first" in decisions
    courses = browser.find_element(By.ID, "courses").text
    assert "Living well with diabetes" in courses and "2 of 6 sessions attended" in courses
    assert len(browser.find_elements(By.CSS_SELECTOR, "#courses .dot-attended")) == 2
    assert len(browser.find_elements(By.CSS_SELECTOR, "#courses .dot-missed")) == 1
    freshness = browser.find_element(By.ID, "freshness").text
    for service in ("plans", "budgets", "decisions", "groups"):
        assert SERVICE_LABEL[service] in freshness
    assert "nothing received" not in freshness
    assert "decision opened: Does he still want" in browser.find_element(By.ID, "timeline").text

    shots(browser, "portfolio-gp")
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:  # printed: no navigation, no sign-out button, the confidentiality line shown
        assert not browser.find_element(By.CSS_SELECTOR, "nav.nav").is_displayed()
        assert browser.find_element(By.CSS_SELECTOR, ".confidential").is_displayed()
        shots(browser, "portfolio-gp-print", width=800, pdf=True)
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    sign_out(browser)
    assert "You have signed out" in browser.page_source


def test_consent_withholds_the_budget_from_hospital_teams_and_says_so(site, browser, shots):
    r = site.call("admin", "PUT", f"/v1/people/{NHS}/sharing", json={"withhold": {"hospital": ["budgets"]}})
    assert r.status_code == 200, r.text
    try:
        sign_in(browser, site, "hospital", f"/people/{NHS}")
        banner = browser.find_element(By.ID, "withheld-banner").text
        assert "Withheld" in banner and "Personal budget" in banner
        section = browser.find_element(By.ID, "budget")
        assert "withheld" in section.text.lower()
        assert section.find_elements(By.CSS_SELECTOR, "[data-withheld='budgets']")
        assert not section.find_elements(By.CSS_SELECTOR, "table"), "no line items"
        page = browser.find_element(By.TAG_NAME, "main").text
        for secret in ("£1,140.00", "Gym membership", "Talking therapy", "Jo Smith"):
            assert secret not in page, f"{secret!r} shown although the budget is withheld"
        shown = visible_priorities(browser)
        assert shown and all("budgets" not in p["services"] for p in shown)
        doc = api_portfolio(site, "hospital")
        assert doc["withheld"] == ["budgets"]
        assert [p["text"] for p in shown] == [p["text"] for p in doc["priorities"]], "exactly what the API shows"
        assert "withheld" in browser.find_element(By.CSS_SELECTOR, "#freshness tr[data-service='budgets']").text
        assert "Add an SGLT2 inhibitor tablet" in browser.find_element(By.ID, "decisions").text
        shots(browser, "portfolio-hospital-withheld")
        sign_out(browser)
    finally:
        site.call("admin", "PUT", f"/v1/people/{NHS}/sharing", json={"withhold": {}})


def test_the_site_report_draws_its_charts(site, browser, shots):
    sign_in(browser, site, "hospital", "/reports/coproduction")
    tiles = {t.get_attribute("id"): t.text for t in browser.find_elements(By.CSS_SELECTOR, ".tile")}
    assert tiles["tile-people"].startswith("1\n") and "people with a portfolio" in tiles["tile-people"]
    assert tiles["tile-two-or-more"].startswith("1\n") and "100%" in tiles["tile-two-or-more"]
    assert tiles["tile-plans"].startswith("1\n")
    assert tiles["tile-decisions"].startswith("3\n") and "of 3" in tiles["tile-decisions"]
    assert tiles["tile-budgets"].startswith("£1,140.00")
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) >= 12 and all(c.size["width"] > 200 and c.size["height"] > 20 for c in charts)
    bars = browser.find_elements(By.CSS_SELECTOR, "#chart-initiatives rect.bar")
    assert len(bars) == 1, "one person, holding four initiatives"
    assert NHS not in browser.page_source and demo.GRANDSON not in browser.page_source
    shots(browser, "report")
    sign_out(browser)


# -- sessions, CSRF, audit and the JSON report without a browser ---------------------------------------
def login(site, token: str) -> requests.Session:
    s = requests.Session()
    r = s.get(site.url + "/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)
    r = s.post(site.url + "/login", data={"csrf": csrf, "token": token, "next": f"/people/{NHS}"},
               allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == f"/people/{NHS}", r.text
    return s


def page_views(site, client_id: str) -> list[dict]:
    r = site.call("admin", "GET", "/v1/audit", params={"nhs_number": NHS, "limit": 1000})
    return [a for a in r.json()["items"] if a["client_id"] == client_id and a["resource"] == f"/people/{NHS}"]


def test_sessions_are_signed_http_only_and_end_when_the_client_is_revoked(site):
    db = site.database("gateway")
    client_id, token = clients.create(db, "Ward 7 nurses' station", "RX1", "hospital")
    r = site.call(None, "POST", f"/v1/people/{NHS}/relationships", headers={"Authorization": f"Bearer {token}"},
                  json={"kind": "admission", "encounter_id": "RX1-ADM-7", "reason": "Admitted to ward 7 overnight"})
    assert r.status_code == 201, r.text
    try:
        r = requests.get(site.url + f"/people/{NHS}", allow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=")

        s = requests.Session()
        page = s.get(site.url + "/login")
        cookie = page.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        # no CSRF token, a wrong token, or a bad client token: refused, nothing signed in
        assert s.post(site.url + "/login", data={"token": token}).status_code == 400
        assert s.post(site.url + "/login", data={"csrf": csrf + "x", "token": token}).status_code == 400
        r = s.post(site.url + "/login", data={"csrf": csrf, "token": "cpt_not-a-token"})
        assert r.status_code == 401 and "not valid" in r.text
        assert s.get(site.url + f"/people/{NHS}", allow_redirects=False).status_code == 302
        # a link to another site after signing in is not followed
        r = s.post(site.url + "/login", data={"csrf": csrf, "token": token, "next": "//evil.example/x"},
                   allow_redirects=False)
        assert r.status_code == 303 and r.headers["Location"] == "/"
        assert token not in str(s.cookies.get_dict()), "the token never goes into the cookie"

        s = login(site, token)
        before = len(page_views(site, client_id))
        r = s.get(site.url + f"/people/{NHS}")
        assert r.status_code == 200 and "What matters to the person" in r.text
        assert r.headers["Cache-Control"] == "no-store" and "frame-ancestors 'none'" in r.headers[
            "Content-Security-Policy"]
        views = page_views(site, client_id)  # written before the response was sent
        assert len(views) == before + 1, "one audit record per page view"
        assert views[-1]["outcome"] == "allowed" and views[-1]["scope"] == "portfolio:read"
        assert views[-1]["org"] == "RX1"

        # a refused view is audited too (someone the ward has no care relationship with: 403)
        other = with_check_digit("943476592") or with_check_digit("943476593")
        r = s.get(site.url + f"/people/{other}")
        assert r.status_code == 403 and "no care relationship" in r.text
        refused = site.call("admin", "GET", "/v1/audit", params={"nhs_number": other}).json()["items"]
        assert [(a["client_id"], a["outcome"]) for a in refused] == [(client_id, "refused")]
        assert s.get(site.url + "/people/1234567890").status_code == 422

        # logout needs the form's CSRF token; with it the session ends
        assert s.post(site.url + "/logout", data={}).status_code == 400
        assert s.get(site.url + f"/people/{NHS}").status_code == 200

        assert clients.revoke(db, client_id)
        r = s.get(site.url + f"/people/{NHS}", allow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"].startswith("/login"), "revoked: signed out at once"
        assert s.get(site.url + "/reports/coproduction", allow_redirects=False).status_code == 302
    finally:
        db.dispose()


def test_a_client_without_portfolio_read_gets_neither_page_nor_report(site):
    db = site.database("gateway")
    _id, token = clients.create(db, "Course admin", "VCS9", "community", without=["portfolio:read"])
    db.dispose()
    s = login(site, token)
    r = s.get(site.url + f"/people/{NHS}")
    assert r.status_code == 403 and "portfolio:read" in r.text and demo.GRANDSON not in r.text
    assert s.get(site.url + "/reports/coproduction").status_code == 403
    r = requests.get(site.url + "/v1/reports/coproduction", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403


def test_the_json_report_counts_without_personal_data(site):
    assert requests.get(site.url + "/v1/reports/coproduction").status_code == 401
    r = site.call("community", "GET", "/v1/reports/coproduction", params={"months": 3})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["people"] == {"with_portfolio": 1, "with_two_or_more_initiatives": 1,
                                "by_initiative_count": {"1": 0, "2": 0, "3": 0, "4": 1},
                                "by_initiative": {"plans": 1, "budgets": 1, "decisions": 1, "groups": 1},
                                "two_or_more_rate": 1.0}
    plans = report["plans"]
    assert plans["total"] == plans["with_priorities"] == plans["agreed_with_person"] == 1
    assert plans["with_priorities_and_agreed_with_person"] == 1 and plans["by_status"] == {"active": 1}
    decisions = report["decisions"]
    assert decisions["total"] == 3 and decisions["with_priorities"] == 3
    assert decisions["recorded"] == decisions["recorded_with_priorities"] == 1
    assert decisions["recorded_with_persons_reason"] == 1
    assert decisions["by_status"] == {"deferred": 1, "opened": 1, "recorded": 1}
    assert report["budgets"] == {"total": 1, "live": 1, "live_annual_pence": 114000, "currency": "GBP",
                                 "by_status": {"active": 1}}
    courses = report["courses"]
    assert courses["enrolments"] == courses["in_progress"] == 1 and courses["completion_rate"] is None
    over = report["over_time"]
    assert len(over["months"]) == 3 and set(over["series"]) == set(over["labels"])
    assert all(len(v) == 3 for v in over["series"].values())
    assert over["series"]["people"][-1] == 1 and over["series"]["people_two_or_more"][-1] == 1
    assert over["series"]["plans_agreed_with_person"][-1] == 1
    assert over["series"]["decisions_recorded_with_priorities"][-1] == 1
    assert over["series"]["budgets_agreed"][-1] == 1 and over["series"]["courses_completed"][-1] == 0
    text = r.text
    for personal in (NHS, demo.GRANDSON, demo.DRIVING, "Dr A Patel", "Jo Smith"):
        assert personal not in text, f"{personal!r} in the site report"
    assert site.call("community", "GET", "/v1/reports/coproduction", params={"months": 0}).status_code == 422
    spec = requests.get(site.url + "/openapi.json").json()
    assert "/v1/reports/coproduction" in spec["paths"]


# -- the filters and the redirect rule, without a server -----------------------------------------------
def test_formatting_and_the_safe_redirect_rule():
    from flask import Flask
    assert pages.money(114000) == "£1,140.00" and pages.money(5) == "£0.05" and pages.money(None) == "—"
    assert pages.nhs("9434765919") == "943 476 5919"
    assert pages.when("2026-11-25T10:00:00Z") == "25 Nov 2026 10:00" and pages.day("2027-03-14") == "14 Mar 2027"
    assert pages.label("under_review") == "Under review" and pages.percent(0.5) == "50%"
    app = Flask(__name__)
    app.register_blueprint(pages.bp)
    with app.test_request_context("/login"):
        for bad in ("https://evil.example/", "//evil.example", "/\\evil.example", "javascript:alert(1)", ""):
            assert pages._safe_next(bad) == "/", bad
        assert pages._safe_next(f"/people/{NHS}?x=1") == f"/people/{NHS}?x=1"
