"""`python -m bench`: every figure of the scan path against a ceiling measured in the same run.

These 2-core machines are shared and noisy, so each figure is a ratio to a ceiling measured in
the same run, rounds interleaved (the order alternating), medians reported. Load comes from wrk
over 127.0.0.1 (installed with apt-get when missing) and, for Redis alone, redis-benchmark.
The scenarios are in bench/scenarios.py, one function each; the shared process, load and
seeding helpers in bench/harness.py and bench/seed.py.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
import time
from pathlib import Path

from bench import report
from bench.harness import HERE, Lab, ensure_wrk, versions
from bench.scenarios import ALL, Config


def main(argv: list[str] | None = None) -> int:
    names = [fn.__name__ for fn in ALL]
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="CI smoke run: 1 round of 2 s, populations of 10,000 (a few minutes)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--population", type=int, default=100_000,
                    help="groups of the big pool; groups and visitors of the memory scenario")
    ap.add_argument("--lua-calls", type=int, default=500_000,
                    help="redis-benchmark calls per run")
    ap.add_argument("--stats-pools", type=int, default=1_000,
                    help="pools of memory_stats, each with one hour of traffic")
    ap.add_argument("--scrape-pools", type=int, default=10_000,
                    help="pools of the biggest /metrics scrape (and a tenth of them)")
    ap.add_argument("--consoles", type=int, default=20, help="consoles open in `consoles`")
    ap.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(names)}")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--json", type=Path, default=None,
                    help="bench/results.json with the default --out, else --out's .json sibling")
    args = ap.parse_args(argv)
    if args.json is None:
        args.json = (HERE / "results.json" if args.out == HERE / "RESULTS.md"
                     else args.out.with_suffix(".json"))
    if args.quick:
        args.rounds, args.duration, args.population, args.lua_calls = 1, 2.0, 10_000, 50_000
        args.stats_pools, args.scrape_pools = 100, 1_000
    chosen = [fn for fn in ALL if not args.only or fn.__name__ in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - set(names)
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    cfg = Config(args.quick, args.rounds, args.duration, args.connections, args.population,
                 args.lua_calls, args.stats_pools, args.scrape_pools, args.consoles)
    ensure_wrk()

    started = time.perf_counter()
    sections: list[report.Section] = []
    with tempfile.TemporaryDirectory(prefix="livecode-bench-") as tmp, Lab(Path(tmp)) as lab:
        for fn in chosen:
            print(f"== {fn.__name__}", flush=True)
            t = time.perf_counter()
            section = fn(lab, cfg)
            section.key, section.about = fn.__name__, inspect.getdoc(fn) or ""
            section.elapsed_s = time.perf_counter() - t
            sections.append(section)
    elapsed = time.perf_counter() - started

    info = versions()
    command = "python -m bench" + (" --quick" if args.quick else "")
    header = [
        f"Command: `{command}`: {cfg.rounds} round(s), {cfg.duration:g} s per wrk run, "
        f"{cfg.connections} connections, {cfg.population:,} groups in the big pool and in the "
        f"memory scenario, {cfg.lua_calls:,} redis-benchmark calls per run, "
        f"{cfg.stats_pools:,} pools in memory_stats, {cfg.scrape_pools:,} in the biggest scrape, "
        f"{cfg.consoles} consoles. Took {elapsed:.0f} s.",
        "",
        "Machine and versions: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        "Every throughput figure is paired with its ceiling, measured in the same run on the same "
        "machine, rounds interleaved with the order alternating; medians. Everything runs on "
        "127.0.0.1; the machine is shared, so read the ratios, not the absolute numbers.",
    ]
    if args.quick:
        header += ["", "**Quick mode** (`--quick`): 1 round of 2 s and populations of 10,000 "
                   "instead of 100,000 (100 pools instead of 1,000 in memory_stats, 1,000 "
                   "instead of 10,000 in scrape). A smoke run that checks the suite works; its "
                   "figures are indicative only."]
    meta = {"command": command, "args": {k: str(v) for k, v in vars(args).items()},
            "versions": info, "elapsed_s": elapsed}
    report.write(sections, header, meta, args.out, args.json)
    print(f"wrote {args.out} and {args.json} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
