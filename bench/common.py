"""Shared parts of the benchmark scripts: running a contender in its own process, measuring it, reporting.

A contender runs as ``python <script> --worker <name> ...`` in a child process. The parent times the child from
spawn to exit (wall seconds, including interpreter start and imports). Peak memory is the high-water mark of the
child's own address space (``VmHWM`` in ``/proc/<pid>/status``): the worker reports it at its end, and the parent
polls it while waiting. Not ``ru_maxrss``: on Linux that also counts the parent's memory the child had before
``exec`` (measured: every child "peaked" at the parent's 543 MiB). The child writes its result (counts, its own
step timings and the seconds of the work itself) as JSON to a file.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"


def _vm_hwm_mib(pid: int | str = "self") -> float | None:
    """Peak resident memory (MiB) of a process's current address space, from /proc; None if unavailable."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        return None
    return None


def self_peak_rss_mib() -> float | None:
    """This process's peak resident memory (MiB) since its exec: what a worker reports at its end."""
    return _vm_hwm_mib("self")


def cpu_busy_seconds() -> float | None:
    """Machine-wide busy CPU seconds so far (all cores, from /proc/stat); None where there is no /proc."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def others_share(seconds: float = 2.0) -> float | None:
    """The share of the machine's CPU (0..1) busy over `seconds` while this process sleeps: other work."""
    before = cpu_busy_seconds()
    time.sleep(seconds)
    after = cpu_busy_seconds()
    if before is None or after is None:
        return None
    return max(0.0, (after - before) / (seconds * (os.cpu_count() or 1)))


def wait_for_quiet(max_wait: float, threshold: float = 0.10, log: Any = None) -> float | None:
    """Wait (up to `max_wait` seconds) until other processes use less than `threshold` of the CPU.

    Returns the last measured share. The benchmark machines are shared; a contender measured while another
    job runs is slower for reasons that have nothing to do with it.
    """
    deadline = time.monotonic() + max_wait
    share = others_share()
    while share is not None and share >= threshold and time.monotonic() < deadline:
        if log:
            log(f"  waiting for a quiet machine (others use {share:.0%} of the CPU)")
        time.sleep(5)
        share = others_share()
    return share


def measure_quietly(run: Any, *, quiet_wait: float = 0.0, quiet_threshold: float = 0.10,
                    max_others: float | None = None, retries: int = 0,
                    log: Any = None) -> tuple[Measurement, list[Measurement]]:
    """Run `run()` (-> Measurement), first waiting up to `quiet_wait` s for other processes to use less than
    `quiet_threshold` of the CPU; redo it (up to `retries` times) while other processes used more than
    `max_others` of the CPU during it. Returns the kept measurement and the discarded noisy ones."""
    discarded: list[Measurement] = []
    while True:
        if quiet_wait:
            wait_for_quiet(quiet_wait, threshold=quiet_threshold, log=log)
        m = run()
        noisy = max_others is not None and m.others_share is not None and m.others_share > max_others
        if not noisy or not m.ok or len(discarded) >= retries:
            return m, discarded
        if log:
            log(f"  discarded a noisy run of {m.name}: others used {m.others_share:.0%} of the CPU during it")
        discarded.append(m)


@dataclass
class Measurement:
    """One run of one contender."""

    name: str
    wall_seconds: float
    max_rss_mib: float
    exit_code: int | None
    result: dict[str, Any] = field(default_factory=dict)
    timed_out: bool = False
    log_tail: str = ""
    cpu_seconds: float | None = None  # user + system CPU of the child
    others_share: float | None = None  # share of the machine's CPU used by OTHER processes during the run
    ru_maxrss_mib: float | None = None  # the kernel's ru_maxrss (includes the parent's pre-exec memory)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and "error" not in self.result

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "wall_seconds": round(self.wall_seconds, 3), "max_rss_mib": round(self.max_rss_mib, 1),
                "ru_maxrss_mib": None if self.ru_maxrss_mib is None else round(self.ru_maxrss_mib, 1),
                "cpu_seconds": None if self.cpu_seconds is None else round(self.cpu_seconds, 2),
                "others_cpu_share": None if self.others_share is None else round(self.others_share, 3),
                "exit_code": self.exit_code, "timed_out": self.timed_out, "result": self.result,
                **({"log_tail": self.log_tail} if not self.ok else {})}


def worker_env() -> dict[str, str]:
    """The workers' environment: this one, but Python may cache the modules it compiles.

    An installed tool starts from compiled modules (pip compiles them at install; uv writes them on first import).
    A shell with PYTHONDONTWRITEBYTECODE set (as on the sandboxes this was measured on) would make every worker
    compile airduck, pandas, sqlglot ... from source again: about 2 s per airduck process, 0.3 s per DuckDB one.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_child(name: str, cmd: list[str], result_file: Path, log_file: Path, timeout: float,
              env: dict[str, str] | None = None) -> Measurement:
    """Run `cmd` (a worker) and measure it: wall seconds, peak RSS (MiB), the JSON it wrote to `result_file`.
    `env` defaults to :func:`worker_env`."""
    result_file.unlink(missing_ok=True)
    env = worker_env() if env is None else env
    busy_before = cpu_busy_seconds()
    with open(log_file, "wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        timed_out = False
        status, usage = 0, None
        deadline = started + timeout
        polled: float | None = None
        next_poll = started
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.perf_counter() >= next_poll:
                hwm = _vm_hwm_mib(proc.pid)
                if hwm is not None:
                    polled = max(polled or 0.0, hwm)
                next_poll = time.perf_counter() + 0.1
            if time.perf_counter() > deadline:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the worker and anything it started
                _pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.perf_counter() - started
    busy_after = cpu_busy_seconds()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped here with wait4; tell Popen so it does not wait again
    ru_maxrss = (usage.ru_maxrss / 1024.0) if usage is not None else None  # Linux: KiB
    cpu = (usage.ru_utime + usage.ru_stime) if usage is not None else None
    others = None
    if busy_before is not None and busy_after is not None and cpu is not None and wall > 0:
        others = max(0.0, (busy_after - busy_before - cpu) / (wall * (os.cpu_count() or 1)))
    result: dict[str, Any] = {}
    if result_file.exists():
        try:
            result = json.loads(result_file.read_text())
        except json.JSONDecodeError:
            result = {"error": "unreadable result file"}
    reported = result.get("peak_rss_mib") if isinstance(result.get("peak_rss_mib"), int | float) else None
    candidates = [v for v in (reported, polled) if v is not None]
    rss_mib = max(candidates) if candidates else (ru_maxrss if ru_maxrss is not None else float("nan"))
    tail = ""
    if code != 0 or timed_out or "error" in result:
        text = log_file.read_text(errors="replace") if log_file.exists() else ""
        tail = "\n".join(text.strip().splitlines()[-25:])
    return Measurement(name, wall, rss_mib, code, result, timed_out, tail, cpu, others, ru_maxrss)


def write_result(path: str | Path, payload: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, default=str))


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (nproc, memory, CPU model, versions)."""
    import duckdb

    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "duckdb": duckdb.__version__,
    }
    for mod in ("pandas", "pyarrow", "numpy", "psycopg", "sqlalchemy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # not installed
            info[mod] = None
    info["airduck_source"] = source_digest()
    try:
        with open("/proc/meminfo") as fh:
            kib = int(next(line for line in fh if line.startswith("MemTotal")).split()[1])
        info["mem_total_gib"] = round(kib / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next(line for line in fh if line.startswith("model name")).split(":", 1)[1].strip()
    except (OSError, StopIteration):
        pass
    return info


def source_digest() -> dict[str, str | None]:
    """Which code was measured: the git commit and a digest of src/airduck/**/*.py (the tree may be uncommitted)."""
    import hashlib

    root = BENCH_DIR.parent
    digest = hashlib.sha256()
    for path in sorted((root / "src" / "airduck").rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head, dirty = None, ""
    return {"git_head": head, "src_uncommitted_changes": "yes" if dirty else "no",
            "src_sha256": digest.hexdigest()[:16]}


def fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def fmt_rate(rows: int, seconds: float | None) -> str:
    if not seconds:
        return "-"
    rate = rows / seconds
    return f"{rate / 1e6:.2f} M" if rate >= 1e6 else f"{rate / 1e3:.0f} k"


def fmt_share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def worker_command(script: Path, *args: str) -> list[str]:
    return [sys.executable, str(script), *args]


def failure_lines(summary: dict[str, Any], names: tuple[str, ...] | list[str]) -> list[str]:
    """Report lines for every failed contender run (exit code, timeout, error, log tail)."""
    out: list[str] = []
    for name in names:
        for f in (summary.get(name) or {}).get("failures", []):
            wall = f", {f['wall_seconds']} s" if f.get("wall_seconds") is not None else ""
            out += ["", f"!!! {name} failed (exit {f['exit_code']}, timed out: {f['timed_out']}{wall}): "
                    f"{f['result'].get('error', '')}", f.get("log_tail", "")]
    return out

