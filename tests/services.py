"""Real services for tests: a PostgreSQL server and an MLflow tracking server, each in a temp dir.

PostgreSQL runs from Debian's binaries (``/usr/lib/postgresql/<version>/bin``; installed by
``tests/services_setup.sh`` when missing) in a fresh data directory on a free port, as the
``postgres`` system user when the tests run as root (initdb refuses root). The tracking server
is ``mlflow server`` with that database as its backend store and a local artifact root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server binaries on the machine, if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(found[-1]).parent if found else None


def _version(path: str) -> float:
    try:
        return float(Path(path).parent.parent.name)
    except ValueError:
        return 0.0


def _as_owner(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def postgres(database: str = "mlflow") -> Iterator[str]:
    """A PostgreSQL server in a fresh temp dir on a free port; yields the database's URI.

    The directory is made directly under the system's temp folder (pytest's are private to
    their owner, and the server runs as ``postgres`` when the tests run as root) and removed
    afterwards.
    """
    binaries = postgres_bin()
    if binaries is None:
        raise RuntimeError("no PostgreSQL binaries: run tests/services_setup.sh")
    with tempfile.TemporaryDirectory(prefix="kam-pg-") as folder:
        yield from _postgres(binaries, Path(folder), database)


def _postgres(binaries: Path, root: Path, database: str) -> Iterator[str]:
    data = root / "pgdata"
    sockets = root / "pgsock"
    for folder in (data, sockets):
        folder.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    _run(_as_owner([str(binaries / "initdb"), "-D", str(data), "-U", "kam", "-A", "trust",
                    "--no-sync", "-E", "UTF8"]), root)
    log = root / "postgres.log"
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    _run(_as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                    "-w", "-t", "120", "start"]), root)
    try:
        _run([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "kam",
              database], root)
        yield f"postgresql+psycopg2://kam@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run(
            _as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True, cwd=root,
        )


def _run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")


@contextmanager
def mlflow_server(backend: str, artifacts: Path, timeout: float = 600.0) -> Iterator[str]:
    """``mlflow server`` on ``backend`` with local artifacts; yields its tracking URI.

    On a fresh database the server first creates its schema (some fifty migrations), which
    takes minutes on a busy machine: hence the long timeout.
    """
    port = free_port()
    artifacts.mkdir(parents=True, exist_ok=True)
    log = open(artifacts.parent / "mlflow-server.log", "wb")  # noqa: SIM115 - closed below
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend,
        "--default-artifact-root", artifacts.as_uri(),
        "--no-serve-artifacts",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"mlflow server stopped: {(artifacts.parent / 'mlflow-server.log').read_text()}"
                )
            try:
                if httpx.get(f"{uri}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlflow server not up on {uri} after {timeout:.0f} s")
            time.sleep(0.5)
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
