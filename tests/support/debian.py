"""Debian packages the tests need (Chromium for the web browser tests, promtool for the alert rules).

The README's test command must pass on a fresh machine, so a test that needs a Debian binary asks for it
here: when the binary is missing, `apt-get update` runs once per session and `apt-get install -y` brings the
package. A failed install fails the test that needed it (never a skip: a missing tool must not hide a
missing feature). `.ci/run` installs the same packages up front, so CI spends no test time on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import pytest

# binary on PATH -> Debian package that provides it
PACKAGES = {
    "chromium": "chromium",
    "promtool": "prometheus",
}

_lock = threading.Lock()
_updated = False


def ensure_binary(binary: str) -> str:
    """Return the path of `binary`, installing its Debian package first if it is missing."""
    global _updated
    found = shutil.which(binary)
    if found:
        return found
    package = PACKAGES.get(binary, binary)
    if shutil.which("apt-get") is None:
        pytest.fail(f"{binary} is missing and there is no apt-get to install Debian's {package}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _lock:
        if shutil.which(binary) is None:
            if not _updated:
                subprocess.run(["apt-get", "update", "-q"], env=env, check=False, capture_output=True, timeout=600)
                _updated = True
            proc = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
                                  env=env, capture_output=True, text=True, timeout=1200)
            if proc.returncode != 0:
                pytest.fail(f"apt-get install {package} failed: {proc.stderr.strip()[-500:]}")
    found = shutil.which(binary)
    if not found:
        pytest.fail(f"{package} is installed but {binary} is not on PATH")
    return found
