"""What each subcommand of ``coproduction`` does (the parser and the flags are in ``cli``)."""
from __future__ import annotations

import json
import os
import signal
import sys

from coproduction.config import Settings, make_bus, var_dir
from coproduction.service import load, service_names


def _stop_on_signals(stop) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop())


def cmd_serve(args) -> int:
    from coproduction import logs
    from coproduction.secrets import ConfigurationError
    from coproduction.web import serve
    logs.setup(f"{args.service}-web")
    spec = load(args.service)
    try:
        settings = Settings.from_env(args.service)
        spec.check_configuration(settings)
    except ConfigurationError as exc:
        print(f"coproduction serve {args.service}: refusing to start: {exc}", file=sys.stderr)
        return 2
    # rate limits counted in memory (no shared store set) are one process's: serve it as one
    one_process = spec.rate_limited and settings.rate_limit_storage_uri.startswith("memory")
    serve(args.service, args.host, args.port or spec.port, args.workers, one_process)
    return 0


def _run_worker(part: str, label: str, build) -> int:
    """One of a part's long-running processes (``build(spec, settings, db)`` makes it): its logs,
    its database migrated first, its metrics, and a clean stop on SIGTERM or SIGINT."""
    from coproduction import logs, metrics
    from coproduction.web import migrate
    logs.setup(label)
    spec = load(part)
    settings = Settings.from_env(part)
    db = spec.database(settings)
    migrate(part)
    worker = build(spec, settings, db)
    metrics.serve(settings.metrics_port)
    _stop_on_signals(worker.stop)
    worker.run()
    return 0


def cmd_relay(args) -> int:
    from coproduction.bus import Publisher
    from coproduction.outbox import Relay
    return _run_worker(args.service, f"{args.service}-relay",
                       lambda spec, settings, db: Relay(db, spec.outbox, Publisher(make_bus(settings))))


def cmd_consume(args) -> int:
    from gateway.consumer import make_consumer
    return _run_worker("gateway", "gateway-consumer",
                       lambda _spec, settings, db: make_consumer(settings, db, make_bus(settings)))


def cmd_deliver(args) -> int:
    from gateway.webhooks.dispatcher import make_dispatcher
    return _run_worker("gateway", "gateway-deliver", lambda _spec, settings, db: make_dispatcher(settings, db))


def cmd_clients(args) -> int:
    from gateway import clients
    from gateway.app import database
    settings = Settings.from_env("gateway")
    db = database(settings)
    from coproduction.web import migrate
    migrate("gateway")
    if args.action == "create":
        if args.jwks_file or args.jwks_uri:
            return _register_with_keys(args, db, settings)
        try:
            client_id, token = clients.create(db, args.name, args.org, args.role, args.scope or [],
                                              args.without or [])
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if not settings.allow_static_tokens:
            print("note: ALLOW_STATIC_TOKENS is off here, so the gateway refuses this development token; "
                  "register the client's public keys with --jwks-file or --jwks-uri (docs/auth.md)",
                  file=sys.stderr)
        print(f"client {client_id} ({args.name}, {args.org}, {args.role}) created; its token, shown once:")
        print(token)
    elif args.action == "list":
        print(json.dumps(clients.listing(db), indent=2))
    elif args.action == "revoke":
        if not clients.revoke(db, args.id):
            print(f"error: no active client {args.id}", file=sys.stderr)
            return 1
        print(f"client {args.id} revoked: it gets no new access token; those it holds stop working "
              f"within {settings.oauth_token_lifetime} s (OAUTH_TOKEN_LIFETIME)")
    return 0


def _register_with_keys(args, db, settings) -> int:
    """``clients create --jwks-file F | --jwks-uri URL``: a client that gets OAuth access tokens."""
    from pathlib import Path
    from gateway import client_keys, clients
    try:
        if args.jwks_file:
            try:
                data = json.loads(Path(args.jwks_file).read_text())
            except (OSError, ValueError) as exc:
                raise client_keys.BadKeys(f"cannot be read as JSON ({exc})") from None
            jwks = client_keys.public_jwks(data)
            count = len(jwks["keys"])
        else:  # fetched now to check it; kept only as the URL, fetched again as the client rotates
            jwks = None
            count = len(client_keys.fetch_jwks(args.jwks_uri, settings.allow_loopback_jwks_uri)["keys"])
        client_id = clients.register(db, args.name, args.org, args.role, jwks=jwks, jwks_uri=args.jwks_uri,
                                     extra=args.scope or [], without=args.without or [])
    except client_keys.BadKeys as exc:
        print(f"error: the JWK Set {args.jwks_file or args.jwks_uri} {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"client ({args.name}, {args.org}, {args.role}) registered with {count} public key(s) from "
          f"{args.jwks_file or args.jwks_uri}; "
          f"it signs its assertions to /oauth2/token with them (docs/auth.md). Its client_id:")
    print(client_id)
    return 0


def cmd_audit(args) -> int:
    from gateway.app import database
    from coproduction.secrets import ConfigurationError
    settings = Settings.from_env("gateway")
    try:
        if args.action == "sequence":
            return _audit_sequence(settings)
        if args.action == "witness":
            return _audit_witness(args, settings)
        return _audit_verify(args, database(settings))
    except ConfigurationError as exc:
        print(f"coproduction audit {args.action}: refusing to start: {exc}", file=sys.stderr)
        return 2


def _audit_sequence(settings) -> int:
    from gateway.audit import keys as audit_keys
    from gateway.audit.sequencer import Sequencer
    key = audit_keys.signing_key()  # no start without it (ConfigurationError)
    return _run_worker("gateway", "gateway-audit-sequencer", lambda _spec, _settings, db: Sequencer(db, key))


def _audit_witness(args, settings) -> int:
    from pathlib import Path
    from gateway.audit import witness as audit_witness
    from gateway.app import database
    state = audit_witness.WitnessState.load(Path(args.state))
    if not state.heads:
        state.keeps_leaves = not args.heads_only
    if args.url:
        source = audit_witness.HttpSource(args.url, args.token or os.environ.get("AUDIT_WITNESS_TOKEN"))
    else:
        source = audit_witness.DatabaseSource(database(settings))
    pinned = Path(args.public_key).read_text() if args.public_key else None
    try:
        print(audit_witness.witness(state, source, pinned))
    except audit_witness.Refused as exc:
        print(f"audit witness REFUSED: {exc}", file=sys.stderr)
        return 1
    return 0


def _audit_verify(args, db) -> int:
    from pathlib import Path
    from gateway.audit import keys as audit_keys, verify as audit_verify, witness as audit_witness
    witnessed = audit_witness.WitnessState.load(Path(args.witness)) if args.witness else None
    if witnessed is not None and not witnessed.heads:
        print(f"error: {args.witness} has witnessed nothing yet", file=sys.stderr)
        return 2
    key = witnessed.public_key() if witnessed else audit_keys.public_key()
    try:
        with db.session() as session:
            report = audit_verify.verify(session, key, witnessed)
    except audit_witness.Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(problem)
    if report.more_problems:
        print(f"... and {report.more_problems} more")
    against = (f"; checked against {len(witnessed.heads)} witnessed head(s)"
               + (" leaf by leaf" if witnessed.keeps_leaves else "")) if witnessed else ""
    if report.problems:
        print(report.summary())
        print(f"audit log BROKEN: {len(report.problems) + report.more_problems} problem(s){against}")
        return 1
    print(f"audit log verified: {report.leaves} leaves, {report.heads} signed heads, "
          f"{report.unsequenced} record(s) waiting to be sequenced{against}")
    return 0


def cmd_broker_permissions(args) -> int:
    from gateway.broker_access import render
    try:
        print(render(args.role, args.user, args.vhost, args.prefix))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_migrate(args) -> int:
    from coproduction.migrate import upgrade
    upgrade(args.service)
    print(f"{args.service}: schema up to date")
    return 0


def cmd_makemigration(args) -> int:
    from coproduction.migrate import make_revision
    make_revision(args.service, args.message)
    return 0


def cmd_rebuild(args) -> int:
    from gateway.app import database
    from gateway.rebuild import rebuild
    settings = Settings.from_env("gateway")
    db = database(settings)
    from coproduction.web import migrate
    migrate("gateway")
    result = rebuild(db, settings, services=args.services or service_names(), workers=args.workers)
    total = sum(result["events"].values())
    print(f"rebuilt {result['people']:,} portfolios from {total:,} events in {result['seconds']}s "
          f"({', '.join(f'{k} {v:,}' for k, v in result['events'].items())})")
    return 0


def cmd_demo(args) -> int:
    from pathlib import Path
    from .demo import main as demo
    token_file = Path(args.token_file) if args.token_file else var_dir() / "dev-clients.json"
    return demo(args.url, token_file, args.nhs_number, args.timeout)


def cmd_seed(args) -> int:
    from .seed import seed
    result = seed(args.people, detailed=args.detailed, start=args.start, published=args.published,
                  batch=args.batch, jobs=args.jobs, services=args.service)
    print(json.dumps(result))
    return 0


def cmd_asyncapi(args) -> int:
    from pathlib import Path
    from .asyncapi import render
    Path(args.output).write_text(render())
    print(f"wrote {args.output}")
    return 0


def cmd_signing_key(args) -> int:
    """A new private key for OAUTH_SIGNING_KEY: PEM, or a one-line JWK for an .env file."""
    from joserfc.jwk import ECKey
    key = ECKey.generate_key("P-256")
    print(json.dumps(key.as_dict(private=True)) if args.jwk else key.as_pem(private=True).decode().strip())
    return 0


def cmd_run(args) -> int:
    from .run import run_all
    return run_all(services=args.services or list(service_names()))
