"""`python -m bench.batch_probe`: what coalescing scans into one script call can save Redis.

Not a scenario of the suite and not livecode's code: the measurement that made the case for
gathering a pool's new scans into scan.lua's batch form, before it was built (bench/NOTES.md,
"Gathered scans"). It compares Redis's own time per new-visitor scan, from INFO commandstats,
for
- `scan.lua`'s single form, one EVALSHA per scan;
- a probe script that allocates N fresh visitors of one pool in one EVALSHA: the pool, the
  head of `av` and the group read once, then per visitor the same writes as a scan (count,
  sticky record, stats).
The probe does the common path only (fill, no group fills up, nothing expires), so it is
the most a batched scan.lua could save, not what it would save.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import redis

from app.allocator import scripts
from app.allocator.protocol import Call
from app.store import keys
from bench.harness import Lab, median, redis_benchmark_command
from bench.seed import BENCH_POOL, seed_bench_pool

PROBE = """
local P = ARGV[1]
local pool = redis.call('HMGET', KEYS[1], 'status', 'name', 'strategy', 'mode', 'vf', 'vu',
                        'ttl', 'exn', 'rr', 'fwn', 'fwt')
local gid = redis.call('ZRANGE', P .. 'av', '0', '0')[1]
local g = redis.call('HMGET', P .. 'g:' .. gid, 'url', 'c', 'cap', 'exp', 'mode', 'en', 'fi')
local out = {}
for i = 2, #KEYS do
  redis.call('HINCRBY', P .. 'g:' .. gid, 'c', '1')
  redis.call('SET', KEYS[i], g[7], 'EX', pool[7] or '604800')
  redis.call('HINCRBY', P .. 'st', 'new', '1')
  out[#out + 1] = {'new', gid, g[1], g[5] or pool[4] or 'redirect', pool[2]}
end
return out
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.batch_probe", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scans", type=int, default=300_000, help="scans per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, nargs="+", default=[4, 8])
    args = ap.parse_args(argv)
    p = keys.prefix(BENCH_POOL)
    per_scan: dict[str, list[float]] = {"scan.lua": [], **{f"batch of {n}": [] for n in args.batch}}
    with tempfile.TemporaryDirectory(prefix="livecode-probe-") as tmp, Lab(Path(tmp)) as lab:
        server = lab.redis("aof", appendonly=True)
        seeder = lab.seeder(server)
        client = redis.Redis(port=server.port)
        shebang = "#!lua\n" if seeder.store.shebang else ""
        scan_sha = client.script_load(scripts.source("scan", shebang=bool(shebang)))
        probe_sha = client.script_load(shebang + PROBE)
        for _ in range(args.rounds):
            for label in per_scan:
                n = 1 if label == "scan.lua" else int(label.rsplit(" ", 1)[1])
                if n == 1:
                    cmd = ["EVALSHA", scan_sha, "2", p + "pool", p + "v:__rand_int__a", p,
                           "benchvisit__rand_int__", "", Call.NEW.value]
                else:
                    cmd = ["EVALSHA", probe_sha, str(n + 1), p + "pool",
                           *(f"{p}v:__rand_int__{i}" for i in range(n)), p]
                seed_bench_pool(seeder)
                client.config_resetstat()
                subprocess.run(redis_benchmark_command(server.port or 0, args.scans // n, cmd),
                               capture_output=True, check=True, timeout=600)
                stats = client.info("commandstats")["cmdstat_evalsha"]
                per_scan[label].append(float(stats["usec_per_call"]) / n)
                # minus the seeded sticky visitor; redis-benchmark may send a few calls more
                # than asked (-P 16), never fewer
                made = int(client.hget(p + "st", "new") or 0) - 1
                if made < args.scans // n * n:
                    raise SystemExit(f"{label}: {made} scans allocated, not {args.scans // n * n}")
        client.close()
    base = median(per_scan["scan.lua"])
    for label, xs in per_scan.items():
        print(f"{label:12} {median(xs):6.2f} us of Redis per scan ({median(xs) / base:.2f}x); "
              + ", ".join(f"{x:.2f}" for x in xs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
