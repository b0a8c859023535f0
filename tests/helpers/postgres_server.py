"""A throw-away PostgreSQL server on 127.0.0.1 for tests, with a password-protected role (so tests can check that
the password never shows).

The server is the one the ``pgserver`` wheel bundles (the ``distributed`` extra), else a system PostgreSQL
(``pg_config --bindir``, Debian's ``/usr/lib/postgresql/<version>/bin``). It listens on a free TCP port of the
loopback only, has no Unix socket, and trades durability for speed (``fsync=off``): its data folder is deleted
when it stops. PostgreSQL refuses to run as root, so under root (CI) it runs as the ``postgres`` account, else
``nobody``.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER, PASSWORD = "smart", "s3cret-pw"  # the role the tests connect as; the password must never appear in output
DRIVER = "postgresql+psycopg"  # SQLAlchemy URL scheme: psycopg 3


def find_bin_dir() -> Path | None:
    """A folder holding ``initdb``, ``pg_ctl`` and ``postgres``, or None."""
    candidates = []
    wheel = importlib.util.find_spec("pgserver")  # found, not imported: importing it sets up a lock folder
    if wheel is not None and wheel.origin:
        candidates.append(Path(wheel.origin).parent / "pginstall" / "bin")
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(Path(found.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)
    return next((c for c in candidates if all((c / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres"))),
                None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """``start()`` initialises and starts a cluster in a new temporary folder; ``stop()`` stops it and deletes it."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port: int | None = None
        self.root = Path(tempfile.mkdtemp(prefix="smart-tuner-pg-"))
        self.data, self.log = self.root / "data", self.root / "server.log"
        self.account = None
        if os.geteuid() == 0:
            self.account = next(name for name in ("postgres", "nobody") if _exists(name))
            entry = pwd.getpwnam(self.account)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            if not _reachable_by_others(bin_dir) and (bin_dir.parent / "share").is_dir():
                # The wheel's relocatable install in a folder the account cannot enter (a clone under a private
                # folder): a copy of it beside the data, laid out as in site-packages (pgserver/pginstall/bin
                # finds its libraries in pgserver.libs, three folders up).
                install, wheel = bin_dir.parent, bin_dir.parent.parent
                copy = self.root / "install" / wheel.name / install.name
                for part in ("bin", "lib", "share"):
                    shutil.copytree(install / part, copy / part, symlinks=True)
                libs = wheel.parent / f"{wheel.name}.libs"
                if libs.is_dir():
                    shutil.copytree(libs, self.root / "install" / libs.name, symlinks=True)
                self.bin_dir = copy / "bin"

    def _run(self, *args: str, timeout: float = 120) -> None:
        done = subprocess.run([str(self.bin_dir / args[0]), *args[1:]], capture_output=True, text=True,
                              timeout=timeout, user=self.account, cwd=self.root)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr[-2000:]}\n{log[-2000:]}")

    def start(self) -> PostgresServer:
        password_file = self.root / "password"
        password_file.write_text(PASSWORD)
        if self.account:
            entry = pwd.getpwnam(self.account)
            os.chown(password_file, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", USER, f"--pwfile={password_file}", "--auth=scram-sha-256",
                  "--encoding=UTF8", "--no-sync")
        password_file.unlink()
        for attempt in range(3):  # another process may take the free port between the probe and the bind
            self.port = _free_port()
            settings = {"listen_addresses": "'127.0.0.1'", "port": self.port, "unix_socket_directories": "''",
                        "max_connections": 200, "fsync": "off", "synchronous_commit": "off",
                        "full_page_writes": "off", "shared_buffers": "'32MB'"}
            with (self.data / "postgresql.auto.conf").open("w") as conf:
                conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120", "start",
                          timeout=180)
                return self
            except RuntimeError:
                if attempt == 2:
                    raise
        return self

    def stop(self) -> None:
        try:
            if self.port is not None and (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        """The SQLAlchemy URL of ``database`` (psycopg 3 driver)."""
        return f"{DRIVER}://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD, dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _reachable_by_others(folder: Path) -> bool:
    """Whether every folder from / down to ``folder`` may be entered by any user."""
    return all(part.stat().st_mode & 0o001 for part in [folder.resolve(), *folder.resolve().parents])


def _exists(account: str) -> bool:
    try:
        pwd.getpwnam(account)
        return True
    except KeyError:
        return False
