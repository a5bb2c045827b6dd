"""Running dbt in a subprocess (isolates dbt's globals) and reading its artifacts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airduck.config.secrets import redact
from airduck.errors import DbtError
from airduck.gold.profile import PROFILE, TARGET

#: keep dbt quiet and offline
DBT_ENV = {
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "DBT_DO_NOT_TRACK": "1",
    "DBT_VERSION_CHECK": "false",
    "DBT_USE_COLORS": "false",
    "DBT_PARTIAL_PARSE": "true",
    "DO_NOT_TRACK": "1",
}
#: dbt's own writes get airduck's commit message (see airduck.gold.dbt_commits)
_LAUNCH = ("from airduck.gold.dbt_commits import install_from_env; install_from_env(); "
           "from dbt.cli.main import cli; cli()")


@dataclass
class DbtInvocation:
    """What one dbt command did: its exit code, its error lines, and where its artifacts are."""

    command: list[str]
    returncode: int
    target_path: Path
    log_path: Path
    errors: list[str] = field(default_factory=list)
    timed_out: bool = False

    @property
    def manifest_path(self) -> Path:
        return self.target_path / "manifest.json"

    @property
    def run_results_path(self) -> Path:
        return self.target_path / "run_results.json"

    def run_results(self) -> dict[str, Any] | None:
        return _read_json(self.run_results_path)

    def manifest(self) -> dict[str, Any] | None:
        return _read_json(self.manifest_path)

    def first_error(self) -> str:
        """The first error dbt reported, as one line (its header joined with the cause)."""
        for msg in self.errors:
            line = error_line(msg)
            if line:
                return line
        return f"dbt exited with code {self.returncode}; see {self.log_path / 'dbt.log'}"


_HEADERS = ("encountered an error", "completed with")


def error_line(text: str | None) -> str:
    """One line from a dbt error message: "Compilation Error in model x (models/x.sql): <cause>"."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.lower().startswith(_HEADERS)]
    if not lines:
        return ""
    if len(lines) > 1 and lines[0].lower().rstrip(":").endswith(("error", ")")) and len(lines[0]) < 120:
        return f"{lines[0].rstrip(':')}: {lines[1]}"
    return lines[0]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


NodeCallback = Callable[[dict[str, Any]], None]


def run_dbt(
    subcommand: list[str], *, project_dir: Path, profiles_dir: Path, target_path: Path, log_path: Path,
    env: dict[str, str], extra_args: list[str] | None = None, on_event: NodeCallback | None = None,
    timeout: float | None = None, partial_parse_cache: Path | None = None,
) -> DbtInvocation:
    """Run `dbt <subcommand>` in a subprocess with JSON logs on stdout, streaming events to `on_event`.

    `partial_parse_cache`: a file where dbt's partial-parse state is kept between runs (each run has
    its own target folder), so unchanged projects skip a full parse.
    """
    target_path.mkdir(parents=True, exist_ok=True)
    log_path.mkdir(parents=True, exist_ok=True)
    if partial_parse_cache is not None and partial_parse_cache.is_file():
        shutil.copyfile(partial_parse_cache, target_path / "partial_parse.msgpack")
    cmd = [
        sys.executable, "-c", _LAUNCH, *subcommand,
        "--project-dir", str(project_dir), "--profiles-dir", str(profiles_dir),
        "--profile", PROFILE, "--target", TARGET,
        "--target-path", str(target_path), "--log-path", str(log_path),
        "--log-format", "json", "--log-format-file", "text", "--no-use-colors", "--no-send-anonymous-usage-stats",
        *(extra_args or []),
    ]
    full_env = {**env, **DBT_ENV}
    errors: list[str] = []
    try:
        proc = subprocess.Popen(
            cmd, cwd=str(project_dir), env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace", start_new_session=True,
        )
    except OSError as exc:
        raise DbtError(f"cannot start dbt: {exc}") from None
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    timer = threading.Timer(timeout, kill) if timeout else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                # not a dbt log line (a Python warning or a crash): keep tracebacks' last words
                if "Error" in line or "error" in line:
                    errors.append(redact(line))
                continue
            info = event.get("info", {})
            if info.get("level") == "error":
                errors.append(redact(str(info.get("msg", ""))))
            if on_event is not None:
                on_event(event)
        returncode = proc.wait()
    except BaseException:
        kill()
        proc.wait()
        raise
    finally:
        if timer is not None:
            timer.cancel()
    if partial_parse_cache is not None and (target_path / "partial_parse.msgpack").is_file():
        partial_parse_cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target_path / "partial_parse.msgpack", partial_parse_cache)
    inv = DbtInvocation(cmd, returncode, target_path, log_path, errors, timed_out.is_set())
    if inv.timed_out:
        raise DbtError(f"dbt {' '.join(subcommand)} did not finish within {timeout:g} s and was stopped",
                       hint="raise gold.timeout in airduck.yml or make the models faster")
    return inv
