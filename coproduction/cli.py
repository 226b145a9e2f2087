"""``coproduction``: one command, with a subcommand for every process and every chore."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from .config import DOMAIN_SERVICES, SERVICE_PORTS, Settings, make_bus, var_dir


def _stop_on_signals(stop) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop())


def cmd_serve(args) -> int:
    from . import logs
    from .secrets import ConfigurationError
    from .web import serve
    logs.setup(f"{args.service}-web")
    try:
        settings = Settings.from_env(args.service)
        settings.require_secrets()
        if args.service == "gateway":
            from gateway.audit import keys as audit_keys
            audit_keys.public_key()  # the tree-head routes publish and check it
    except ConfigurationError as exc:
        print(f"coproduction serve {args.service}: refusing to start: {exc}", file=sys.stderr)
        return 2
    # the gateway's rate limits count in memory unless a shared store is set: then one process
    one_process = args.service == "gateway" and settings.rate_limit_storage_uri.startswith("memory")
    serve(args.service, args.host, args.port or SERVICE_PORTS[args.service], args.workers, one_process)
    return 0


def cmd_relay(args) -> int:
    from . import logs, metrics
    from .bus import Bus, Publisher
    from .outbox import Relay
    from .service import load
    logs.setup(f"{args.service}-relay")
    spec = load(args.service)
    settings = Settings.from_env(args.service)
    db = spec.database(settings)
    from .web import migrate
    migrate(args.service)
    bus = make_bus(settings)
    relay = Relay(db, spec.outbox, Publisher(bus))
    metrics.serve(settings.metrics_port)
    _stop_on_signals(relay.stop)
    relay.run()
    return 0


def cmd_consume(args) -> int:
    from . import logs, metrics
    from .bus import Bus
    from gateway.app import database
    from gateway.consumer import make_consumer
    from gateway.models import metadata
    logs.setup("gateway-consumer")
    settings = Settings.from_env("gateway")
    db = database(settings)
    from .web import migrate
    migrate("gateway")
    consumer = make_consumer(settings, db, make_bus(settings))
    metrics.serve(settings.metrics_port)
    _stop_on_signals(consumer.stop)
    consumer.run()
    return 0


def cmd_deliver(args) -> int:
    from . import logs, metrics
    from gateway.app import database
    from gateway.webhooks.dispatcher import make_dispatcher
    from gateway.models import metadata
    logs.setup("gateway-deliver")
    settings = Settings.from_env("gateway")
    db = database(settings)
    from .web import migrate
    migrate("gateway")
    dispatcher = make_dispatcher(settings, db)
    metrics.serve(settings.metrics_port)
    _stop_on_signals(dispatcher.stop)
    dispatcher.run()
    return 0


def cmd_clients(args) -> int:
    from gateway import clients
    from gateway.app import database
    settings = Settings.from_env("gateway")
    db = database(settings)
    from .web import migrate
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
    from .secrets import ConfigurationError
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
    from . import logs, metrics
    from gateway.audit import keys as audit_keys
    from gateway.app import database
    from gateway.audit.sequencer import Sequencer
    logs.setup("gateway-audit-sequencer")
    key = audit_keys.signing_key()
    db = database(settings)
    from .web import migrate
    migrate("gateway")
    sequencer = Sequencer(db, key)
    metrics.serve(settings.metrics_port)
    _stop_on_signals(sequencer.stop)
    sequencer.run()
    return 0


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
    from .web import migrate
    migrate(args.service)
    print(f"{args.service}: schema up to date")
    return 0


def cmd_makemigration(args) -> int:
    from .migrate import make_revision
    make_revision(args.service, args.message)
    return 0


def cmd_rebuild(args) -> int:
    from gateway.app import database
    from gateway.models import metadata
    from gateway.rebuild import rebuild
    settings = Settings.from_env("gateway")
    db = database(settings)
    from .web import migrate
    migrate("gateway")
    result = rebuild(db, settings, services=args.services or DOMAIN_SERVICES, workers=args.workers)
    total = sum(result["events"].values())
    print(f"rebuilt {result['people']:,} portfolios from {total:,} events in {result['seconds']}s "
          f"({', '.join(f'{k} {v:,}' for k, v in result['events'].items())})")
    return 0


def cmd_demo(args) -> int:
    from pathlib import Path
    from gateway.demo import main as demo
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
    return run_all(services=args.services or list(DOMAIN_SERVICES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="coproduction", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve a service's or the gateway's HTTP API (gunicorn)")
    p.add_argument("service", choices=["gateway", *DOMAIN_SERVICES])
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ["PORT"]) if os.environ.get("PORT") else None)
    p.add_argument("--workers", type=int, default=int(os.environ.get("WEB_WORKERS", "2")))
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("relay", help="publish a service's outbox to the bus")
    p.add_argument("service", choices=DOMAIN_SERVICES)
    p.set_defaults(func=cmd_relay)

    p = sub.add_parser("consume", help="project service events into the gateway's portfolio")
    p.set_defaults(func=cmd_consume)

    p = sub.add_parser("deliver", help="send the change log to webhook subscribers (signed, retried)")
    p.set_defaults(func=cmd_deliver)

    p = sub.add_parser("clients", help="manage the clients that may call the gateway")
    csub = p.add_subparsers(dest="action", required=True)
    c = csub.add_parser("create")
    c.add_argument("--name", required=True)
    c.add_argument("--org", required=True, help="ODS code of the organisation")
    c.add_argument("--role", required=True, choices=["hospital", "gp", "social_care", "community", "admin"])
    c.add_argument("--scope", action="append", help="an extra scope beyond the role's")
    c.add_argument("--without", action="append", help="a scope of the role to leave out")
    keys = c.add_mutually_exclusive_group()
    keys.add_argument("--jwks-file", help="the client's public keys (a JWK Set): it gets OAuth access tokens")
    keys.add_argument("--jwks-uri", help="where the client publishes its JWK Set (https)")
    csub.add_parser("list")
    c = csub.add_parser("revoke")
    c.add_argument("id")
    p.set_defaults(func=cmd_clients)

    p = sub.add_parser("audit", help="the audit log: sequence it, witness it, verify it (docs/audit.md)")
    asub = p.add_subparsers(dest="action", required=True)
    asub.add_parser("sequence", help="sequence committed records into the signed Merkle log (a process)")
    a = asub.add_parser("witness", help="check the latest signed head extends the last witnessed one; keep it")
    a.add_argument("--state", required=True, help="the witness's own file (kept outside the gateway's database)")
    a.add_argument("--url", help="read the log from this gateway (default: from its database)")
    a.add_argument("--token", help="a token with audit:read for --url (default: $AUDIT_WITNESS_TOKEN)")
    a.add_argument("--public-key", help="pin this PEM public key on the first run (default: the one the log publishes)")
    a.add_argument("--heads-only", action="store_true",
                   help="on the first run: keep only tree heads, not the 32 bytes per record")
    a = asub.add_parser("verify", help="check every record against the signed log; name the first bad leaf")
    a.add_argument("--witness", help="a witness's state file to check against")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("broker-permissions",
                       help="print the rabbitmqctl commands letting a system's broker user bind only what its role may read")
    p.add_argument("--role", required=True, choices=["hospital", "gp", "social_care", "community"])
    p.add_argument("--user", required=True, help="the system's RabbitMQ user")
    p.add_argument("--vhost", default="/")
    p.add_argument("--prefix", default=os.environ.get("BUS_PREFIX", ""), help="BUS_PREFIX of the platform")
    p.set_defaults(func=cmd_broker_permissions)

    p = sub.add_parser("migrate", help="bring a service's database schema up to date")
    p.add_argument("service", choices=["gateway", *DOMAIN_SERVICES])
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("makemigration", help="write a new Alembic revision from the models (developers)")
    p.add_argument("service", choices=["gateway", *DOMAIN_SERVICES])
    p.add_argument("-m", "--message", required=True)
    p.set_defaults(func=cmd_makemigration)

    p = sub.add_parser("rebuild", help="rebuild the gateway's projection from every service's event feed")
    p.add_argument("services", nargs="*", help="services to replay (default: all four)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes that replay and recompose in parallel on PostgreSQL (default: one per CPU)")
    p.set_defaults(func=cmd_rebuild)

    p = sub.add_parser("demo", help="load a realistic story through the gateway's public API")
    p.add_argument("--url", default=os.environ.get("GATEWAY_URL", f"http://127.0.0.1:{SERVICE_PORTS['gateway']}"))
    p.add_argument("--token-file", help="JSON of role -> token (default: var/dev-clients.json)")
    p.add_argument("--nhs-number", default="9434765919")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each projection step")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("seed", help="generate people through the services' own code (for demos and `make bench`)")
    p.add_argument("--people", type=int, required=True, help="how many people")
    p.add_argument("--detailed", type=int, default=None,
                   help="how many of them get a whole portfolio through every service (default 1000)")
    p.add_argument("--start", type=int, default=0, help="skip this many generated NHS numbers (add new people)")
    p.add_argument("--published", action="store_true",
                   help="mark the bulk events as sent (the gateway reads them with `coproduction rebuild`)")
    p.add_argument("--batch", type=int, default=2000, help="people per transaction in bulk")
    p.add_argument("--jobs", type=int, default=1, help="processes writing the bulk people side by side")
    p.add_argument("--service", action="append", help="only these services (default: all that exist)")
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("asyncapi", help="write the AsyncAPI document of every event type")
    p.add_argument("--output", default="docs/asyncapi.yaml")
    p.set_defaults(func=cmd_asyncapi)

    p = sub.add_parser("signing-key", help="print a new private key for the gateway's OAUTH_SIGNING_KEY")
    p.add_argument("--jwk", action="store_true", help="as a one-line JWK (for an .env file) instead of PEM")
    p.set_defaults(func=cmd_signing_key)

    p = sub.add_parser("run", help="start the whole platform on this machine")
    p.add_argument("services", nargs="*", help="domain services to start (default: all that exist)")
    p.set_defaults(func=cmd_run)

    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
