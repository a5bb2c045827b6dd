"""Failpoints for crash tests (see airduck.core.failpoints)."""

from __future__ import annotations

from airduck.core.failpoints import failpoint

__all__ = ["failpoint"]
