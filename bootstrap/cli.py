"""``coproduction``: one command, with a subcommand for every process and every chore."""
from __future__ import annotations

import argparse
import os
import sys

from coproduction.service import gateway_spec, part_names, service_names

from . import commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="coproduction", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve a service's or the gateway's HTTP API (gunicorn)")
    p.add_argument("service", choices=part_names())
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ["PORT"]) if os.environ.get("PORT") else None)
    p.add_argument("--workers", type=int, default=int(os.environ.get("WEB_WORKERS", "2")))
    p.set_defaults(func=commands.cmd_serve)

    p = sub.add_parser("relay", help="publish a service's outbox to the bus")
    p.add_argument("service", choices=service_names())
    p.set_defaults(func=commands.cmd_relay)

    p = sub.add_parser("consume", help="project service events into the gateway's portfolio")
    p.set_defaults(func=commands.cmd_consume)

    p = sub.add_parser("deliver", help="send the change log to webhook subscribers (signed, retried)")
    p.set_defaults(func=commands.cmd_deliver)

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
    p.set_defaults(func=commands.cmd_clients)

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
    p.set_defaults(func=commands.cmd_audit)

    p = sub.add_parser("broker-permissions",
                       help="print the rabbitmqctl commands letting a system's broker user bind only what its role may read")
    p.add_argument("--role", required=True, choices=["hospital", "gp", "social_care", "community"])
    p.add_argument("--user", required=True, help="the system's RabbitMQ user")
    p.add_argument("--vhost", default="/")
    p.add_argument("--prefix", default=os.environ.get("BUS_PREFIX", ""), help="BUS_PREFIX of the platform")
    p.set_defaults(func=commands.cmd_broker_permissions)

    p = sub.add_parser("migrate", help="bring a service's database schema up to date")
    p.add_argument("service", choices=part_names())
    p.set_defaults(func=commands.cmd_migrate)

    p = sub.add_parser("makemigration", help="write a new Alembic revision from the models (developers)")
    p.add_argument("service", choices=part_names())
    p.add_argument("-m", "--message", required=True)
    p.set_defaults(func=commands.cmd_makemigration)

    p = sub.add_parser("rebuild", help="rebuild the gateway's projection from every service's event feed")
    p.add_argument("services", nargs="*", help="services to replay (default: all four)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes that replay and recompose in parallel on PostgreSQL (default: one per CPU)")
    p.set_defaults(func=commands.cmd_rebuild)

    p = sub.add_parser("demo", help="load a realistic story through the gateway's public API")
    p.add_argument("--url", default=os.environ.get("GATEWAY_URL", f"http://127.0.0.1:{gateway_spec().port}"))
    p.add_argument("--token-file", help="JSON of role -> token (default: var/dev-clients.json)")
    p.add_argument("--nhs-number", default="9434765919")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each projection step")
    p.set_defaults(func=commands.cmd_demo)

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
    p.set_defaults(func=commands.cmd_seed)

    p = sub.add_parser("asyncapi", help="write the AsyncAPI document of every event type")
    p.add_argument("--output", default="docs/asyncapi.yaml")
    p.set_defaults(func=commands.cmd_asyncapi)

    p = sub.add_parser("signing-key", help="print a new private key for the gateway's OAUTH_SIGNING_KEY")
    p.add_argument("--jwk", action="store_true", help="as a one-line JWK (for an .env file) instead of PEM")
    p.set_defaults(func=commands.cmd_signing_key)

    p = sub.add_parser("run", help="start the whole platform on this machine")
    p.add_argument("services", nargs="*", help="domain services to start (default: all that exist)")
    p.set_defaults(func=commands.cmd_run)

    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
