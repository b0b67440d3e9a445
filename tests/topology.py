"""Real local Redis topologies for fault tests: a 3x2 Redis Cluster and a Sentinel setup.

Both context managers start every process on a free loopback port (reusing `RedisProcess`),
wait until the topology is healthy before yielding, and SIGKILL every process on exit, even
when the body or the start-up fails. They are plain sync context managers, usable from async
tests too (start-up blocks the loop for a few seconds, which tests don't mind).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from app.embedded import EmbeddedRedisError, RedisProcess, find_redis_server, free_port

HOST = "127.0.0.1"
SLOTS = 16384
# diskless full sync waits 5 s by default for more replicas to come along; we have one
FAST_SYNC = ["--repl-diskless-sync-delay", "0"]


class TopologyError(RuntimeError):
    pass


@dataclass(eq=False)
class Node:
    """Handle on one redis-server (or sentinel) process."""

    process: RedisProcess
    node_id: str = ""  # cluster node id; empty outside a cluster
    paused: bool = False

    @property
    def port(self) -> int:
        assert self.process.port is not None
        return self.process.port

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def alive(self) -> bool:
        proc = self.process.proc
        return proc is not None and proc.poll() is None

    @property
    def reachable(self) -> bool:
        return self.alive and not self.paused

    def call(self, *args: Any, timeout: float = 2.0) -> Any:
        with redis.Redis(HOST, self.port, socket_timeout=timeout, socket_connect_timeout=timeout,
                         decode_responses=True) as c:
            return c.execute_command(*args)

    def client(self) -> redis.Redis:
        """One connection (so WAIT after writes on it means something), strings decoded."""
        return redis.Redis(HOST, self.port, socket_timeout=5, socket_connect_timeout=5,
                           decode_responses=True, single_connection_client=True)

    def info(self, section: str) -> dict[str, str]:
        """CLUSTER INFO for "cluster", else INFO <section> (which redis-py parses to a dict)."""
        if section != "cluster":
            return {k: str(v) for k, v in self.call("INFO", section).items()}
        pairs = (line.split(":", 1) for line in str(self.call("CLUSTER", "INFO")).splitlines())
        return {kv[0]: kv[1].strip() for kv in pairs if len(kv) == 2}

    def kill(self) -> None:
        """SIGKILL (also works on a paused process): no AOF flush, no goodbye to peers."""
        self.process.kill()
        self.paused = False

    def pause(self) -> None:
        self.process.pause()
        self.paused = True

    def resume(self) -> None:
        self.process.resume()
        self.paused = False

    def __repr__(self) -> str:
        return f"Node({self.addr}, id={self.node_id[:8]}, alive={self.alive})"


def _wait_for(check: Callable[[], str | None], timeout: float, what: str) -> None:
    """Poll `check` (None = done, else the reason it isn't) until done or `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reason = check()
        except (redis.RedisError, OSError) as e:
            reason = f"{type(e).__name__}: {e}"
        if reason is None:
            return
        if time.monotonic() > deadline:
            raise TopologyError(f"{what} not reached within {timeout:.0f}s: {reason}")
        time.sleep(0.05)


def _start(make: Callable[[int], RedisProcess], *, cluster_bus: bool = False) -> RedisProcess:
    """Start `make(port)` on a free port, retrying when something else grabbed the port."""
    for attempt in range(5):
        port = free_port()
        if cluster_bus and (port + 10000 > 65535 or not _bindable(port + 10000)):
            continue  # the cluster bus listens on port + 10000
        proc = make(port)
        try:
            proc.start(timeout=30)
            return proc
        except EmbeddedRedisError:
            proc.kill()
            if attempt == 4:
                raise
    raise TopologyError("no free port pair for a cluster node")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------- cluster


@dataclass(frozen=True)
class _Entry:
    """One line of CLUSTER NODES."""

    node_id: str
    flags: frozenset[str]
    master_id: str
    slots: tuple[tuple[int, int], ...]


def _cluster_nodes(node: Node) -> list[_Entry]:
    entries = []
    for line in str(node.call("CLUSTER", "NODES")).splitlines():
        f = line.split()
        slots = []
        for s in f[8:]:
            if s.startswith("["):  # "[slot->-id]" / "[slot-<-id]": migration in progress
                continue
            lo, _, hi = s.partition("-")
            slots.append((int(lo), int(hi or lo)))
        entries.append(_Entry(f[0], frozenset(f[2].split(",")), f[3], tuple(slots)))
    return entries


@dataclass
class Cluster:
    nodes: list[Node]
    startup_nodes: list[str] = field(init=False)
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.startup_nodes = [n.addr for n in self.nodes]
        self.url = f"redis://{self.nodes[0].addr}"

    def _by_id(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise TopologyError(f"unknown cluster node {node_id}")

    def _view(self) -> list[_Entry]:
        """CLUSTER NODES as seen by the first node that answers."""
        for node in self.nodes:
            if node.reachable:
                try:
                    return _cluster_nodes(node)
                except (redis.RedisError, OSError):
                    continue
        raise TopologyError("no cluster node answers")

    def _live(self, role: str) -> list[Node]:
        found = [self._by_id(e.node_id) for e in self._view()
                 if role in e.flags and "fail" not in e.flags]
        return [n for n in found if n.alive]

    def primaries(self) -> list[Node]:
        return self._live("master")

    def replicas(self) -> list[Node]:
        return self._live("slave")

    def slot_owner(self, slot: int) -> Node:
        for e in self._view():
            if "master" in e.flags and any(lo <= slot <= hi for lo, hi in e.slots):
                return self._by_id(e.node_id)
        raise TopologyError(f"slot {slot} has no owner")

    def keyslot(self, key: str) -> int:
        node = next(n for n in self.nodes if n.reachable)
        return int(node.call("CLUSTER", "KEYSLOT", key))

    def owner_of(self, key: str) -> Node:
        return self.slot_owner(self.keyslot(key))

    def replica_of(self, primary: Node) -> Node:
        for e in self._view():
            if e.master_id == primary.node_id and "fail" not in e.flags:
                node = self._by_id(e.node_id)
                if node.alive:
                    return node
        raise TopologyError(f"{primary} has no live replica")

    def _health(self, *, expect_replicas: int | None = None) -> str | None:
        agreed: tuple[tuple[str, bool, str, tuple[tuple[int, int], ...]], ...] | None = None
        for node in (n for n in self.nodes if n.reachable):
            info = node.info("cluster")
            if info.get("cluster_state") != "ok":
                return f"{node.addr} cluster_state={info.get('cluster_state')}"
            view = [e for e in _cluster_nodes(node) if self._by_id(e.node_id).alive]
            served = sum(hi - lo + 1 for e in view if "master" in e.flags for lo, hi in e.slots)
            if served != SLOTS:
                return f"{node.addr} sees {served}/{SLOTS} slots on live primaries"
            # every live node must see the same roles and slots (gossip converges lazily)
            topo = tuple(sorted((e.node_id, "master" in e.flags, e.master_id, e.slots)
                                for e in view))
            if agreed is not None and topo != agreed:
                return f"{node.addr} disagrees with the other nodes on roles or slots"
            agreed = topo
            if expect_replicas is not None:
                if sum(1 for e in view if "slave" in e.flags) != expect_replicas:
                    return f"{node.addr} does not see {expect_replicas} replicas yet"
                repl = node.info("replication")
                if repl["role"] == "slave" and repl.get("master_link_status") != "up":
                    return f"replica {node.addr} link {repl.get('master_link_status')}"
        return None

    def wait_ok(self, timeout: float = 30.0) -> None:
        """cluster_state:ok on every live node, every slot owned by a live primary, and all
        live nodes agreeing on roles and slots."""
        _wait_for(self._health, timeout, "cluster ok")

    def failover_kill(self, primary: Node, timeout: float = 15.0) -> Node:
        """SIGKILL `primary`; return its replica once promoted and the cluster is ok again."""
        replica = self.replica_of(primary)
        deadline = time.monotonic() + timeout
        primary.kill()

        def promoted() -> str | None:
            me = next(e for e in _cluster_nodes(replica) if "myself" in e.flags)
            return None if "master" in me.flags and me.slots else f"{replica} not promoted yet"

        _wait_for(promoted, timeout, f"promotion of {replica}")
        self.wait_ok(max(1.0, deadline - time.monotonic()))
        return replica

    def migrate_slot(self, slot: int, target: Node, *, batch: int = 100,
                     pause_between_batches: float = 0.0, timeout: float = 30.0) -> int:
        """Move `slot` and its keys to `target` like `redis-cli --cluster reshard` does;
        returns the number of keys moved."""
        source = self.slot_owner(slot)
        if source is target:
            raise ValueError(f"slot {slot} is already on {target}")
        target.call("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        moved = 0
        while keys := source.call("CLUSTER", "GETKEYSINSLOT", slot, batch):
            source.call("MIGRATE", HOST, target.port, "", 0, 10000, "KEYS", *keys, timeout=15)
            moved += len(keys)
            if pause_between_batches:
                time.sleep(pause_between_batches)
        # target first: once the source lets go, clients must find the target owning the slot
        others = [p for p in self.primaries() if p is not source and p is not target]
        for node in [target, source, *others]:
            node.call("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)

        def everyone_agrees() -> str | None:
            for node in (n for n in self.nodes if n.reachable):
                owners = [e.node_id for e in _cluster_nodes(node)
                          if any(lo <= slot <= hi for lo, hi in e.slots)]
                if owners != [target.node_id]:
                    return f"{node.addr} sees slot {slot} on {owners}"
            return None

        _wait_for(everyone_agrees, timeout, f"slot {slot} on {target}")
        return moved


def _redis_cli() -> str:
    sibling = Path(find_redis_server()).with_name("redis-cli")
    found = str(sibling) if sibling.exists() else shutil.which("redis-cli")
    if not found:
        raise TopologyError("no redis-cli next to redis-server or on PATH")
    return found


def _cluster_node(data_dir: Path, port: int, node_timeout_ms: int) -> RedisProcess:
    return RedisProcess(data_dir, port=port, extra_args=[
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(data_dir / "nodes.conf"),
        "--cluster-node-timeout", str(node_timeout_ms),
        "--cluster-replica-validity-factor", "0",  # a replica can always be promoted
        "--cluster-allow-replica-migration", "no",
        *FAST_SYNC,
    ])


@contextmanager
def redis_cluster(tmp_path: Path, *, primaries: int = 3, replicas_per_primary: int = 1,
                  node_timeout_ms: int = 1000) -> Iterator[Cluster]:
    nodes: list[Node] = []
    try:
        for _ in range(primaries * (1 + replicas_per_primary)):
            node = Node(_start(lambda port: _cluster_node(tmp_path / f"node-{port}", port,
                                                          node_timeout_ms), cluster_bus=True))
            nodes.append(node)
            node.node_id = str(node.call("CLUSTER", "MYID"))
        cmd = [_redis_cli(), "--cluster", "create", *(n.addr for n in nodes),
               "--cluster-replicas", str(replicas_per_primary), "--cluster-yes"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            raise TopologyError(f"redis-cli --cluster create failed: {done.stdout}{done.stderr}")
        cluster = Cluster(nodes)
        want = primaries * replicas_per_primary
        _wait_for(lambda: cluster._health(expect_replicas=want), 60, "new cluster ok")
        yield cluster
    finally:
        for node in nodes:
            node.kill()  # SIGKILL works on paused processes too


# --------------------------------------------------------------------------- sentinel


class SentinelProcess(RedisProcess):
    """redis-server --sentinel with a generated sentinel.conf (sentinel rewrites it)."""

    def __init__(self, data_dir: Path, port: int, conf_lines: list[str]) -> None:
        super().__init__(data_dir, port=port)
        self.conf_lines = conf_lines

    def command(self) -> list[str]:
        conf = self.data_dir / "sentinel.conf"
        conf.write_text("\n".join([
            f"port {self.port}", f"bind {HOST}", f"dir {self.data_dir}",
            f"logfile {self.data_dir / 'redis.log'}", "daemonize no", *self.conf_lines,
        ]) + "\n")
        return [find_redis_server(), str(conf), "--sentinel"]


@dataclass
class Sentinel:
    master_name: str
    data_nodes: list[Node]  # the two data servers, whatever their current roles
    sentinel_nodes: list[Node]
    sentinels: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.sentinels = [n.addr for n in self.sentinel_nodes]

    def _primary_port(self, sentinel: Node) -> int:
        reply = sentinel.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        return int(reply[1])

    def primary(self) -> Node:
        for s in (n for n in self.sentinel_nodes if n.reachable):
            try:
                port = self._primary_port(s)
            except (redis.RedisError, OSError):
                continue
            for node in self.data_nodes:
                if node.port == port:
                    return node
            raise TopologyError(f"sentinel {s.addr} names unknown primary port {port}")
        raise TopologyError("no sentinel answers")

    def replica(self) -> Node:
        primary = self.primary()
        return next(n for n in self.data_nodes if n is not primary)

    def _settled(self) -> str | None:
        primary = self.primary()
        for s in (n for n in self.sentinel_nodes if n.reachable):
            raw = s.call("SENTINEL", "MASTER", self.master_name)
            # a map under RESP3 (redis-py 8's default), a flat list under RESP2
            pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
            m = {str(k): str(v) for k, v in pairs}
            if int(m["port"]) != primary.port or m["flags"] != "master":
                return f"sentinel {s.addr} sees {m['ip']}:{m['port']} flags={m['flags']}"
            if m["num-other-sentinels"] != "2" or m["num-slaves"] != "1":
                return (f"sentinel {s.addr} knows {m['num-other-sentinels']} sentinels, "
                        f"{m['num-slaves']} replicas")
        link = self.replica().info("replication").get("master_link_status")
        return None if link == "up" else f"replica link {link}"

    def failover_kill(self, timeout: float = 20.0) -> Node:
        """SIGKILL the primary; return the replica once every sentinel names it and it answers
        ROLE as master."""
        old, new = self.primary(), self.replica()
        old.kill()

        def switched() -> str | None:
            for s in (n for n in self.sentinel_nodes if n.reachable):
                if self._primary_port(s) != new.port:
                    return f"sentinel {s.addr} still names the old primary"
            role = new.call("ROLE")[0]
            return None if role == "master" else f"{new} ROLE is {role}"

        _wait_for(switched, timeout, f"sentinel failover to {new}")
        return new


@contextmanager
def redis_sentinel(tmp_path: Path, *, master_name: str = "lc-primary",
                   down_after_ms: int = 1000) -> Iterator[Sentinel]:
    everything: list[Node] = []
    try:
        primary = Node(_start(lambda port: RedisProcess(
            tmp_path / f"data-{port}", port=port, extra_args=FAST_SYNC)))
        everything.append(primary)
        replica = Node(_start(lambda port: RedisProcess(
            tmp_path / f"data-{port}", port=port,
            extra_args=[*FAST_SYNC, "--replicaof", HOST, str(primary.port)])))
        everything.append(replica)
        conf = [f"sentinel monitor {master_name} {HOST} {primary.port} 2",
                f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
                f"sentinel failover-timeout {master_name} 5000",
                f"sentinel parallel-syncs {master_name} 1"]
        sentinel_nodes: list[Node] = []
        for _ in range(3):
            node = Node(_start(lambda port: SentinelProcess(
                tmp_path / f"sentinel-{port}", port, conf)))
            everything.append(node)
            sentinel_nodes.append(node)
        setup = Sentinel(master_name, [primary, replica], sentinel_nodes)
        _wait_for(setup._settled, 60, "sentinels agreeing")
        yield setup
    finally:
        for node in everything:
            node.kill()
