"""Metrics, data-age freshness and alerts: Prometheus collectors and sinks, `airduck freshness`, webhooks.

- :mod:`airduck.metrics.config`: the `metrics:` and `alerts:` parts of airduck.yml
- :mod:`airduck.metrics.lake`: the lake gauges (tables, snapshots, runs) from a :class:`LakeState`
- :mod:`airduck.metrics.staleness`: each table's age against its `freshness:` policy
- :mod:`airduck.metrics.batch`: the event sink that pushes a batch run's metrics (Pushgateway, textfile)
- :mod:`airduck.metrics.alerts`: webhooks (Slack / Telegram / generic JSON) and the alert sink
- :mod:`airduck.metrics.http`: the API server's request metrics (ASGI middleware) and its `/metrics` router

This package sits beside the stages: it reads plain data the facade gathers (catalog descriptions, run records)
and never imports the pipeline.
"""
