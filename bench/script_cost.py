"""`python -m bench.script_cost`: what one call of scan.lua costs Redis, and where it goes.

Not a scenario of the suite: the probe behind bench/NOTES.md's "The scan script after
statistics and events". On a Redis of its own without persistence (pool `bench`, 20 groups),
it pipelines calls through redis-py and reads Redis's own time per call from INFO
commandstats (`usec_per_call` of FCALL or EVALSHA, the commands the script runs included),
for the scan as a function (FCALL, what the service uses on Redis 7+) and as a script
(EVALSHA, Redis 6):
- a returning visitor's call, a new visitor's call, and batches of 1, 13 and 26 new visitors,
  from which the cost of each visitor more and the fixed cost of a call follow;
- the same new-visitor call cut short at each phase boundary (a `do return 1 end` inserted
  before a line of the loaded source), so the differences say what each phase costs. The
  cuts at the top of the source (the definitions) apply to the script only: a function
  library runs them once, when it is loaded.
Each figure is the best of `--rounds` runs, the cases interleaved.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

import redis

from app.allocator import scripts
from app.allocator.protocol import Call
from app.store import keys
from bench.harness import Lab
from bench.seed import BENCH_POOL, STICKY_VISITOR, seed_bench_pool

# (phase, the first line after it in the loaded source, whether it is at the top level)
PHASES = [
    ("generated tables and lib.lua", "local RECORDERS = {}", True),
    ("the definitions (recorders, scan.lua)", "return scan(KEYS, ARGV)", True),
    ("begin: the call's state, the pool read", "  decide()\n  return finish()", False),
    ("decide: the pick", "  return finish()\nend", False),
    ("before the writes", "  local has_room = pool.room", False),
    ("the recorders' reads", "  for i = 1, #unindexing do\n    unindex(", False),
    ("the scan's writes", "  for i = 1, #RECORDERS do RECORDERS[i].write(facts)", False),
]


def _visitor() -> str:
    return secrets.token_urlsafe(16)  # 22 characters, as the service makes them


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.script_cost", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=6000, help="single calls per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--script", action="store_true",
                    help="call the scan as a script (EVALSHA), as on Redis 6")
    args = ap.parse_args(argv)
    p = keys.prefix(BENCH_POOL)
    with tempfile.TemporaryDirectory(prefix="livecode-script-cost-") as tmp, \
            Lab(Path(tmp)) as lab:
        server = lab.redis("plain", appendonly=False)
        seeder = lab.seeder(server)
        seed_bench_pool(seeder)
        client = redis.Redis(port=server.port)
        source = scripts.source("scan", shebang=seeder.store.shebang)
        as_function = seeder.store.shebang and not args.script
        verb = "FCALL" if as_function else "EVALSHA"
        lib = scripts.library("scan")

        def load(text: str, tag: str) -> str:
            """The script or library with a cut (tag) or none (''): what to call it by."""
            if not as_function:
                return str(client.script_load(text))
            name = lib.function + tag
            client.function_load(text.replace(lib.function, name), replace=True)
            return name

        whole = lib.source if as_function else source
        ref = load(whole, "")
        cut = {}
        for i, (phase, line, top) in enumerate(PHASES):
            at = whole.rfind(line) if not (top and as_function) else -2
            if at == -2:
                continue
            if at < 0:  # scan.lua changed: the phases here must follow it
                raise SystemExit(f"script_cost: no line {line!r} in scan.lua for {phase!r}")
            cut[phase] = load(whole[:at] + "do return 1 end\n" + whole[at:], f"_cut{i}")

        def run(script: str, send: Callable[[redis.client.Pipeline, str], None],
                calls: int) -> float:
            client.config_resetstat()
            pipe = client.pipeline(transaction=False)
            for _ in range(calls):
                send(pipe, script)
                if len(pipe) >= 200:
                    pipe.execute()
            pipe.execute()
            stats = client.info("commandstats")[f"cmdstat_{verb.lower()}"]
            return float(stats["usec_per_call"])

        def single(call: Call) -> Callable[[redis.client.Pipeline, str], None]:
            def send(pipe: redis.client.Pipeline, script: str) -> None:
                v = STICKY_VISITOR if call is Call.KNOWN else _visitor()
                pipe.execute_command(verb, script, 2, p + "pool", p + "v:" + v, p, v, "",
                                     call.value)
            return send

        def batch(n: int) -> Callable[[redis.client.Pipeline, str], None]:
            def send(pipe: redis.client.Pipeline, script: str) -> None:
                vs = [_visitor() for _ in range(n)]
                rest = [x for v in vs[1:] for x in (v, "")]
                pipe.execute_command(verb, script, n + 1, p + "pool",
                                     *(p + "v:" + v for v in vs), p, vs[0], "",
                                     Call.BATCH.value, *rest)
            return send

        sha = ref
        print(f"the scan as {'a function (FCALL)' if as_function else 'a script (EVALSHA)'}")
        cases: dict[str, tuple[str, Callable[[redis.client.Pipeline, str], None], int]] = {
            "returning visitor": (sha, single(Call.KNOWN), args.calls),
            "new visitor": (sha, single(Call.NEW), args.calls),
            **{f"batch of {n}": (sha, batch(n), max(args.calls // n, 200)) for n in (1, 13, 26)},
            **{f"new visitor, up to: {phase}": (s, single(Call.NEW), args.calls)
               for phase, s in cut.items()},
        }
        best = {name: float("inf") for name in cases}
        for _ in range(args.rounds):
            for name, (script, send, calls) in cases.items():
                best[name] = min(best[name], run(script, send, calls))
        client.close()
    for name, us in best.items():
        print(f"{name:58} {us:7.1f} us per call")
    each = (best["batch of 26"] - best["batch of 13"]) / 13
    print(f"{'each visitor more in a batch':58} {each:7.1f} us")
    print(f"{'fixed per call (batch of 13 less 13 visitors)':58} "
          f"{best['batch of 13'] - 13 * each:7.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
