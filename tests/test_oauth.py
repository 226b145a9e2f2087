"""Issue 17, the token endpoint: SMART Backend Services end to end with an off-the-shelf OAuth
client, every kind of bad assertion refused with the right RFC 6749 error, scopes, and discovery."""
from __future__ import annotations

import json
import time
import uuid
import warnings

import pytest
import requests
from joserfc import jws, jwt
from joserfc.jwk import KeySet, OctKey, RSAKey
from sqlalchemy import func, select

from bodies import plan_body, priority
from coproduction.auth import ROLES
from harness import wait_for
from oauth_client import (ASSERTION_TYPE, access_token, ask_token, assertion, bearer, cli, new_key,
                          oauth_session, register, token_url)

NHS = "9434765919"
PLAN = plan_body(NHS, priority("Get back to the allotment", "learning_and_hobbies"))
GP_GRANTABLE = sorted(ROLES["gp"]) + ["system/Account.rs", "system/CarePlan.crus", "system/EpisodeOfCare.rs",
                                      "system/Goal.rs", "system/Observation.rs", "system/Patient.rs", "system/Task.rs"]


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_the_smart_backend_services_flow_with_an_off_the_shelf_client(platform, alg):
    config = requests.get(platform.url + "/.well-known/smart-configuration", timeout=10).json()
    key = new_key(alg)
    client_id = register(platform, key, org="A81001")
    session = oauth_session(platform, client_id, key)  # authlib: assertion signed, token fetched
    token = session.token
    assert config["token_endpoint"] == token_url(platform)
    assert token["token_type"].lower() == "bearer" and token["expires_in"] == 300
    assert token["scope"].split() == GP_GRANTABLE  # asked for nothing: everything the GP role holds

    r = session.post(platform.url + "/v1/plans", json=PLAN)
    assert r.status_code == 201, r.text
    plan = r.json()
    doc = wait_for(lambda: (lambda resp: resp.json() if resp.status_code == 200 and resp.json()["plan"] else None)(
        session.get(platform.url + f"/v1/people/{NHS}/portfolio")), message="the portfolio, with the token")
    assert doc["plan"]["id"] == plan["id"]
    log = session.get(platform.url + f"/v1/people/{NHS}/access-log").json()["items"]
    assert {(i["client_name"], i["org"], i["role"]) for i in log} == {("Riverside Surgery", "A81001", "gp")}

    # what a resource server does: check the token against the gateway's published keys alone
    keys = KeySet.import_key_set(requests.get(config["jwks_uri"], timeout=10).json())
    claims = jwt.decode(token["access_token"], keys).claims
    assert claims["client_id"] == claims["sub"] == client_id and claims["iss"] == platform.url
    assert (claims["org"], claims["role"], claims["scope"]) == ("A81001", "gp", token["scope"])
    assert claims["exp"] - claims["iat"] == 300

    again = oauth_session(platform, client_id, key)  # a new assertion (new jti): a new token
    assert again.token["access_token"] != token["access_token"]


def test_every_bad_assertion_is_refused_with_invalid_client(platform):
    key = new_key("ES384")
    rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-any-alg"})  # registered, but not for RS256
    client_id = register(platform, key, rsa)
    url = token_url(platform)
    impostor = new_key("ES384", kid=key.kid)  # the same kid, another key: a forgery
    hmac_key = OctKey.import_key("a-shared-secret-that-is-long-enough-for-hs256")
    now = int(time.time())
    revoked_key = new_key("RS384")
    revoked = register(platform, revoked_key, name="Old surgery")
    assert cli(platform, "clients", "revoke", revoked).returncode == 0
    with warnings.catch_warnings():  # joserfc warns that "none" is deprecated: that is the point
        warnings.simplefilter("ignore")
        unsigned = jws.serialize_compact({"alg": "none", "kid": key.kid}, json.dumps(
            {"iss": client_id, "sub": client_id, "aud": url, "exp": now + 60, "jti": uuid.uuid4().hex}),
            None, algorithms=["none"], registry=jws.JWSRegistry(algorithms=["none"]))
    cases = {
        "expired": assertion(client_id, key, url, iat=now - 400, exp=now - 100),
        "signed by another key": assertion(client_id, impostor, url),
        "HS256 (a shared secret)": jwt.encode({"alg": "HS256", "kid": key.kid}, {
            "iss": client_id, "sub": client_id, "aud": url, "exp": now + 60, "jti": uuid.uuid4().hex}, hmac_key),
        "alg none": unsigned,
        "RS256 (not RS384)": assertion(client_id, rsa, url, alg="RS256"),
        "for another audience": assertion(client_id, key, "https://elsewhere.example/oauth2/token"),
        "exp ten minutes ahead": assertion(client_id, key, url, exp=now + 600),
        "no exp": assertion(client_id, key, url, exp=None),
        "no jti": assertion(client_id, key, url, jti=None),
        "iss is not sub": assertion(client_id, key, url, sub=str(uuid.uuid4())),
        "an unknown client": assertion(str(uuid.uuid4()), key, url),
        "a revoked client": assertion(revoked, revoked_key, url),
        "a kid the client does not have": assertion(client_id, new_key("ES384"), url),
        "not a JWT": "not-a-jwt",
    }
    for label, signed in cases.items():
        r = ask_token(platform, signed)
        assert (r.status_code, r.json()["error"]) == (401, "invalid_client"), (label, r.text)
        assert r.headers["Cache-Control"] == "no-store" and r.json()["error_description"], label

    once = assertion(client_id, key, url)
    assert ask_token(platform, once).status_code == 200
    replay = ask_token(platform, once)
    assert (replay.status_code, replay.json()["error"]) == (401, "invalid_client")
    assert "used already" in replay.json()["error_description"]
    # without client authentication, or with a secret instead of an assertion
    for form in ({"client_assertion_type": None}, {"client_assertion_type": "urn:other"},
                 {"client_secret": "s3cret"}):
        r = ask_token(platform, assertion(client_id, key, url), **form)
        assert (r.status_code, r.json()["error"]) == (401, "invalid_client"), (form, r.text)
    assert ask_token(platform, assertion(client_id, key, url, exp=now + 290)).status_code == 200


def test_a_replayed_jti_is_refused_by_another_gateway_on_the_same_database(platform):
    """Replicas share the store of used jtis: a second gateway process refuses the first's assertion."""
    from harness import ThreadServer, free_port
    from gateway.app import create_app
    key = new_key("RS384")
    client_id = register(platform, key)
    port = free_port()
    replica = ThreadServer(create_app(platform.settings("gateway")), port)
    try:
        other = f"http://127.0.0.1:{port}"
        signed = assertion(client_id, key, token_url(platform))
        assert ask_token(platform, signed).status_code == 200
        r = requests.post(other + "/oauth2/token", headers={"Host": platform.url.removeprefix("http://")}, data={
            "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed}, timeout=10)
        assert (r.status_code, r.json()["error"]) == (401, "invalid_client") and "used already" in r.text
    finally:
        replica.stop()
        replica.server.app.extensions["coproduction"].db.dispose()


def test_expired_jtis_are_not_kept(platform):
    from gateway.models import oauth_assertions
    key = new_key("ES384")
    client_id = register(platform, key)
    now = int(time.time())
    assert ask_token(platform, assertion(client_id, key, token_url(platform), exp=now + 2)).status_code == 200
    db = platform.database("gateway")

    def kept():
        with db.session() as s:
            return s.execute(select(func.count()).select_from(oauth_assertions)).scalar_one()
    assert kept() == 1
    wait_for(lambda: time.time() > now + 2, timeout=5, message="the first assertion to expire")
    assert ask_token(platform, assertion(client_id, key, token_url(platform))).status_code == 200
    assert kept() == 1, "the expired jti went when the next assertion came"


def test_scopes_are_granted_only_as_the_role_allows(platform):
    key = new_key("ES384")
    client_id = register(platform, key)
    whole = access_token(platform, client_id, key)  # the practice creates his plan: it holds it from now on
    assert requests.post(platform.url + "/v1/plans", json=PLAN, headers=bearer(whole["access_token"]),
                         timeout=10).status_code == 201
    token = access_token(platform, client_id, key, scope="plans:read system/CarePlan.rs")
    assert token["scope"] == "plans:read system/CarePlan.rs"
    r = requests.get(platform.url + f"/v1/plans?nhs_number={NHS}", headers=bearer(token["access_token"]), timeout=10)
    assert r.status_code == 200
    r = requests.post(platform.url + "/v1/plans", json=PLAN, headers=bearer(token["access_token"]), timeout=10)
    assert r.status_code == 403, "the token carries plans:read only, whatever the client holds"

    for asked, refused in (("plans:read budgets:write", "budgets:write"), ("system/CarePlan.cruds", "system/CarePlan.cruds"),
                           ("system/Subscription.rs admin", "system/Subscription.rs admin"),
                           ("patient/CarePlan.rs nonsense", "patient/CarePlan.rs nonsense")):
        r = ask_token(platform, assertion(client_id, key, token_url(platform)), scope=asked)
        assert (r.status_code, r.json()["error"]) == (400, "invalid_scope"), r.text
        assert f"may not be granted: {refused}." in r.json()["error_description"]
    subscriber = new_key("RS384")
    council = register(platform, subscriber, role="social_care", org="S1001")
    token = access_token(platform, council, subscriber, scope="system/Subscription.cruds")
    assert token["scope"] == "system/Subscription.cruds"


def test_malformed_token_requests(platform):
    key = new_key("ES384")
    client_id = register(platform, key)
    signed = assertion(client_id, key, token_url(platform))
    r = ask_token(platform, signed, grant_type="authorization_code")
    assert (r.status_code, r.json()["error"]) == (400, "unsupported_grant_type")
    r = ask_token(platform, signed, grant_type=None)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
    r = requests.post(token_url(platform), json={"grant_type": "client_credentials"}, timeout=10)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request") and "form-encoded" in r.text
    r = requests.post(token_url(platform), data=[("grant_type", "client_credentials"), ("grant_type", "client_credentials"),
                                                 ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", signed)],
                      timeout=10)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request") and "more than once" in r.text
    assert requests.get(token_url(platform), timeout=10).status_code == 405
    # what PostgreSQL cannot store, or too much of it: refused, never a 500
    for nasty in ({"iss": "\x00", "sub": "\x00"}, {"iss": "x" * 10_000, "sub": "x" * 10_000}, {"jti": "a\x00b"},
                  {"jti": "j" * 256}, {"exp": "tomorrow"}, {"iat": "\x00"}, {"exp": float("nan")},
                  {"exp": float("inf")}, {"exp": True}, {"nbf": float("nan")}):
        r = ask_token(platform, assertion(client_id, key, token_url(platform), **nasty))
        assert (r.status_code, r.json()["error"]) == (401, "invalid_client"), (nasty, r.text)
    for audience in (["\x00", 7], {"url": token_url(platform)}, None):
        r = ask_token(platform, assertion(client_id, key, audience))
        assert (r.status_code, r.json()["error"]) == (401, "invalid_client"), (nasty, r.text)
    for form in ({"scope": "plans:read\x00"}, {"grant_type": "\x00"}, {"client_assertion": "\x00.\x00.\x00"}):
        r = ask_token(platform, assertion(client_id, key, token_url(platform)), **form)
        assert r.status_code in (400, 401) and r.json()["error"], (form, r.text)
    assert ask_token(platform, signed).status_code == 200, "none of those spent the assertion"


def test_discovery_documents_and_the_gateways_keys(platform):
    smart = requests.get(platform.url + "/.well-known/smart-configuration", timeout=10)
    server = requests.get(platform.url + "/.well-known/oauth-authorization-server", timeout=10).json()
    keys = requests.get(platform.url + "/.well-known/jwks.json", timeout=10)
    assert smart.status_code == 200 and keys.status_code == 200  # no token needed
    smart = smart.json()
    for doc in (smart, server):
        assert doc["issuer"] == platform.url
        assert doc["token_endpoint"] == platform.url + "/oauth2/token"
        assert doc["jwks_uri"] == platform.url + "/.well-known/jwks.json"
        assert doc["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
        assert set(doc["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
        assert doc["grant_types_supported"] == ["client_credentials"]
        assert {"plans:write", "system/Patient.rs", "system/CarePlan.crus", "system/Goal.rs"} <= set(doc["scopes_supported"])
    assert {"client-confidential-asymmetric", "permission-v2"} <= set(smart["capabilities"])
    published = keys.json()["keys"]
    assert keys.headers["Content-Type"].startswith("application/jwk-set+json")
    assert len(published) == 1 and published[0]["kid"] and published[0]["use"] == "sig"
    assert not {"d", "p", "q"} & set(published[0]), "public keys only"


def test_behind_a_proxy_the_public_url_is_the_issuer_and_the_audience(make_platform):
    public = "https://gateway.integration.example.nhs.uk"
    platform = make_platform(extra_env={"PUBLIC_URL": public + "/"}).start()
    smart = requests.get(platform.url + "/.well-known/smart-configuration", timeout=10).json()
    assert (smart["issuer"], smart["token_endpoint"]) == (public, public + "/oauth2/token")
    key = new_key("RS384")
    client_id = register(platform, key)
    r = ask_token(platform, assertion(client_id, key, token_url(platform)))  # the address it was reached at
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client") and public in r.json()["error_description"]
    token = ask_token(platform, assertion(client_id, key, public + "/oauth2/token")).json()
    claims = jwt.decode(token["access_token"], KeySet.import_key_set(
        requests.get(platform.url + "/.well-known/jwks.json", timeout=10).json())).claims
    assert claims["iss"] == claims["aud"] == public
    r = requests.get(platform.url + "/v1/reports/coproduction", headers=bearer(token["access_token"]), timeout=10)
    assert r.status_code == 200


def test_the_caller_of_a_token_carries_its_smart_scopes_for_the_fhir_routes(platform):
    from gateway.tokens import caller_from_access_token
    key = new_key("ES384")
    client_id = register(platform, key)
    token = access_token(platform, client_id, key, scope="system/CarePlan.cu system/Goal.rs")["access_token"]
    app = platform.servers["gateway"].server.app
    with app.test_request_context("/fhir/R4/CarePlan", base_url=platform.url):
        caller = caller_from_access_token(token)
    assert caller.client_id == client_id and caller.org == "A81001" and caller.scopes == frozenset()
    assert caller.smart_scopes == {"system/CarePlan.cu", "system/Goal.rs"}
    assert caller.has("system/CarePlan.u") and caller.has("system/CarePlan.cu") and caller.has("system/Goal.s")
    assert not caller.has("system/CarePlan.r") and not caller.has("system/Patient.r")
    assert not caller.has("plans:write"), "a SMART scope grants no JSON API scope"


def test_no_token_request_gets_a_5xx_or_a_token_it_should_not(platform):
    """Random forms, and assertions signed by a real client with random claims: always an RFC 6749
    error (or, for a well-formed one, a token), never a server error."""
    from hypothesis import HealthCheck, given, settings, strategies as st
    key = new_key("ES384")
    client_id = register(platform, key)
    url = token_url(platform)
    values = st.one_of(st.text(max_size=40), st.integers(), st.none(), st.lists(st.text(max_size=5), max_size=3),
                       st.just(client_id), st.just(url))
    errors = {"invalid_request", "invalid_client", "invalid_grant", "invalid_scope", "unsupported_grant_type"}

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(form=st.dictionaries(st.sampled_from(["grant_type", "client_assertion_type", "client_assertion",
                                                 "scope", "client_id", "junk"]), st.text(max_size=60), max_size=5),
           claims=st.dictionaries(st.sampled_from(["iss", "sub", "aud", "exp", "iat", "nbf", "jti"]), values, max_size=4),
           scope=st.one_of(st.none(), st.text(max_size=30)))
    def probe(form, claims, scope):
        r = requests.post(url, data=form, timeout=10)
        assert r.status_code in (400, 401) and r.json()["error"] in errors, (form, r.text)
        audience = claims.pop("aud", url)
        r = ask_token(platform, assertion(client_id, key, audience, **claims), scope=scope)
        assert r.status_code < 500, (claims, scope, r.text)
        if r.status_code == 200:
            body = r.json()
            assert claims.get("iss", client_id) == client_id and url in (audience if isinstance(audience, list) else [audience])
            assert set(body["scope"].split()) <= set(GP_GRANTABLE)
        else:
            assert r.json()["error"] in errors
    probe()
