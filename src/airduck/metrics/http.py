"""The API server's metrics: request counts and latency per route (an ASGI middleware) and the `/metrics` router
that serves them with the lake gauges (:class:`airduck.metrics.lake.LakeCollector`).

The `route` label is the route's template (``/tables/{name}``), never the raw path, so its values are bounded by
the app's routes; requests that match no route are counted under ``<unmatched>``. The `method` label is one of
:data:`METHODS` or ``other`` (a client chooses the method: any token would make a new series).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.registry import Collector

UNMATCHED = "<unmatched>"
#: the `method` label's values: a client may send any token as a method, so the rest are counted as OTHER
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"

#: name -> (help, label names) of the request metrics (the README's table and the tests use it)
HTTP_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "airduck_http_requests_total": ("HTTP requests answered, by route template, method and status code",
                                    ("route", "method", "status")),
    "airduck_http_request_duration_seconds": ("seconds to answer an HTTP request, by route template and method",
                                              ("route", "method")),
    "airduck_http_requests_in_progress": ("HTTP requests being answered now", ("method",)),
}
#: latency buckets (seconds): API reads are milliseconds, SQL queries may take seconds
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class HttpMetrics:
    """The request metrics in their own registry (with the lake collector, when given, registered beside)."""

    def __init__(self, lake: Collector | None = None, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter("airduck_http_requests", HTTP_METRICS["airduck_http_requests_total"][0],
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("airduck_http_request_duration_seconds",
                                 HTTP_METRICS["airduck_http_request_duration_seconds"][0], ["route", "method"],
                                 buckets=BUCKETS, registry=self.registry)
        self.in_progress = Gauge("airduck_http_requests_in_progress",
                                 HTTP_METRICS["airduck_http_requests_in_progress"][0], ["method"],
                                 registry=self.registry)
        if lake is not None:
            self.registry.register(lake)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def route_template(scope: dict[str, Any], root_path: str = "") -> str:
    """The template of the route that answered (``/tables/{name}``), with the prefix of any mount it is under."""
    route = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    if not path:
        return UNMATCHED
    prefix = str(scope.get("root_path", ""))[len(root_path):]
    return f"{prefix}{path}" or "/"


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request by route template, method and status."""

    def __init__(self, app: Any, metrics: HttpMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "GET")).upper()
        method = method if method in METHODS else OTHER
        root_path = str(scope.get("root_path", ""))
        status = {"code": 500}

        async def record_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        gauge = self.metrics.in_progress.labels(method)
        gauge.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, record_status)
        finally:
            gauge.dec()
            self.metrics.observe(route_template(scope, root_path), method, status["code"],
                                 time.perf_counter() - start)


def metrics_router(metrics: HttpMetrics, *, dependencies: Sequence[Any] = (), path: str = "/metrics",
                   responses: dict[int | str, Any] | None = None):
    """A FastAPI router with ``GET /metrics`` in Prometheus' text format (`dependencies`: e.g. the API's token
    check; `responses`: the error responses to declare in the OpenAPI schema)."""
    from fastapi import APIRouter  # fastapi only where the server runs
    from fastapi.responses import Response

    router = APIRouter(dependencies=list(dependencies), tags=["metrics"])

    @router.get(path, response_class=Response, response_model=None, summary="Prometheus metrics",
                responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
                           **(responses or {})})
    def prometheus_metrics():  # no annotation: `Response` is imported here, not where the annotations resolve
        """Request counts and latency per route, and the lake gauges (tables, snapshots, freshness, runs)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router


def install(app: Any, lakehouse: Any, *, dependencies: Sequence[Any] = (), cache_seconds: float = 10.0,
            responses: dict[int | str, Any] | None = None) -> HttpMetrics:
    """Wire metrics into a FastAPI app: the middleware, and ``GET /metrics`` with the lake gauges of `lakehouse`
    (a :class:`airduck.lakehouse.Lakehouse`, read at most every `cache_seconds`)."""
    metrics = HttpMetrics(lake=lakehouse.metrics_collector(cache_seconds) if lakehouse is not None else None)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(metrics_router(metrics, dependencies=dependencies, responses=responses))
    return metrics
