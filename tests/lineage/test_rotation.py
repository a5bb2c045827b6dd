"""Rotation of the kept OpenLineage events (events.jsonl -> .1 .. .N): at the configured size, safe with two
processes writing at once, never dropping an event a backend has not got, and `airduck lineage send` re-sending
from the rotated files too (each undelivered event exactly once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from airduck.lakehouse import Lakehouse
from airduck.lineage.config import HttpTransport, LineageConfig, Settings, resolve
from airduck.lineage.emit import Emitter, send_kept
from airduck.lineage.eventlog import EventLog, event_key
from tests.integration.test_pipeline_runs import orders_config, write_orders
from tests.lineage.support import receiver
from tests.lineage.test_delivery import send, with_lineage

MIB = 1024 * 1024


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("events.jsonl"))


def kept_lines(file: Path) -> list[str]:
    """Every line of the file and its rotated files, oldest first (read straight from the files)."""
    out = []
    for path in EventLog(file).files():
        out += [ln for ln in path.read_text().splitlines() if ln.strip()]
    return out


def test_config_declares_the_two_settings_and_resolves_them_to_bytes(tmp_path):
    s = resolve(LineageConfig.model_validate({"file_max_mb": 0.5, "file_keep": 3}), "shop", tmp_path, env={})
    assert (s.file_max_bytes, s.file_keep) == (MIB // 2, 3)
    default = resolve(LineageConfig(), "shop", tmp_path, env={})
    assert (default.file_max_bytes, default.file_keep) == (64 * MIB, 5)
    for bad in ({"file_max_mb": -1}, {"file_max_mb": float("inf")}, {"file_max_mb": "inf"}, {"file_max_mb": 2e6},
                {"file_keep": 0}, {"file_keep": "many"}):
        with pytest.raises(ValidationError):
            LineageConfig.model_validate(bad)


def test_rotates_when_the_file_reaches_the_threshold_and_keeps_file_keep(tmp_path):
    # 1100 bytes: ten 101-byte lines stay in events.jsonl, the eleventh rotates it
    s = resolve(LineageConfig.model_validate({"file_max_mb": 1100 / MIB, "file_keep": 2}), "shop", tmp_path, env={})
    em = Emitter(s)
    folder = s.file.parent
    line = lambda i: json.dumps({"i": i, "pad": "x" * (100 - len(json.dumps({"i": i, "pad": ""})))})  # noqa: E731
    assert all(len(line(i)) == 100 for i in range(100))
    for i in range(10):
        em.emit(line(i))
    assert names(folder) == ["events.jsonl", "events.jsonl.lock"] and s.file.stat().st_size == 1010
    em.emit(line(10))
    assert names(folder) == ["events.jsonl.1", "events.jsonl.lock"]
    assert [json.loads(x)["i"] for x in (folder / "events.jsonl.1").read_text().splitlines()] == list(range(11))
    for i in range(11, 50):  # three more rotations: .1 (newest) .. .2; the oldest beyond file_keep is removed
        em.emit(line(i))
    assert names(folder) == ["events.jsonl", "events.jsonl.1", "events.jsonl.2", "events.jsonl.lock"]
    assert [json.loads(x)["i"] for x in kept_lines(s.file)] == list(range(22, 50))
    assert em.warnings == []  # no backend: the file is the destination, trimmed like any rotated log


def test_undelivered_events_are_kept_past_file_keep_with_one_warning_and_send_trims_them(tmp_path, caplog):
    with receiver() as r:
        r.status = 500
        s = Settings(True, "shop", tmp_path / "lineage" / "events.jsonl",
                     [HttpTransport(url=r.url, timeout=30)], file_max_bytes=300, file_keep=1)
        em = Emitter(s)
        lines = [json.dumps({"i": i, "pad": "y" * 140}) for i in range(20)]
        for ln in lines:
            em.emit(ln)
        em.close()
        assert r.events == []
        # every event is kept although file_keep is 1: none was delivered
        assert kept_lines(s.file) == lines
        assert len(EventLog(s.file).rotated()) > 1
        kept = [w for w in em.warnings if "lineage send" in w and "rotation" in w]
        assert len(kept) == 1, em.warnings  # once per process, not at every rotation
        assert caplog.text.count("would be dropped by the rotation") == 1
        r.status = 201
        out = send_kept(s)
        assert (out["total"], out["sent"], out["pending"]) == (20, 20, 0)
        assert [json.dumps(e) for e in r.events] == lines  # oldest first, each once
        # all delivered: send trimmed the rotated files to file_keep, and forgot the notes of removed files
        log = EventLog(s.file)
        assert [i for i, _ in log.rotated()] == [1]
        on_disk = kept_lines(s.file)
        assert on_disk == lines[-len(on_disk):]
        assert {k for k, _ in log.delivered.read()} == {event_key(ln) for ln in on_disk}
        again = send_kept(s)
        assert again["sent"] == 0 and len(r.events) == 20


WRITER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from airduck.lineage.eventlog import EventLog, event_key

    file, me, n, target = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    (file.parent / f"ready-{me}").touch()
    deadline = time.monotonic() + 30
    while len(list(file.parent.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    log = EventLog(file, max_bytes=1500, keep=2, targets=[target])
    for i in range(n):
        line = json.dumps({"writer": me, "i": i, "pad": "z" * (i % 37)})
        log.append(line)
        if i % 25:  # delivered (noted as the emitter's sending thread does); every 25th stays undelivered
            log.delivered.add(event_key(line), target)
""")


def test_two_processes_writing_across_rotations_keep_every_event_exactly_once(tmp_path):
    folder = tmp_path / "lineage"
    folder.mkdir()
    file, target, n = folder / "events.jsonl", "http://backend/api/v1/lineage", 600
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(file), me, str(n), target], env=env,
                              stderr=subprocess.PIPE, text=True) for me in ("a", "b")]
    for p in procs:
        assert p.wait(timeout=180) == 0, p.stderr.read()
    log = EventLog(file, keep=2, targets=[target])
    rotated = [i for i, _ in log.rotated()]
    assert rotated == list(range(1, len(rotated) + 1)), "numbered without gaps"
    lines = kept_lines(file)
    events = [json.loads(ln) for ln in lines]  # every line whole: no torn or interleaved writes
    seen = Counter((e["writer"], e["i"]) for e in events)
    assert max(seen.values()) == 1, "an event was written twice"
    # every event nobody got is still there; only delivered events were dropped, with their whole files
    undelivered = {(w, i) for w in "ab" for i in range(0, n, 25)}
    assert undelivered <= set(seen)
    assert len(seen) < 2 * n, "files of delivered events beyond file_keep were removed"
    for w in "ab":  # each writer's events in the order it wrote them
        order = [e["i"] for e in events if e["writer"] == w]
        assert order == sorted(order)
    # the delivery notes are exactly those of the kept events that were delivered: none lost, none stale
    notes = log.delivered.read()
    assert {k for k, t in notes} == {event_key(ln) for ln, e in zip(lines, events, strict=True) if e["i"] % 25}
    assert {t for _, t in notes} == {target}
    # files beyond file_keep are kept only for an undelivered event
    for i, path in log.rotated():
        if i > 2:
            assert any(json.loads(ln)["i"] % 25 == 0 for ln in path.read_text().splitlines()), path.name


def test_lineage_send_after_rotation_delivers_every_undelivered_event_once(local_projects):
    with receiver() as r:
        lineage = {"file_max_mb": 2500 / MIB, "file_keep": 2, "http": {"url": r.url, "timeout": 30}}
        root = local_projects.make({**orders_config(), "lineage": lineage})
        write_orders(root, "day1.csv", 1, 30)
        with Lakehouse.open(root) as lh:
            assert lh.run().ok
        first = list(r.bodies)
        assert len(first) == 6
        r.status = 500  # the second run's events reach no backend
        write_orders(root, "day2.csv", 100, 30)
        with Lakehouse.open(root) as lh:
            assert lh.run().ok
        assert len(r.bodies) == 6
        file = root / ".airduck" / "lineage" / "events.jsonl"
        log = EventLog(file)
        assert len(log.rotated()) >= 2, names(file.parent)
        on_disk = kept_lines(file)
        second = [ln for ln in on_disk if ln.encode() not in first]
        assert len(second) == 6 and on_disk[-6:] == second  # all of the second run is kept
        r.status = 201
        out = send(root)
        assert out.exit_code == 0, out.output
        assert r.bodies[6:] == [ln.encode() for ln in second]  # exactly the undelivered ones, oldest first
        assert len(set(r.bodies)) == len(r.bodies) == 12
        again = send(root)
        assert again.exit_code == 0 and len(r.bodies) == 12
        # the receiver moves: the new target gets every kept event once (from the rotated files too)
        with receiver() as r2:
            with_lineage(root, {**lineage, "http": {"url": r2.url, "timeout": 30}})
            kept = kept_lines(file)
            assert send(root).exit_code == 0
            assert r2.bodies == [ln.encode() for ln in kept]


def test_a_write_cut_short_loses_no_later_event_and_holds_up_no_delivery(tmp_path, caplog):
    """A full disk or a kill mid-write leaves half a line without its newline: the next event must not be glued
    to it (it would be lost), and `lineage send` must skip it rather than post it (a backend refuses it, and the
    send would stop there for good, every later event pending and every rotated file kept)."""
    with receiver() as r:
        s = Settings(True, "shop", tmp_path / "lineage" / "events.jsonl", [HttpTransport(url=r.url, timeout=30)],
                     file_max_bytes=200, file_keep=1)
        log = EventLog(s.file, max_bytes=s.file_max_bytes, keep=s.file_keep, targets=s.targets)
        lines = [json.dumps({"i": i, "pad": "w" * 60}) for i in range(12)]
        for ln in lines[:5]:
            log.append(ln)
        with s.file.open("ab") as f:  # the write of the next event cut short: no closing brace, no newline
            f.write(lines[5][:30].encode() + "é".encode()[:1])
        for ln in lines[6:]:
            log.append(ln)
        with log.snapshot() as snap:
            whole = list(snap.lines())
            assert snap.torn == 1
        assert whole == lines[:5] + lines[6:]  # every later event whole, none glued to the torn one
        out = send_kept(s)
        assert (out["sent"], out["pending"], out["torn"]) == (11, 0, 1), out
        assert [json.dumps(e) for e in r.events] == lines[:5] + lines[6:]
        assert "skipped 1 torn line" in caplog.text
        # all delivered: the rotated files, the torn line's too, were trimmed to file_keep
        assert [i for i, _ in EventLog(s.file).rotated()] == [1]


def test_lineage_send_leaves_the_events_a_live_run_still_delivers_to_it(tmp_path):
    """`lineage send` (a cron job, another shell) while a run delivers its events live: the events still queued in
    the run are the run's to deliver; send taking them too would deliver each twice."""
    import threading

    with receiver() as r:
        r.delay = 5.0  # a slow backend: the run's queue drains one event at a time
        s = Settings(True, "shop", tmp_path / "lineage" / "events.jsonl", [HttpTransport(url=r.url, timeout=30)],
                     file_max_bytes=400, file_keep=1)
        em = Emitter(s, drain_seconds=300)
        lines = [json.dumps({"i": i, "pad": "v" * 80}) for i in range(12)]
        for ln in lines:
            em.emit(ln)
        # a send that cannot wait for the run gives up on every event the run has not delivered yet
        busy = send_kept(s, deadline_seconds=0.5)
        assert busy["sent"] == 0 and busy["pending"] > 0, busy
        assert "a run is delivering its OpenLineage events right now" in busy["errors"][0]
        r.delay = 0.1
        # a send that can wait: it waits for the run's end, then finds nothing left to send
        out: list[dict] = []
        sender = threading.Thread(target=lambda: out.append(send_kept(s)))
        sender.start()
        em.close()
        sender.join(300)
        assert out and (out[0]["sent"], out[0]["pending"]) == (0, 0), out
        assert Counter(r.bodies) == Counter(ln.encode() for ln in lines)  # each event delivered exactly once
        # a run (or a server) whose queue is empty holds nothing back: send does not wait for its end
        r.delay = 0.0
        idle = Emitter(s, drain_seconds=300)
        idle.emit(json.dumps({"i": "idle"}))
        deadline = time.monotonic() + 120
        while len(r.bodies) < len(lines) + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(r.bodies) == len(lines) + 1
        t0 = time.monotonic()
        quick = send_kept(s, deadline_seconds=120)
        assert time.monotonic() - t0 < 45, "send waited for an emitter with nothing queued"
        assert (quick["sent"], quick["pending"], quick["errors"]) == (0, 0, []), quick
        idle.close()
