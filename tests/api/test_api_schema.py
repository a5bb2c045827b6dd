"""schemathesis over the app's own OpenAPI schema, in-process, every endpoint: no 5xx, answers match the schema.

A small lake of its own (a table written directly, no pipeline: a generated POST /runs finds nothing to run and
answers at once instead of running the pipeline hundreds of times). Calls carry the admin token, so they reach
the routes' validation and the facade; the 401/403 paths are checked in test_api_security.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.api.conftest import TOKENS

ADMIN = {"Authorization": f"Bearer {TOKENS['admin']}"}
#: checks of what a schema cannot say: a well-formed but unknown cursor, tag or time is a 400 with the fix, which
#: "schema-valid data must be accepted" calls a failure (and its mirror, for the few constraints JSON Schema lacks)
#: generated cases per operation (about 30 operations; ~1 s of the suite per 10 cases each)
EXAMPLES = 12
#: operations that do real work per case (a maintenance pass, opening a run) get fewer
FEWER = {"POST /api/v1/maintain": 3, "POST /api/v1/runs": 4, "GET /api/v1/tables": 6, "POST /api/v1/tags": 6}
OPINIONS = [positive_data_acceptance, negative_data_rejection]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from airduck.api.app import create_app
    from airduck.lake.commit import write
    from airduck.lakehouse import Lakehouse

    root = tmp_path_factory.mktemp("schema")
    config = {"name": "schema_test", "api": {"tokens": {"admin": {"token": "${T}", "role": "admin"}},
                                             "max_upload_mb": 0.1, "sql_timeout_seconds": 2}}
    (root / "airduck.yml").write_text(yaml.safe_dump(config))
    (root / ".env").write_text(f"T={TOKENS['admin']}\n")
    with Lakehouse.open(root) as lh:
        with write(lh.con, "seed"):
            lh.con.execute("CREATE TABLE bronze.t AS SELECT range AS id, 'v' || range AS name, range * 0.5 AS x "
                           "FROM range(50)")
        with write(lh.con, "more"):
            lh.con.execute("INSERT INTO bronze.t VALUES (100, NULL, NULL)")
        lh.objects().put_stream("docs/a.txt", [b"hello"], 100)
    app = create_app(root)
    yield schemathesis.openapi.from_asgi("/api/v1/openapi.json", app, headers=ADMIN)
    app.state.lakehouse.close()


def test_every_endpoint_conforms(api_schema):
    """Each operation with up to EXAMPLES generated cases (schemathesis' pytest plugin does not load under this pytest:
    the operations are driven with hypothesis directly, the same strategies and checks)."""
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 25
    only = os.environ.get("TEST_SCHEMA_OPS")  # a comma-separated subset, to chase one failure
    if only:
        operations = [op for op in operations if op.label in only.split(",")]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=FEWER.get(operation.label, EXAMPLES), deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:
            case.call_and_validate(headers=ADMIN, excluded_checks=OPINIONS)

        t0 = time.monotonic()
        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # every operation is tried; all failures are shown at once
            failures[operation.label] = str(exc)[:2000]
        print(f"{operation.label}: {time.monotonic() - t0:.1f} s")
    assert not failures, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
