"""Every airduck error is transient (worth retrying) or terminal (not), never both, never neither."""

from __future__ import annotations

import importlib
import pickle
import pkgutil

import duckdb
import pytest

import airduck
from airduck.errors import (
    AirduckError,
    CatalogError,
    CatalogFailed,
    CatalogUnreachable,
    ConcurrentRunError,
    ConfigError,
    NotFound,
    RunFailed,
    ServeError,
    SourceError,
    SqlError,
    StorageError,
    Terminal,
    Transient,
)
from airduck.lake.errors import translate, translated

FAMILIES = (CatalogError, StorageError, SourceError, ServeError)


def all_error_classes() -> set[type[AirduckError]]:
    for module in pkgutil.walk_packages(airduck.__path__, "airduck."):
        if ".demo.template" in module.name or module.name.endswith("__main__"):
            continue
        importlib.import_module(module.name)
    seen: set[type[AirduckError]] = set()
    todo = [AirduckError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return seen


def one_root(exc: AirduckError) -> bool:
    return isinstance(exc, Transient) != isinstance(exc, Terminal) and exc.transient == isinstance(exc, Transient)


def test_every_error_class_raises_transient_xor_terminal():
    classes = all_error_classes()
    assert {CatalogFailed, CatalogUnreachable, ConcurrentRunError} <= classes
    for cls in {c for c in classes if not c.__name__.startswith("_")} - {Transient, Terminal}:
        if cls is RunFailed or issubclass(cls, RunFailed):
            continue
        for transient in (False, True):
            try:
                exc = cls("message", hint="hint", transient=transient)
            except TypeError:  # an error with its own signature
                continue
            assert one_root(exc), (cls, transient, type(exc).__mro__)
            if cls in FAMILIES:
                assert isinstance(exc, cls) and exc.transient is transient


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_is_caught_as_itself_and_as_its_root(family):
    with pytest.raises(Transient):
        raise family("server did not answer", transient=True)
    with pytest.raises(Terminal):
        raise family("wrong password")
    with pytest.raises(family):
        raise family("either way", transient=True)


def test_run_failed_follows_its_cause_and_pickles():
    for cause, transient in ((ConcurrentRunError("conflict"), True), (ConfigError("bad key"), False)):
        failed = RunFailed(cause, {"run_id": "r1"}, ["step"], recorded=False)
        assert one_root(failed) and failed.transient is transient and isinstance(failed, RunFailed)
        again = pickle.loads(pickle.dumps(failed))
        assert type(again) is type(failed) and again.record == {"run_id": "r1"} and again.steps == ["step"]
        assert again.cause.message == cause.message and again.recorded is False


def test_families_pickle_as_the_member_they_are():
    exc = pickle.loads(pickle.dumps(CatalogError("x", transient=True)))
    assert isinstance(exc, CatalogUnreachable) and exc.transient


@pytest.mark.parametrize(("error", "expected", "transient"), [
    (duckdb.IOException('Unable to connect to Postgres at "host=127.0.0.1 port=1": Connection refused'),
     CatalogError, True),
    (duckdb.IOException("Failed to attach DuckLake MetaData: postgres: could not translate host name"),
     CatalogError, True),
    (duckdb.IOException("Failed to attach: postgres: FATAL: password authentication failed for user"),
     CatalogError, False),
    (duckdb.IOException("IO Error: No files found that match the pattern 'data/x.parquet'"), StorageError, False),
    (duckdb.HTTPException("HTTP GET error on 's3://b/k' (HTTP 503 Service Unavailable)"), StorageError, True),
    (duckdb.HTTPException("HTTP GET error on 's3://b/k' (HTTP 403 Forbidden)"), StorageError, False),
    (duckdb.IOException("Could not establish connection error for HTTP HEAD to 'http://127.0.0.1:1/b/k'"),
     StorageError, True),
    (duckdb.CatalogException("Catalog Error: Table with name nope does not exist!"), NotFound, False),
    (duckdb.BinderException('Binder Error: Referenced column "x" not found'), SqlError, False),
    (duckdb.TransactionException("TransactionContext Error: Transaction conflict: cannot update"),
     ConcurrentRunError, True),
])
def test_translate_classifies_duckdb_errors(error, expected, transient):
    out = translate(error)
    assert isinstance(out, expected), (type(out), out)
    assert one_root(out) and out.transient is transient


def test_user_data_that_looks_like_a_network_error_is_not_transient():
    out = translate(duckdb.ConversionException("Could not convert string 'Connection refused' to INT32"))
    assert isinstance(out, SqlError) and not out.transient


def test_translated_raises_airduck_errors_only():
    @translated
    def read() -> None:
        raise duckdb.CatalogException("Catalog Error: Table with name nope does not exist!")

    with pytest.raises(NotFound) as info:
        read()
    assert info.value.__cause__ is None and info.value.__suppress_context__
