"""`python -m bench --quick` runs end to end and reports every scenario. It checks that the
suite works and writes its files, not how fast anything is (CI machines are shared)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCENARIOS = [
    "scan_new", "scan_sticky", "bot_preview", "head",
    "pool_size_fill", "pool_size_round_robin", "pool_size_weighted", "pool_size_least_filled",
    "workers", "durability", "lua_cost", "memory_visitor", "memory_group", "startup",
    "scan_channels", "memory_stats", "scrape", "consoles",
]


def _numbers(value: object) -> list[float]:
    """Every number in a JSON value; null (a NaN when written) counts as a non-finite one."""
    if value is None:
        return [math.nan]
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return []


@pytest.mark.slow
@pytest.mark.timeout(420)  # its own subprocess timeout (240 s) should speak first
def test_quick_benchmark_runs_and_reports_every_scenario(tmp_path: Path) -> None:
    md, js = tmp_path / "R.md", tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(md), "--json", str(js)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    text = md.read_text()
    doc = json.loads(js.read_text())
    for name in SCENARIOS:
        rows = [line for line in text.splitlines() if line.startswith(f"| {name} |")]
        assert rows, f"{name} has no row in RESULTS.md"
        assert any(ch.isdigit() for row in rows for ch in row.split("|", 3)[-1]), rows
        figures = doc["scenarios"].get(name)
        numbers = _numbers(figures)
        assert numbers and all(math.isfinite(x) for x in numbers), (name, figures)

    # every scenario has a target line, and every target with a limit says met or missed
    assert set(SCENARIOS) <= {t["scenario"] for t in doc["targets"]}
    for t in doc["targets"]:
        assert (t["met"] is None) == (t["limit"] is None), t
    table = text.split("## Targets", 1)[1].split("\n## ", 1)[0]
    assert table.count("| met |") + table.count("| **missed** |") == sum(
        t["limit"] is not None for t in doc["targets"])
    assert "Where the time goes" in text  # bench/NOTES.md is appended
    # the CPU each process spent per request, for the scan path, the workers, channels and
    # consoles (the consoles' own process too)
    for name in ("scan_new", "workers", "scan_channels", "consoles"):
        cpu = doc["scenarios"][name]["subject_cpu_us"]
        assert {"server", "redis", "load generator"} <= set(cpu) and all(
            v > 0 for v in cpu.values()), (name, cpu)
    assert "consoles" in doc["scenarios"]["consoles"]["subject_cpu_us"]
    assert text.count("CPU per request (user + system") == 4
    # the consoles really polled, every poll answered with the pool's figures
    assert doc["scenarios"]["consoles"]["polls"] > 0
    assert doc["scenarios"]["consoles"]["bad_polls"] == 0
    # statistics by kind, and a scrape that held every pool
    assert set(doc["scenarios"]["memory_stats"]["by_kind"]) == {
        "totals", "hour bucket", "day's visitors", "channels' visitors", "rate",
        "channel registry"}
    assert all(p["complete"] == 1 for p in doc["scenarios"]["scrape"]["pools"].values())


def test_inprocess_benchmark_runs() -> None:
    """`python -m bench.inprocess` drives the real endpoint and client without sockets."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.inprocess", "--requests", "2000", "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(None, 1) for line in proc.stdout.splitlines())
    assert set(lines) == {"ceiling", "scan"} and all("us per request" in v for v in lines.values())


def test_batch_probe_runs() -> None:
    """`python -m bench.batch_probe` (the figure NOTES.md gives for coalesced scans) runs, and
    each of its script calls allocated what it was asked to."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.batch_probe", "--scans", "2000", "--rounds", "1",
         "--batch", "4"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    labels = [line.split("  ")[0] for line in proc.stdout.splitlines()]
    assert labels == ["scan.lua", "batch of 4"], proc.stdout
    assert all("us of Redis per scan" in line for line in proc.stdout.splitlines())


@pytest.mark.parametrize(("mode", "cuts"), [([], 5), (["--script"], 7)])
def test_script_cost_runs(mode: list[str], cuts: int) -> None:
    """`python -m bench.script_cost` (NOTES.md's figures per scan.lua call), for the scan as a
    function and as a script, runs, finds every phase boundary it cuts at in the loaded
    source (a library has no cuts among its definitions, made once), and prints a cost for
    each case."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.script_cost", "--calls", "400", "--rounds", "1", *mode],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == ("the scan as a script (EVALSHA)" if mode
                        else "the scan as a function (FCALL)"), proc.stdout
    figures = {line[:58].strip(): float(line[58:].split()[0]) for line in lines[1:]}
    phases = [name for name in figures if name.startswith("new visitor, up to: ")]
    assert len(phases) == cuts, proc.stdout
    assert {"returning visitor", "new visitor", "batch of 1", "batch of 13", "batch of 26",
            "each visitor more in a batch"} <= set(figures), proc.stdout
    assert all(figures[name] > 0 for name in ("new visitor", "batch of 13", "batch of 26"))
