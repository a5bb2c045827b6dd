from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_openlineage_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's OPENLINEAGE_* settings never reach the tests."""
    for var in list(os.environ):
        if var.startswith("OPENLINEAGE_"):
            monkeypatch.delenv(var, raising=False)
