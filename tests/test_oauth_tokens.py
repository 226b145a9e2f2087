"""Issue 17, the access tokens: checked by signature on every /v1 route (bad ones are 401
problem+json), a revoked client's stop within their lifetime, the pages accept them, static tokens
only where allowed, and client keys published at a jwks_uri (fetched safely, rotated)."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings

import requests
from flask import Flask, jsonify
from joserfc import jws, jwt
from joserfc.jwk import ECKey, RSAKey

from coproduction.secrets import signing_key
from harness import ROOT, ThreadServer, free_port, wait_for
from oauth_client import access_token, ask_token, assertion, bearer, cli, jwks_of, new_key, register, token_url

NHS = "9434765919"


def _gateway_key(platform):
    return signing_key("OAUTH_SIGNING_KEY", platform.env["OAUTH_SIGNING_KEY"])[0]


def _forge(platform, key, kid: str, alg: str = "ES256", typ: str = "at+jwt", **claims) -> str:
    now = int(time.time())
    body = {"iss": platform.url, "aud": platform.url, "sub": "someone", "client_id": "someone", "iat": now,
            "exp": now + 60, "scope": "admin", "role": "admin", "org": "X", "name": "forger"}
    body.update(claims)
    return jwt.encode({"alg": alg, "kid": kid, "typ": typ}, body, key, algorithms=[alg])


def test_bad_access_tokens_are_refused_on_the_api_with_problem_json(platform):
    key = new_key("ES384")
    client_id = register(platform, key)
    good = access_token(platform, client_id, key)["access_token"]
    path = "/v1/reports/coproduction"  # any route the token's scopes open (no person: no relationship needed)
    assert requests.get(platform.url + path, headers=bearer(good), timeout=10).status_code == 200
    ours = _gateway_key(platform)
    kid = ours.thumbprint()
    header, payload, signature = good.split(".")
    tampered = ".".join([header, payload[:-4] + ("AAAA" if not payload.endswith("AAAA") else "BBBB"), signature])
    stranger = ECKey.generate_key("P-256")
    cases = {
        "a bad signature": (tampered, "signature does not verify"),
        "signed by another key, claiming ours": (_forge(platform, stranger, kid), "signature does not verify"),
        "an unknown kid": (_forge(platform, stranger, stranger.thumbprint()), "does not have"),
        "expired": (_forge(platform, ours, kid, iat=int(time.time()) - 600, exp=int(time.time()) - 300), "expired"),
        "from another issuer": (_forge(platform, ours, kid, iss="https://other-gateway.example"), "iss"),
        "for another audience": (_forge(platform, ours, kid, aud="https://other-api.example"), "aud"),
        "not an access token (typ JWT)": (_forge(platform, ours, kid, typ="JWT"), "typ at+jwt"),
        "a client's own assertion": (assertion(client_id, key, token_url(platform)), "its alg is not ES256"),
    }
    for label, (token, reason) in cases.items():
        r = requests.get(platform.url + path, headers=bearer(token), timeout=10)
        assert r.status_code == 401, (label, r.status_code, r.text)
        assert r.headers["Content-Type"] == "application/problem+json", label
        assert 'error="invalid_token"' in r.headers["WWW-Authenticate"], label
        assert reason in r.json()["detail"], (label, r.json()["detail"])
    # the forger's own well-formed token works only because it holds our key: the check is the key
    assert requests.get(platform.url + path, headers=bearer(_forge(platform, ours, kid)), timeout=10).status_code == 200


def test_a_revoked_clients_tokens_stop_within_their_lifetime(make_platform):
    lifetime = 2
    platform = make_platform(extra_env={"OAUTH_TOKEN_LIFETIME": str(lifetime)}).start()
    key = new_key("RS384")
    client_id = register(platform, key)
    token = access_token(platform, client_id, key)
    assert token["expires_in"] == lifetime
    path = platform.url + "/v1/reports/coproduction"
    assert requests.get(path, headers=bearer(token["access_token"]), timeout=10).status_code == 200
    page = _sign_in(platform, token["access_token"])
    assert page.get(platform.url + "/", allow_redirects=False).status_code == 200

    out = cli(platform, "clients", "revoke", client_id)
    assert out.returncode == 0 and f"within {lifetime} s" in out.stdout
    revoked_at = time.time()
    r = ask_token(platform, assertion(client_id, key, token_url(platform)))
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client") and "revoked" in r.text
    assert page.get(platform.url + "/", allow_redirects=False).status_code == 302, "the session ends at once"
    wait_for(lambda: requests.get(path, headers=bearer(token["access_token"]), timeout=10).status_code == 401,
             timeout=lifetime + 5, interval=0.05, message="the revoked client's token to stop working")
    stopped_after = time.time() - revoked_at
    assert stopped_after <= lifetime + 1, f"the token outlived the documented bound: {stopped_after:.2f}s"


def _sign_in(platform, token: str) -> requests.Session:
    s = requests.Session()
    csrf = re.search(r'name="csrf" value="([^"]+)"', s.get(platform.url + "/login").text).group(1)
    r = s.post(platform.url + "/login", data={"csrf": csrf, "token": token}, allow_redirects=False)
    assert r.status_code == 303, r.text
    return s


def test_the_pages_accept_an_access_token_and_keep_only_the_client_id(platform):
    key = new_key("ES384")
    client_id = register(platform, key, role="hospital", org="RX101", name="Ward 9")
    token = access_token(platform, client_id, key)["access_token"]
    s = _sign_in(platform, token)
    home = s.get(platform.url + "/")
    assert home.status_code == 200 and "Ward 9" in home.text
    assert token not in str(s.cookies.get_dict())
    stranger = _forge(platform, ECKey.generate_key("P-256"), "nope")
    fresh = requests.Session()
    csrf = re.search(r'name="csrf" value="([^"]+)"', fresh.get(platform.url + "/login").text).group(1)
    assert fresh.post(platform.url + "/login", data={"csrf": csrf, "token": stranger}).status_code == 401


def test_static_tokens_are_refused_where_they_are_not_allowed(make_platform):
    """The production configuration: ALLOW_STATIC_TOKENS unset."""
    platform = make_platform(extra_env={"ALLOW_STATIC_TOKENS": ""}).start()
    r = platform.call("gp", "GET", f"/v1/plans?nhs_number={NHS}")
    assert r.status_code == 401 and "POST /oauth2/token" in r.json()["detail"]
    csrf_session = requests.Session()
    csrf = re.search(r'name="csrf" value="([^"]+)"', csrf_session.get(platform.url + "/login").text).group(1)
    assert csrf_session.post(platform.url + "/login", data={"csrf": csrf, "token": platform.tokens["gp"]}).status_code == 401
    out = cli(platform, "clients", "create", "--name", "dev", "--org", "X1", "--role", "gp")
    assert out.returncode == 0 and "ALLOW_STATIC_TOKENS is off" in out.stderr
    key = new_key("ES384")
    token = access_token(platform, register(platform, key), key)["access_token"]
    assert requests.get(platform.url + "/v1/reports/coproduction", headers=bearer(token), timeout=10).status_code == 200


def test_keys_published_at_a_jwks_uri_are_fetched_checked_and_rotated(platform):
    published = {"keys": []}
    site = Flask("client-keys")
    site.add_url_rule("/jwks.json", "jwks", lambda: jsonify(published))
    port = free_port()
    server = ThreadServer(site, port)
    try:
        first = new_key("ES384")
        published.update(jwks_of(first))
        uri = f"http://127.0.0.1:{port}/jwks.json"
        out = cli(platform, "clients", "create", "--name", "EPR", "--org", "RX9", "--role", "hospital", "--jwks-uri", uri)
        assert out.returncode == 0, out.stderr
        client_id = out.stdout.split()[-1]
        assert access_token(platform, client_id, first)["scope"]

        second = new_key("RS384")  # the client rotates: publishes a new key and signs with it
        published.update(jwks_of(second))
        wait_for(lambda: ask_token(platform, assertion(client_id, second, token_url(platform))).status_code == 200,
                 timeout=20, interval=0.5, message="the gateway to fetch the client's new key")
        r = ask_token(platform, assertion(client_id, first, token_url(platform)))
        assert (r.status_code, r.json()["error"]) == (401, "invalid_client"), "the retired key no longer works"
    finally:
        server.stop()


def test_registration_refuses_unsafe_addresses_and_unusable_keys(platform):
    def create(*args):
        return cli(platform, "clients", "create", "--name", "x", "--org", "X1", "--role", "gp", *args)
    def in_production(uri):  # ALLOW_LOOPBACK_JWKS_URI unset
        return subprocess.run([sys.executable, "-m", "bootstrap.cli", "clients", "create", "--name", "x",
                               "--org", "X1", "--role", "gp", "--jwks-uri", uri], cwd=ROOT, capture_output=True,
                              text=True, env=dict(platform.env, ALLOW_LOOPBACK_JWKS_URI=""))
    out = in_production(f"http://127.0.0.1:{free_port()}/jwks.json")
    assert out.returncode == 2 and "must be an https URL" in out.stderr
    out = in_production("https://127.0.0.1/jwks.json")
    assert out.returncode == 2 and "a loopback address; a jwks_uri must be public" in out.stderr
    out = create("--jwks-uri", "https://10.1.2.3/jwks.json")
    assert out.returncode == 2 and "private address" in out.stderr

    def with_file(jwks) -> str:
        path = platform.var / f"{uuid.uuid4().hex}.json"
        path.write_text(json.dumps(jwks))
        return create("--jwks-file", str(path)).stderr
    key = new_key("RS384")
    assert "private key" in with_file({"keys": [key.as_dict(private=True)]})
    with warnings.catch_warnings():  # joserfc warns about making a 1024-bit key: the test needs one
        warnings.simplefilter("ignore")
        small = RSAKey.generate_key(1024, parameters={"kid": "small"})
    assert "at least 2048" in with_file(jwks_of(small))
    assert "EC P-384 (ES384)" in with_file(jwks_of(ECKey.generate_key("P-256")))
    assert "not a JWK Set" in with_file({"keys": []})
    assert "unique" in with_file({"keys": [new_key("ES384", kid="a").as_dict(private=False),
                                           new_key("ES384", kid="a").as_dict(private=False)]})


def test_key_rotation_accepts_the_previous_keys_tokens_and_publishes_both(make_platform):
    old_pem = ECKey.generate_key("P-256").as_pem(private=True).decode()
    new_pem = ECKey.generate_key("P-384").as_pem(private=True).decode()
    platform = make_platform(extra_env={"OAUTH_SIGNING_KEY": old_pem}).start()
    key = new_key("ES384")
    client_id = register(platform, key)
    old_token = access_token(platform, client_id, key)["access_token"]

    platform.restart_web("gateway", OAUTH_SIGNING_KEY=new_pem, OAUTH_PREVIOUS_SIGNING_KEY=old_pem)
    published = requests.get(platform.url + "/.well-known/jwks.json", timeout=10).json()["keys"]
    assert [(k["crv"], k["alg"]) for k in published] == [("P-384", "ES384"), ("P-256", "ES256")]
    path = platform.url + "/v1/reports/coproduction"
    assert requests.get(path, headers=bearer(old_token), timeout=10).status_code == 200, "still accepted"
    new_token = access_token(platform, client_id, key)["access_token"]
    assert jws.extract_compact(new_token.encode()).headers()["kid"] == published[0]["kid"], "signed with the new key"
    assert requests.get(path, headers=bearer(new_token), timeout=10).status_code == 200

    platform.restart_web("gateway", OAUTH_PREVIOUS_SIGNING_KEY="")  # the rotation is over
    assert len(requests.get(platform.url + "/.well-known/jwks.json", timeout=10).json()["keys"]) == 1
    assert requests.get(path, headers=bearer(old_token), timeout=10).status_code == 401
    assert requests.get(path, headers=bearer(new_token), timeout=10).status_code == 200


def test_a_jwks_uri_that_trickles_or_redirects_is_cut_off(platform):
    """A token request may wait on a client's JWKS server: one that answers a byte at a time is cut
    off after 5 s in all; a redirect is not followed."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(4096)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n")
                while not stop.wait(0.5):  # the slow drip a hostile server would use
                    conn.sendall(b" ")
            except OSError:
                pass
            finally:
                conn.close()
    threading.Thread(target=serve, daemon=True).start()
    try:
        started = time.monotonic()
        out = cli(platform, "clients", "create", "--name", "slow", "--org", "X1", "--role", "gp",
                  "--jwks-uri", f"http://127.0.0.1:{port}/jwks.json")
        took = time.monotonic() - started
        assert out.returncode == 2 and "could not be fetched within 5s" in out.stderr, out.stderr
        assert took < 12, f"the fetch was not cut off: {took:.1f}s"  # 5 s, and the CLI's own start
    finally:
        stop.set()
        listener.close()

    site = Flask("redirecting")
    site.add_url_rule("/jwks.json", "moved", lambda: ("", 302, {"Location": "http://10.0.0.1/jwks.json"}))
    port = free_port()
    server = ThreadServer(site, port)
    try:
        out = cli(platform, "clients", "create", "--name", "x", "--org", "X1", "--role", "gp",
                  "--jwks-uri", f"http://127.0.0.1:{port}/jwks.json")
        assert out.returncode == 2 and "answered 302" in out.stderr, out.stderr
    finally:
        server.stop()
