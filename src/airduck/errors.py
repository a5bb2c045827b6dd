"""The errors airduck raises.

Every error a user can cause or fix is an :class:`AirduckError`. The CLI prints it as one line
(exit code 1); the API turns it into a 4xx/5xx JSON body. ``Transient`` errors (network, a catalog
write conflict) may be retried; ``Terminal`` ones (bad config, a failed quality gate) must not be.
"""

from __future__ import annotations

from typing import Any


class AirduckError(Exception):
    """Base class of every error airduck reports to a user."""

    transient: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} ({hint})")


class Transient(AirduckError):
    """Worth retrying: a network hiccup, a catalog write conflict, a busy server."""

    transient = True


class Terminal(AirduckError):
    """Retrying will not help: the input, the config or the data must change first."""


class ConfigError(Terminal):
    """airduck.yml (or its environment) is invalid. The message names the file, the key and the fix."""


class CatalogError(AirduckError):
    """The DuckLake catalog cannot be reached or opened."""


class StorageError(AirduckError):
    """The object store (local folder or S3) cannot be read or written."""


class SqlError(Terminal):
    """A SQL statement was refused (not read-only, not a single statement) or failed."""


class NotFound(Terminal):
    """A table, snapshot, tag or run that does not exist."""


class SourceError(AirduckError):
    """A source (files, PostgreSQL, HTTP) could not be read."""


class RuleError(Terminal):
    """A silver rule is invalid (bad expression, unknown column, schema drift without `evolve`)."""


class QualityGateFailed(Terminal):
    """An expectation with ``on_fail: fail`` (or a dbt test of severity error) failed; nothing was published."""


class ConcurrentRunError(Transient):
    """Another run committed first; this one was rolled back and can be retried."""


class DbtError(Terminal):
    """dbt failed to build the gold layer."""


class ServeError(AirduckError):
    """Publishing marts to PostgreSQL or exporting them failed."""


class RunFailed(AirduckError):
    """A run failed: carries the failed run's ``record`` (a RunRecord, with its steps) and the ``cause``.

    The message and hint are the cause's; ``transient`` follows the cause (a conflict may be retried,
    a failed gate may not). ``recorded`` says whether the failed run could be written to the run
    records (it cannot when the catalog is unreachable). The original error is also ``__cause__``.
    """

    def __init__(self, cause: AirduckError, record: Any, steps: list[Any] | None = None, *,
                 recorded: bool = True) -> None:
        super().__init__(cause.message, hint=cause.hint)
        self.cause = cause
        self.record = record
        self.steps = list(steps or [])
        self.recorded = recorded
        self.transient = cause.transient
