"""bench/RESULTS.md and bench/results.json from the sections the scenarios return."""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import HERE, Pair

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "<": operator.lt, "==": operator.eq,
}


@dataclass
class Target:
    scenario: str
    label: str
    value: float
    op: str  # one of _OPS
    limit: float | None  # None: reported, no target
    unit: str = ""

    @property
    def met(self) -> bool | None:
        if self.limit is None:
            return None
        return not math.isnan(self.value) and _OPS[self.op](self.value, self.limit)

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**missed**", None: "no target"}[self.met]

    @property
    def wanted(self) -> str:
        return "(reported)" if self.limit is None else f"{self.op} {self.limit:g}{self.unit}"


@dataclass
class Section:
    """One scenario function's outcome: a table, its targets, how it was measured."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    targets: list[Target]
    commands: list[str]
    notes: list[str] = field(default_factory=list)
    # scenario name -> its numbers (results.json)
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)
    # more tables after the notes: (caption, columns, rows)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    # filled in by the runner: the scenario function's name and docstring, its duration
    key: str = ""
    about: str = ""
    elapsed_s: float = 0.0


def fmt(x: float) -> str:
    if isinstance(x, int):
        return f"{x:,}"
    if math.isnan(x):
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}"


def pair_table(pairs: list[Pair], labels: tuple[str, str], unit: str) -> tuple[list[str],
                                                                                 list[list[str]]]:
    """The columns and rows every throughput comparison shares."""
    columns = ["scenario", "what", f"{labels[0]} {unit}", f"{labels[1]} {unit}", "ratio",
               f"{labels[0]} p99 ms", f"{labels[1]} p99 ms", "bad"]
    rows = [[p.scenario, p.what, fmt(p.base_rate), fmt(p.subject_rate), f"{p.ratio:.2f}",
             f"{p.base_p99:.2f}", f"{p.subject_p99:.2f}", str(p.bad)] for p in pairs]
    return columns, rows


def cpu_table(pairs: list[Pair], labels: tuple[str, str], cores: int,
              workers: tuple[int, int] = (1, 1)) -> tuple[str, list[str], list[list[str]]]:
    """Where the machine's time goes: CPU microseconds per request of each process, medians of
    the runs above, and the rates that alone would allow."""
    roles = ["server", "redis", "load generator"]
    roles += sorted({r for p in pairs for side in ("base", "subject") for r in p.cpu(side)}
                    - set(roles))  # other processes a scenario watches (consoles, ...)
    columns = ["scenario", "side", *(f"{r} us" for r in roles), "total us",
               f"{cores} cores allow req/s", "a core per worker allows req/s", "measured req/s"]
    rows = []
    for p in pairs:
        for side, label, rate, n in (("base", labels[0], p.base_rate, workers[0]),
                                     ("subject", labels[1], p.subject_rate, workers[1])):
            cpu = p.cpu(side)
            if not cpu:
                continue
            total = sum(cpu.values())
            rows.append([p.scenario, label, *(f"{cpu[r]:.1f}" if r in cpu else "-" for r in roles),
                         f"{total:.1f}", fmt(cores * 1e6 / total),
                         fmt(n * 1e6 / cpu["server"]) if cpu.get("server") else "-", fmt(rate)])
    caption = ("CPU per request (user + system, from /proc and the load generator's rusage, "
               "medians): the server process(es), Redis, the load generator and any other "
               f"process of the scenario share the {cores} cores, so the total bounds the "
               "rate; a worker can use one core at most, so its own share bounds it too.")
    return caption, columns, rows


def _table(columns: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(r) + " |" for r in rows)]


def markdown(sections: list[Section], header: list[str]) -> str:
    targets = [t for s in sections for t in s.targets]
    lines = ["# Benchmark results", "", *header, "", "## Targets", ""]
    lines += _table(["scenario", "figure", "value", "target", "verdict"],
                    [[t.scenario, t.label, f"{fmt(t.value)}{t.unit}", t.wanted, t.verdict]
                     for t in targets])
    for n, s in enumerate(sections, start=1):
        lines += ["", f"## {n}. {s.title}", "", s.about, "", *_table(s.columns, s.rows), ""]
        lines += [f"- took {s.elapsed_s:.0f} s"]
        lines += [f"- {t.scenario}: {t.label} {fmt(t.value)}{t.unit}, target {t.wanted}: "
                  f"{t.verdict}" for t in s.targets]
        lines += [f"- {note}" for note in s.notes]
        for caption, columns, rows in s.tables:
            lines += ["", caption, "", *_table(columns, rows)]
        lines += ["", "Commands:", "", "```", *s.commands, "```"]
    notes = HERE / "NOTES.md"
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def _finite(x: Any) -> Any:
    """JSON has no NaN: None instead."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def write(sections: list[Section], header: list[str], meta: dict[str, Any], md: Path,
          js: Path) -> None:
    md.write_text(markdown(sections, header))
    doc = {
        **meta,
        "targets": [{**asdict(t), "met": t.met} for s in sections for t in s.targets],
        "scenarios": {name: numbers for s in sections for name, numbers in s.scenarios.items()},
        "sections": {s.key: {k: v for k, v in asdict(s).items() if k != "scenarios"}
                     for s in sections},
    }
    js.write_text(json.dumps(_finite(doc), indent=2) + "\n")
