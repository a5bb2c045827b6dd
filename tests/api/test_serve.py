"""`airduck serve` as a real process (uvicorn) on a free loopback port: the printed token, auth, JSON request logs,
raw (unnormalised) traversal paths over a socket, and the refusal to listen on a public address without tokens."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

AIRDUCK = [sys.executable, "-m", "airduck"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_"))}
    env.update(extra)
    return env


def _project(tmp_path: Path, config: dict | None = None) -> Path:
    root = tmp_path / "p"
    root.mkdir()
    (root / "airduck.yml").write_text(yaml.safe_dump({"name": "serve_test", **(config or {})}))
    return root


def _raw(port: int, path: str, token: str) -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
                  .encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.decode("latin-1").partition("\r\n\r\n")
    return int(head.split()[1]), body


def test_serve_prints_a_token_once_and_serves(tmp_path: Path):
    root = _project(tmp_path)
    (root / "secret.txt").write_text("project secret")
    (root / ".airduck" / "objects").mkdir(parents=True)
    port = _free_port()
    proc = subprocess.Popen([*AIRDUCK, "-p", str(root), "serve", "--port", str(port)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"serve did not start: {proc.poll()}")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/v1/tables").status_code == 401
        assert httpx.get(f"{base}/api/docs").status_code == 401  # only /health is open
        assert httpx.get(f"{base}/api/v1/openapi.json").status_code == 401
        # the token was printed on stderr; read what is there so far without waiting for the process
        os.set_blocking(proc.stderr.fileno(), False)
        early = proc.stderr.read() or ""
        token = re.search(r"admin token of this process is:\s+(\S+)", early).group(1)
        bearer = {"Authorization": f"Bearer {token}"}
        docs = httpx.get(f"{base}/api/docs", headers=bearer)
        assert docs.status_code == 200 and "/api/static/swagger-ui/swagger-ui-bundle.js" in docs.text
        assert "cdn" not in docs.text.lower()  # Swagger UI is vendored, nothing comes from a CDN
        assert httpx.get(f"{base}/api/static/swagger-ui/swagger-ui-bundle.js").status_code == 200
        assert httpx.get(f"{base}/api/v1/openapi.json", headers=bearer).json()["info"]["title"] == "airduck: serve_test"
        h = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/api/v1/tables", headers=h).json() == {"tables": []}
        assert httpx.put(f"{base}/api/v1/objects/in/a.txt", content=b"hi", headers=h).status_code == 201
        for path in ("/api/v1/objects/in/../../secret.txt", "/api/v1/objects/../secret.txt",
                     "/api/v1/objects/in/..%2f..%2fsecret.txt", "/api/v1/objects/%2e%2e/%2e%2e/secret.txt"):
            status, body = _raw(port, path, token)
            assert status in (400, 404) and "project secret" not in body, (path, status, body)
        assert _raw(port, "/api/v1/objects/in/a.txt", token) == (200, "hi")
        time.sleep(0.5)
        later = proc.stderr.read() or ""
    finally:
        proc.terminate()
        _out, rest = proc.communicate(timeout=30)
    logs = early + later + (rest or "")
    assert logs.count(token) == 1  # printed once, never logged
    lines = [json.loads(ln) for ln in logs.splitlines() if ln.startswith("{")]
    requests = [ln for ln in lines if ln.get("path") == "/api/v1/tables"]
    assert [r["status"] for r in requests] == [401, 200]
    assert requests[1]["token"] == "generated" and requests[0]["token"] is None
    assert all(set(r) >= {"method", "path", "status", "duration_ms", "request_id"} for r in requests)


def test_serve_refuses_a_public_host_without_tokens(tmp_path: Path):
    root = _project(tmp_path)
    proc = subprocess.run([*AIRDUCK, "-p", str(root), "serve", "--host", "0.0.0.0", "--port", str(_free_port())],
                          env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "refusing to listen on 0.0.0.0 without API tokens" in proc.stderr and "api.tokens" in proc.stderr
    # an unset ${VAR} of a token is an error, never the literal "${VAR}" as a token
    root2 = tmp_path / "q"
    root2.mkdir()
    (root2 / "airduck.yml").write_text(yaml.safe_dump({"name": "q", "api": {"tokens": {
        "ci": {"token": "${UNSET_TOKEN_VAR_FOR_TEST}", "role": "admin"}}}}))
    proc = subprocess.run([*AIRDUCK, "-p", str(root2), "serve", "--port", str(_free_port())], env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "UNSET_TOKEN_VAR_FOR_TEST is not set" in proc.stderr, proc.stderr


def test_env_token_is_an_admin_token(tmp_path: Path):
    from fastapi.testclient import TestClient

    from airduck.api.app import create_app

    root = _project(tmp_path)
    token = "env-token-" + "e" * 30
    app = create_app(root, environ={"AIRDUCK_API_TOKEN": token})
    assert app.state.auth.generated is None and app.state.auth.configured
    with TestClient(app) as client:
        r = client.get("/api/v1/session", headers={"Authorization": f"Bearer {token}"})
        assert r.json()["name"] == "env" and r.json()["role"] == "admin"
