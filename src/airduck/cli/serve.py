"""`airduck serve`: the REST API and the browser pages on one port (FastAPI on uvicorn; imported only when run)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on. Another than loopback needs api.tokens.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8000,
) -> None:
    """Serve the REST API (/api/v1, docs at /api/docs) and the web pages over the project's lake.

    Every endpoint but /health needs a token: those of `api.tokens` in airduck.yml, or AIRDUCK_API_TOKEN (admin).
    With none configured, a random admin token is made for this process and printed once.
    """
    import uvicorn

    from airduck.api.app import create_app
    from airduck.api.auth import Auth
    from airduck.api.logs import configure
    from airduck.cli.app import state
    from airduck.errors import ConfigError
    from airduck.lakehouse import Lakehouse

    lh = Lakehouse.open(state.project)
    auth = Auth.from_project(lh.project, generate=_loopback(host))
    if not auth.configured and not _loopback(host):
        lh.close()
        raise ConfigError(f"refusing to listen on {host} without API tokens: anyone who can reach it could read "
                          "and change the lake", hint="configure api.tokens in airduck.yml (or set AIRDUCK_API_TOKEN), "
                          "or serve on 127.0.0.1")
    app = create_app(lh, auth=auth)
    configure()
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"airduck serve: http://{shown}:{port}/  (API docs: http://{shown}:{port}/api/docs)", err=True)
    if auth.generated:
        typer.echo(f"airduck serve: no api.tokens configured; the admin token of this process is:\n"
                   f"    {auth.generated}\n(send it as `Authorization: Bearer <token>`, or sign in with it in the "
                   "browser)", err=True)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, server_header=False)
