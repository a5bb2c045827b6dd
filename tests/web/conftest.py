"""Fixtures of the web browser tests: one demo project per session, the app over it (TestClient), and for the
Playwright tests one real uvicorn server on a free loopback port and one Chromium (Debian's) per session."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ADMIN_TOKEN = "web-admin-token-0123456789abcdef"
READER_TOKEN = "web-reader-token-0123456789abcdef"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
_SCRIPT = Path(sys.executable).parent / "airduck"
AIRDUCK = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "airduck"]


def cli(*args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([*AIRDUCK, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_"))})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo project (3 days of data), run once: every layer has tables, there is a run with quality results,
    quarantined and rejected rows. Built with the CLI, as a user would."""
    base = tmp_path_factory.mktemp("webdemo")
    cli("init", "demo", "--demo", "--days", "3", cwd=base)
    cli("run", "-q", cwd=base / "demo")
    return base / "demo"


@dataclass(frozen=True)
class DemoBranch:
    name: str
    #: the city whose vacancies the branch deleted from silver.vacancies
    city: str
    deleted: int


@pytest.fixture(scope="session")
def demo_branch(demo_root: Path) -> DemoBranch:
    """A branch of the demo (created with the CLI) on which silver.vacancies lost the rows of its most common city
    (a DELETE on the branch, as a fix under review would): the branch's rows differ from main's; main is untouched."""
    from airduck.lakehouse import Lakehouse

    cli("branch", "create", "fix-city", cwd=demo_root)
    with Lakehouse.open(demo_root, branch="fix-city") as dev:
        city, n = dev.con.execute("SELECT city, count(*) FROM silver.vacancies WHERE city IS NOT NULL "
                                  "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1").fetchone()
        dev.con.execute("DELETE FROM silver.vacancies WHERE city = ?", [city])
    return DemoBranch("fix-city", city, n)


@pytest.fixture(scope="session")
def empty_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new project that never ran: no catalog, no runs, no objects (the empty states)."""
    base = tmp_path_factory.mktemp("webempty")
    cli("init", "empty", cwd=base)
    return base / "empty"


def make_auth():
    from airduck.api.auth import Auth

    return Auth([("admin", ADMIN_TOKEN.encode(), "admin"), ("reader", READER_TOKEN.encode(), "read")])


def make_app(root: Path):
    from airduck.api.app import create_app

    return create_app(root, auth=make_auth())


@pytest.fixture(scope="session")
def demo_app(demo_root: Path):
    app = make_app(demo_root)
    yield app
    app.state.lakehouse.close()


def sign_in(client, token: str = ADMIN_TOKEN) -> str:
    """Sign `client` in through the form; return the session's CSRF token (read from a page)."""
    import re

    r = client.post("/signin", data={"token": token, "next": "/"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = client.get("/sql")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "no CSRF token in the page"
    return found.group(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(demo_root: Path) -> Iterator[str]:
    """`airduck`'s app over the demo, served by uvicorn on a free loopback port (in a thread of this process)."""
    import uvicorn

    app = make_app(demo_root)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="web-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert thread.is_alive(), "uvicorn stopped"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    from tests.support.debian import ensure_binary

    executable = ensure_binary("chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, live_server: str) -> Iterator:
    """A fresh browser context (no cookies), 1280x800, downloads accepted."""
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 800}, accept_downloads=True)
    context.set_default_timeout(15_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


@pytest.fixture
def signed_in(page):
    page.goto("/signin")
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    return page


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: docs/screenshots/ with AIRDUCK_SCREENSHOTS=1 (to refresh the README's), else a temp dir."""
    if os.environ.get("AIRDUCK_SCREENSHOTS") == "1":
        out = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        return out
    return tmp_path_factory.mktemp("screenshots")
