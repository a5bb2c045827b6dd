"""The read facades of the lake's branches behind ``?branch=NAME`` (docs/branches.md, "REST API"): one Lakehouse
per branch, opened on first use, kept for the next requests, and *leased* to every request that reads through it.

A facade is closed only when no request uses it. Replacing it (the branch was merged, so forked again, or deleted
and created again: its registry row differs), dropping it (the branch is gone: the request is a 404) or evicting it
(more than ``api.open_branches`` branches were read: the least recently used goes) *retires* it: it leaves the
cache, a request in the middle of a query on it finishes on it, and the release of its last lease closes it. The
next request of the branch opens its new fork.

A request's leases (:func:`for_request`) last until its response is sent: :class:`ReleaseLeases`, the ASGI
middleware `create_app` installs, releases them then (also when the request failed).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from fastapi import Request

from airduck.errors import NotFound
from airduck.lakehouse import Lakehouse

#: the key of ``scope["state"]`` that holds a request's leases
_LEASES = "branch_leases"


class _Facade:
    """A cached facade: the registry row it was opened for (`key`), the requests using it, retired or not."""

    __slots__ = ("closed", "key", "lakehouse", "retired", "users")

    def __init__(self, key: tuple, lakehouse: Lakehouse) -> None:
        self.key = key
        self.lakehouse = lakehouse
        self.users = 0
        self.retired = False
        self.closed = False


class BranchFacades:
    """The open branch facades of an app (``app.state.branches``), over `main`, the app's own Lakehouse.

    ``with facades.lease(name) as lh:`` reads branch `name` (NotFound, a 404, when there is no such branch;
    BranchError, a 400, for an invalid name). Safe across threads."""

    def __init__(self, main: Lakehouse) -> None:
        self.main = main
        self._lock = threading.Lock()
        self._open: OrderedDict[str, _Facade] = OrderedDict()
        self._retired: list[_Facade] = []  # retired, still leased: closed at their last release

    @property
    def size(self) -> int:
        """How many branches' facades stay open (``api.open_branches``)."""
        return self.main.project.config.api.open_branches

    @contextmanager
    def lease(self, name: str) -> Iterator[Lakehouse]:
        facade = self._acquire(name)
        try:
            yield facade.lakehouse
        finally:
            self._release(facade)

    def cached(self) -> dict[str, Lakehouse]:
        """The facades kept for the next requests, by branch (the least recently used first); retired ones,
        closed or still in use, are not among them."""
        with self._lock:
            return {name: f.lakehouse for name, f in self._open.items()}

    def in_use(self) -> int:
        """How many leases are held now (retired facades included)."""
        with self._lock:
            return sum(f.users for f in [*self._open.values(), *self._retired])

    def close(self) -> None:
        """Retire every facade (the app's shutdown): the unused ones are closed now, the others at their release."""
        with self._lock:
            done = [self._retire_locked(name) for name in list(self._open)]
        _close(done)

    # -- inside ---------------------------------------------------------------------------------------------------
    def _acquire(self, name: str) -> _Facade:
        from airduck.lake import branches

        name = branches.check_name(name)
        try:
            b = branches.get(self.main.project, name)
        except NotFound:
            with self._lock:
                gone = self._retire_locked(name)
            _close([gone])
            raise
        key = (b.location, b.created_at.isoformat(), b.fork_snapshot)
        done: list[_Facade] = []
        try:
            with self._lock:
                facade = self._open.get(name)
                if facade is not None and facade.key != key:  # merged (forked again), or deleted and created again
                    done.append(self._retire_locked(name))
                    facade = None
                if facade is None:
                    facade = self._open[name] = _Facade(key, self.main.on_branch(name))
                self._open.move_to_end(name)
                facade.users += 1
                while len(self._open) > self.size:  # the least recently used first (never this one: the last)
                    done.append(self._retire_locked(next(iter(self._open))))
        finally:
            _close(done)
        return facade

    def _release(self, facade: _Facade) -> None:
        with self._lock:
            facade.users -= 1
            last = facade.retired and facade.users == 0 and not facade.closed
            if last:
                facade.closed = True
                self._retired.remove(facade)
        if last:
            facade.lakehouse.close()

    def _retire_locked(self, name: str) -> _Facade | None:
        """Take branch `name`'s facade out of the cache: returned (marked closed) when no request uses it, so the
        caller closes it outside the lock; else closed by the release of its last lease."""
        facade = self._open.pop(name, None)
        if facade is None:
            return None
        facade.retired = True
        if facade.users:
            self._retired.append(facade)
            return None
        facade.closed = True
        return facade


def _close(facades: list[_Facade | None]) -> None:
    for facade in facades:
        if facade is not None:
            facade.lakehouse.close()


def for_request(request: Request, name: str) -> Lakehouse:
    """Branch `name`'s facade for this request: one per branch and request, leased until its response is sent."""
    state = request.scope.get("state")
    leases = state.get(_LEASES) if isinstance(state, dict) else None
    if leases is None:
        raise RuntimeError("the app has no ReleaseLeases middleware (create_app installs it)")
    stack, held = leases
    if name not in held:
        held[name] = stack.enter_context(request.app.state.branches.lease(name))
    return held[name]


class ReleaseLeases:
    """ASGI middleware: the branch facades an HTTP request leased (:func:`for_request`) are released once its
    response is sent, or it failed."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with ExitStack() as stack:
            scope.setdefault("state", {})[_LEASES] = (stack, {})
            await self.app(scope, receive, send)
