"""The suite runs against real RabbitMQ and PostgreSQL: it fails loudly, never skips, without them."""
from __future__ import annotations

import pytest

from harness import Platform
from infra import port_open

HOW_TO_START = {
    "PostgreSQL (127.0.0.1:5432)": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "RabbitMQ (127.0.0.1:5672)": "rabbitmq-server -detached",
    "Redis (127.0.0.1:6379)": "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
}
PORTS = {"PostgreSQL (127.0.0.1:5432)": 5432, "RabbitMQ (127.0.0.1:5672)": 5672, "Redis (127.0.0.1:6379)": 6379}


def pytest_sessionstart(session):
    missing = [name for name, port in PORTS.items() if not port_open(port, timeout=2)]
    if missing:
        lines = "\n".join(f"  {m}: start it with `{HOW_TO_START[m]}`" for m in missing)
        pytest.exit(f"The suite needs real services that are not running:\n{lines}\n"
                    "(`make test` starts them when they are installed.)", returncode=3)


def _platforms(folder):
    """Build platforms under ``folder`` (options as ``Platform`` takes them); stop them all at the end."""
    made = []

    def make(**options):
        p = Platform(folder / f"p{len(made)}", **options)
        made.append(p)
        return p

    try:
        yield make
    finally:
        for p in made:
            p.stop()


@pytest.fixture
def make_platform(tmp_path):
    """Build a platform for one test; the test starts what it needs."""
    yield from _platforms(tmp_path)


@pytest.fixture(scope="module")
def make_module_platform(request, tmp_path_factory):
    """Build a platform the whole module shares (each test then keeps to its own people)."""
    yield from _platforms(tmp_path_factory.mktemp(request.module.__name__.removeprefix("test_")))


@pytest.fixture
def platform(make_platform):
    """The whole platform in this process, over RabbitMQ and PostgreSQL."""
    return make_platform().start()


def pytest_terminal_summary(terminalreporter):
    from reliability_report import ROWS, SCALE, table
    if ROWS:
        terminalreporter.write_sep("=", f"reliability ({SCALE} scale)")
        terminalreporter.write_line(table(ROWS))
