"""The routers of /api/v1, one module per resource. Each only parses, calls the facade and shapes the answer."""

from airduck.api.routers import branches, history, objects, runs, session, sql, tables

ROUTERS = [session.router, tables.router, sql.router, history.router, runs.router, objects.router, branches.router]
