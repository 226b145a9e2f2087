"""The gateway: the one public door. ``create_app`` wires authentication, the rate limit, the access
decision, the routes and the audit, in the order every request meets them."""
from __future__ import annotations

from coproduction import secrets
from coproduction.config import Settings
from coproduction.db import Database
from coproduction.http import create_app as kernel_app

from . import SPEC
from . import admission, api, changes, consent, discovery, fhir, oauth, pages
from .audit import keys as audit_keys, routes as audit_api
from .fhir import export as fhir_export
from . import policy, relationships, routing, security
from .client_keys import RemoteKeySets
from .limits import init_limits
from .models import metadata
from .tokens import TokenAuthority
from .webhooks import api as subscriptions


def database(settings: Settings) -> Database:
    return SPEC.database(settings)


def check_configuration(settings: Settings) -> None:
    """What the gateway cannot serve without, beyond every part's service-token secret
    (ConfigurationError naming what to set): it signs the pages' session cookie, its OAuth access
    tokens and the audit log's tree heads."""
    secrets.check("SESSION_SECRET", settings.session_secret)
    if settings.session_secret == settings.service_token_secret:
        raise secrets.ConfigurationError("SESSION_SECRET must differ from SERVICE_TOKEN_SECRET")
    secrets.signing_key("OAUTH_SIGNING_KEY", settings.oauth_signing_key)
    if settings.oauth_previous_signing_key:
        secrets.signing_key("OAUTH_PREVIOUS_SIGNING_KEY", settings.oauth_previous_signing_key)
    if settings.oauth_token_lifetime < 1:
        raise secrets.ConfigurationError("OAUTH_TOKEN_LIFETIME must be at least 1 (seconds)")
    audit_keys.public_key()  # the tree-head routes publish and check it


def create_app(settings: Settings | None = None):
    settings = settings or Settings.from_env(SPEC.name)
    check_configuration(settings)
    db = database(settings)
    app = kernel_app(SPEC.name, f"coproduction {SPEC.name}", settings=settings, db=db, metadata=metadata,
                     blueprints=[api.bp, audit_api.bp, consent.bp, relationships.bp, relationships.review_bp,
                                 admission.bp, subscriptions.bp, changes.bp, fhir_export.bp],
                     description=SPEC.description)
    app.register_blueprint(routing.bp)
    app.extensions["every_bad_field"] = routing.every_bad_field
    app.extensions["oauth"] = TokenAuthority(settings)  # the access tokens it issues and accepts
    app.extensions["oauth_remote_keys"] = RemoteKeySets(settings.allow_loopback_jwks_uri)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(discovery.bp)
    pages.init_app(app)  # web pages, their session cookie, and the JSON site report
    fhir.init_app(app)   # the FHIR R4 server at /fhir/R4; its errors as OperationOutcomes
    init_limits(app, settings)
    app.before_request(security.authenticate)  # who, counted against their rate limit
    app.before_request(policy.enforce)         # may they, for this person, before anything is touched
    app.after_request(policy.scrub)            # no id of a left-out record in an answer about a person
    app.after_request(security.write_audit)
    app.teardown_request(security.close_request_session)
    return app
