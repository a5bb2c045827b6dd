"""Failpoints for crash tests: with AIRDUCK_FAILPOINT=<name>, the process stops at that point, writes the name to
AIRDUCK_FAILPOINT_FILE and waits (up to a minute) to be killed. Unset (always, in normal use) they do nothing.
Here (below every layer) so that the lake's merge can have them too; airduck.pipeline.failpoints re-exports it."""

from __future__ import annotations

import os
import time
from pathlib import Path


def failpoint(name: str) -> None:
    if os.environ.get("AIRDUCK_FAILPOINT") != name:
        return
    marker = os.environ.get("AIRDUCK_FAILPOINT_FILE")
    if marker:
        Path(marker).write_text(name)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.05)
    raise RuntimeError(f"failpoint {name} was not killed within 60 s")
