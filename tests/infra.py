"""Brokers and databases of the tests' own, to kill and restart without touching the machine's.

``RabbitNode`` runs another node of the installed RabbitMQ on its own ports (and can join others
into a cluster); ``PgInstance`` runs another PostgreSQL cluster of the installed server.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from harness import free_port

PG_BIN = Path("/usr/lib/postgresql") / (sorted(os.listdir("/usr/lib/postgresql"))[-1] if Path("/usr/lib/postgresql").exists() else "15") / "bin"


def infra_dir(label: str) -> Path:
    """A folder the rabbitmq and postgres users can reach (pytest's tmp_path is private to root)."""
    import tempfile
    path = Path(tempfile.mkdtemp(prefix=f"coproduction-{label}-", dir="/tmp"))
    path.chmod(0o755)
    return path


def port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
        return True
    except OSError:
        return False


def wait_port(port: int, up: bool = True, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port) == up:
            return
        time.sleep(0.2)
    raise AssertionError(f"port {port} did not go {'up' if up else 'down'} in {timeout}s")


class RabbitNode:
    def __init__(self, name: str, port: int, root: Path):
        self.name = f"{name}@localhost"
        self.port = port
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "mnesia").mkdir(exist_ok=True)
        (self.dir / "log").mkdir(exist_ok=True)
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\n")
        shutil.chown(root, "rabbitmq", "rabbitmq")
        for path in [self.dir, *self.dir.rglob("*")]:
            shutil.chown(path, "rabbitmq", "rabbitmq")
        self.env = dict(os.environ, RABBITMQ_NODENAME=self.name, RABBITMQ_NODE_PORT=str(port),
                        RABBITMQ_DIST_PORT=str(free_port()), RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
                        RABBITMQ_LOG_BASE=str(self.dir / "log"), RABBITMQ_PID_FILE=str(self.dir / "pid"),
                        RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
                        RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq.conf"))

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self) -> "RabbitNode":
        subprocess.run(["rabbitmq-server", "-detached"], env=self.env, check=True, capture_output=True)
        wait_port(self.port)
        self.ctl("await_startup")
        return self

    def ctl(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(["rabbitmqctl", "-n", self.name, *args], env=self.env, capture_output=True, text=True,
                             timeout=120)
        if check and out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout

    def pid(self) -> int:
        return int((self.dir / "pid").read_text().strip())

    def kill9(self) -> None:
        os.kill(self.pid(), signal.SIGKILL)
        wait_port(self.port, up=False)

    def join(self, other: "RabbitNode") -> None:
        self.ctl("stop_app")
        self.ctl("join_cluster", other.name)
        self.ctl("start_app")
        wait_port(self.port)

    def stop(self) -> None:
        if port_open(self.port):
            try:
                os.kill(self.pid(), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        subprocess.run(["pkill", "-9", "-f", f"-sname {self.name}|-name {self.name}"], capture_output=True)


class PgInstance:
    def __init__(self, root: Path, port: int):
        self.dir = root / "pg"
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(root, "postgres")
        shutil.chown(self.dir, "postgres")
        self.port = port
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "root")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args], check=True,
                       capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql://root@127.0.0.1:{self.port}/postgres"

    def _ctl(self, action: str, *extra: str) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200",
                  "-l", str(self.dir / "log"), "-w", action, *extra)

    def start(self) -> "PgInstance":
        self._ctl("start")
        return self

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        try:
            self._ctl("stop", "-m", "immediate")
        except subprocess.CalledProcessError:
            pass
