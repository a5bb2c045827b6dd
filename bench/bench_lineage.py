"""Overhead of OpenLineage emission on the demo run: the same fresh demo run without lineage and with it (the
events file + a Marquez-like HTTP receiver on a loopback port), in interleaved rounds, in this process.

For each round and each variant: a fresh demo project (`airduck init --demo`, same seed), one `Lakehouse.run()`
timed wall-clock; with lineage, also the time spent inside the OpenLineage sink (`handle`, which includes reading
the lake's table facts for the facets and waiting for the HTTP queue at the run's end). Prints the median of each,
the ratio with/without, the sink's share, and `uptime` before and after.

    python3 -m uv run --frozen python bench/bench_lineage.py [--repeat 2] [--days 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def make_demo(root: Path, days: int, lineage: dict | None) -> None:
    if root.exists():
        shutil.rmtree(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_", "DEMO_", "OPENLINEAGE_"))}
    subprocess.run([sys.executable, "-m", "airduck", "init", "--demo", str(root), "--days", str(days)], check=True,
                   capture_output=True, env=env)
    if lineage is not None:
        config = yaml.safe_load((root / "airduck.yml").read_text())
        config["lineage"] = lineage
        (root / "airduck.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=BENCH_DIR / "out" / "lineage")
    args = ap.parse_args()
    for var in [v for v in os.environ if v.startswith("OPENLINEAGE_")]:
        del os.environ[var]

    from tests.lineage.support import receiver

    from airduck.lakehouse import Lakehouse
    from airduck.lineage.openlineage import OpenLineageSink

    spent = [0.0]
    by_type: dict[str, float] = {}
    handle = OpenLineageSink.handle

    def timed(self, event):
        t0 = time.perf_counter()
        try:
            return handle(self, event)
        finally:
            took = time.perf_counter() - t0
            spent[0] += took
            by_type[event.type] = by_type.get(event.type, 0.0) + took

    OpenLineageSink.handle = timed
    off: list[float] = []
    on: list[float] = []
    sink: list[float] = []
    events: list[int] = []
    print("before:", uptime())
    with receiver() as r:
        for i in range(args.repeat):
            for variant in ("off", "on") if i % 2 == 0 else ("on", "off"):
                root = args.dir / f"{variant}{i}"
                make_demo(root, args.days, {"http": {"url": r.url}} if variant == "on" else None)
                spent[0] = 0.0
                by_type.clear()
                with Lakehouse.open(root) as lh:
                    t0 = time.perf_counter()
                    lh.run()
                    took = time.perf_counter() - t0
                (on if variant == "on" else off).append(took)
                if variant == "on":
                    sink.append(spent[0])
                    events.append(len((root / ".airduck/lineage/events.jsonl").read_text().splitlines()))
                print(f"round {i} {variant}: {took:.2f}s" + (f" (sink {spent[0]:.2f}s: " + ", ".join(
                    f"{k} {v:.2f}" for k, v in sorted(by_type.items(), key=lambda kv: -kv[1]) if v >= 0.01) + ")"
                    if variant == "on" else ""), flush=True)
        received = len(r.bodies)
    print("after:", uptime())
    m_off, m_on, m_sink = statistics.median(off), statistics.median(on), statistics.median(sink)
    print(f"without lineage: {', '.join(f'{x:.2f}' for x in off)} (median {m_off:.2f}s)")
    print(f"with lineage:    {', '.join(f'{x:.2f}' for x in on)} (median {m_on:.2f}s)")
    print(f"inside the sink: {', '.join(f'{x:.2f}' for x in sink)} (median {m_sink:.2f}s, "
          f"{100 * m_sink / m_on:.1f}% of the run)")
    print(f"ratio with/without (medians): {m_on / m_off:.3f}; events per run: {events}; received: {received}")


if __name__ == "__main__":
    main()
