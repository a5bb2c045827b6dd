"""The errors airduck raises.

Every error a user can cause or fix is an :class:`AirduckError`. The CLI prints it as one line
(exit code 1); the API turns it into a 4xx/5xx JSON body. ``Transient`` errors (network, a catalog
write conflict) may be retried; ``Terminal`` ones (bad config, a failed quality gate) must not be.

Every error raised is an instance of exactly one of the two (``except Transient`` / ``except Terminal``,
or ``exc.transient``). The errors of a part that can fail either way (``CatalogError``, ``StorageError``,
``SourceError``, ``ServeError``, ``RunFailed``) are families: ``CatalogError("...")`` is a terminal
``CatalogFailed``, ``CatalogError("...", transient=True)`` a transient ``CatalogUnreachable``, and both
are caught by ``except CatalogError``.
"""

from __future__ import annotations

from typing import Any

#: the exit code of `airduck run` (and `maintain`) when the failure is transient (EX_TEMPFAIL): worth retrying, as
#: an orchestrator's pod task does on this code only; any other error exits 1
EXIT_TRANSIENT = 75


class AirduckError(Exception):
    """Base class of every error airduck reports to a user."""

    transient: bool = False

    def __init__(self, message: str, *, hint: str | None = None, transient: bool | None = None) -> None:
        # `transient` picks the member of a family (see _Family.__new__); the class says what it is
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


class _Family(AirduckError):
    """A family of errors that may be transient or terminal: instantiating the family itself gives its terminal
    member, or its transient member with ``transient=True``. Its members derive from it and from one root."""

    _members: tuple[type[AirduckError], type[AirduckError]] | None = None  # (terminal, transient)

    def __new__(cls, *args: Any, transient: bool | None = None, **kwargs: Any):
        members = cls.__dict__.get("_members")
        if members is not None:
            cls = members[1] if transient else members[0]
        return super().__new__(cls, *args)


def _family(base: type[_Family], terminal: type[AirduckError], transient: type[AirduckError]) -> None:
    base._members = (terminal, transient)


class CatalogError(_Family):
    """The DuckLake catalog cannot be reached or opened (family: CatalogFailed | CatalogUnreachable)."""


class CatalogFailed(CatalogError, Terminal):
    """The catalog cannot be used as configured: wrong DSN or password, no such database, a missing extension."""


class CatalogUnreachable(CatalogError, Transient):
    """The catalog's server did not answer (refused, timed out): worth retrying later."""


class CatalogMissing(CatalogFailed):
    """The lake's catalog does not exist yet (a fresh project): the first write creates it."""


_family(CatalogError, CatalogFailed, CatalogUnreachable)


class StorageError(_Family):
    """The object store (local folder or S3) cannot be read or written (family: StorageFailed | StorageUnavailable)."""


class StorageFailed(StorageError, Terminal):
    """Storage refused the request as configured: bad credentials, no such bucket or object, a bad URL."""


class StorageUnavailable(StorageError, Transient):
    """The object store did not answer or answered 5xx: worth retrying later."""


_family(StorageError, StorageFailed, StorageUnavailable)


class SqlError(Terminal):
    """A SQL statement was refused (not read-only, not a single statement) or failed."""


class NotFound(Terminal):
    """A table, snapshot, tag or run that does not exist."""


class SourceError(_Family):
    """A source (files, PostgreSQL, HTTP) could not be read (family: SourceFailed | SourceUnavailable)."""


class SourceFailed(SourceError, Terminal):
    """A source cannot be read as configured (bad URL, credentials, missing table or file)."""


class SourceUnavailable(SourceError, Transient):
    """A source's server did not answer, timed out or answered 5xx: worth retrying later."""


_family(SourceError, SourceFailed, SourceUnavailable)


class RuleError(Terminal):
    """A silver rule is invalid (bad expression, unknown column, schema drift without `evolve`)."""


class QualityGateFailed(Terminal):
    """An expectation with ``on_fail: fail`` (or a dbt test of severity error) failed; nothing was published."""


class ConcurrentRunError(Transient):
    """Another run committed first; this one was rolled back and can be retried."""


class DbtError(Terminal):
    """dbt failed to build the gold layer."""


class ServeError(_Family):
    """Publishing marts to PostgreSQL or exporting them failed (family: ServeFailed | ServeUnavailable)."""


class ServeFailed(ServeError, Terminal):
    """A mart cannot be published as configured (bad DSN, columns that do not match)."""


class ServeUnavailable(ServeError, Transient):
    """The serving database did not answer: worth retrying later."""


_family(ServeError, ServeFailed, ServeUnavailable)


class RunFailed(_Family):
    """A run failed: carries the failed run's ``record`` (a RunRecord, with its steps) and the ``cause``.

    The message and hint are the cause's; ``transient`` follows the cause (a conflict may be retried,
    a failed gate may not). ``recorded`` says whether the failed run could be written to the run
    records (it cannot when the catalog is unreachable). The original error is also ``__cause__``.
    """

    def __new__(cls, cause: AirduckError, *args: Any, **kwargs: Any):
        return super().__new__(cls, cause, *args, transient=bool(getattr(cause, "transient", False)))

    def __init__(self, cause: AirduckError, record: Any, steps: list[Any] | None = None, *,
                 recorded: bool = True) -> None:
        super().__init__(cause.message, hint=cause.hint)
        self.cause = cause
        self.record = record
        self.steps = list(steps or [])
        self.recorded = recorded

    def __reduce__(self):  # pickles (Airflow, multiprocessing) as the member it is, with its cause
        return (_rebuild_run_failed, (self.cause, self.record, self.steps, self.recorded))


class RunFailedTerminal(RunFailed, Terminal):
    """A run failed for a reason a retry will not fix (bad config or data, a failed gate)."""


class RunFailedTransient(RunFailed, Transient):
    """A run failed for a reason worth retrying (a conflict at commit, a network hiccup)."""


_family(RunFailed, RunFailedTerminal, RunFailedTransient)


class AuditFailed(Terminal):
    """An `audit:` query returned rows (an atomic run's audit, `airduck audit`): nothing was merged."""


def _rebuild_run_failed(cause: AirduckError, record: Any, steps: list[Any], recorded: bool) -> RunFailed:
    return RunFailed(cause, record, steps, recorded=recorded)
