"""The local Redis Cluster / Sentinel topologies of tests/topology.py, checked against redis-py's
own cluster and sentinel clients."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel as SentinelClient

from tests.topology import Cluster, Node, redis_cluster, redis_sentinel

pytestmark = pytest.mark.slow


@contextmanager
def cluster_client(cluster: Cluster) -> Iterator[RedisCluster]:
    nodes = [ClusterNode(n.split(":")[0], int(n.split(":")[1]))  # type: ignore[no-untyped-call]
             for n in cluster.startup_nodes]
    rc = RedisCluster(startup_nodes=nodes, decode_responses=True, socket_timeout=2,
                      socket_connect_timeout=2)
    try:
        yield rc
    finally:
        rc.close()


def write_replicated(node: Node, items: dict[str, str]) -> None:
    """Write on `node` and WAIT (same connection) until its replica has the writes."""
    with node.client() as c:
        for k, v in items.items():
            c.set(k, v)
        assert c.execute_command("WAIT", 1, 1000) == 1


def test_cluster_spreads_keys_and_owner_of_matches_redis_py(tmp_path: Path) -> None:
    with redis_cluster(tmp_path) as cluster:
        primaries, replicas = cluster.primaries(), cluster.replicas()
        assert len(primaries) == 3 and len(replicas) == 3
        assert {cluster.replica_of(p).port for p in primaries} == {r.port for r in replicas}
        assert cluster.url == f"redis://{cluster.startup_nodes[0]}"

        keys = [f"{{tag{i}}}:k" for i in range(30)]
        owners = {k: cluster.owner_of(k) for k in keys}
        assert {o.port for o in owners.values()} == {p.port for p in primaries}
        with cluster_client(cluster) as rc:
            for k in keys:
                rc.set(k, k.upper())
            for k, owner in owners.items():
                assert rc.get_node_from_key(k).port == owner.port  # type: ignore[no-untyped-call]
                assert owner.call("GET", k) == k.upper()  # MOVED would raise here
        assert len(cluster.nodes) == 6 and all(n.alive for n in cluster.nodes)
    assert not any(n.alive for n in cluster.nodes)  # all killed on exit


def test_cluster_failover_kill_promotes_the_replica_and_keeps_acked_writes(
    tmp_path: Path,
) -> None:
    with redis_cluster(tmp_path) as cluster:
        victim = cluster.owner_of("{fo}")
        replica = cluster.replica_of(victim)
        items = {f"{{fo}}:{i}": str(i) for i in range(50)}
        with cluster_client(cluster) as rc:
            assert rc.get("{fo}:0") is None  # the client knows the old topology
            write_replicated(victim, items)
            t0 = time.monotonic()
            new = cluster.failover_kill(victim)
            took = time.monotonic() - t0
            assert new is replica and not victim.alive
            assert cluster.owner_of("{fo}") is new
            assert new in cluster.primaries() and victim not in cluster.primaries()
            assert [rc.get(k) for k in items] == list(items.values())
        print(f"cluster failover took {took:.2f}s")


def test_cluster_migrate_slot_moves_keys_under_load(tmp_path: Path) -> None:
    with redis_cluster(tmp_path) as cluster:
        slot = cluster.keyslot("{mig}")
        source = cluster.slot_owner(slot)
        target = next(p for p in cluster.primaries() if p is not source)
        items = {f"{{mig}}:{i}": str(i) for i in range(250)}
        write_replicated(source, items)

        stop, errors, written = threading.Event(), [], {}

        def load() -> None:  # reads old keys, creates new ones, while the slot moves
            with cluster_client(cluster) as rc:
                i = 0
                while not stop.is_set():
                    try:
                        assert rc.get(f"{{mig}}:{i % 250}") == str(i % 250)
                        rc.set(f"{{mig}}:new:{i}", "n")
                        written[f"{{mig}}:new:{i}"] = "n"
                    except (redis.RedisError, AssertionError) as e:
                        errors.append(repr(e))
                    i += 1

        thread = threading.Thread(target=load)
        thread.start()
        try:
            t0 = time.monotonic()
            moved = cluster.migrate_slot(slot, target, batch=50, pause_between_batches=0.1)
            took = time.monotonic() - t0
        finally:
            stop.set()
            thread.join(10)
        assert errors == []
        assert moved >= 250 and len(written) > 0
        assert cluster.slot_owner(slot) is target
        with cluster_client(cluster) as rc, target.client() as direct:
            for k, v in {**items, **written}.items():
                assert rc.get(k) == v
                assert direct.get(k) == v  # on the target itself, no MOVED
        assert int(source.call("CLUSTER", "COUNTKEYSINSLOT", slot)) == 0
        print(f"migrated {moved} keys in {took:.2f}s, {len(written)} writes during it")


def test_sentinel_failover_kill_and_redis_py_follows(tmp_path: Path) -> None:
    with redis_sentinel(tmp_path) as setup:
        old = setup.primary()
        replica = setup.replica()
        assert old is not replica and len(setup.sentinels) == 3
        hosts = [(h, int(p)) for h, p in (a.split(":") for a in setup.sentinels)]
        client = SentinelClient(  # type: ignore[no-untyped-call]
            hosts, socket_timeout=2, socket_connect_timeout=2)
        master = client.master_for(  # type: ignore[no-untyped-call]
            setup.master_name, socket_timeout=2, decode_responses=True)
        items = {f"s:{i}": str(i) for i in range(50)}
        write_replicated(old, items)
        assert master.get("s:0") == "0"  # connected to the old primary

        t0 = time.monotonic()
        new = setup.failover_kill()
        took = time.monotonic() - t0
        assert new is replica and not old.alive
        assert setup.primary() is new
        assert new.call("ROLE")[0] == "master"
        assert [master.get(k) for k in items] == list(items.values())
        master.set("after", "1")
        assert new.call("GET", "after") == "1"
        master.close()
        print(f"sentinel failover took {took:.2f}s")
    assert not any(n.alive for n in [*setup.data_nodes, *setup.sentinel_nodes])
