"""relay-bench keeps working: a short run of each scenario kind against a redis-server and the
relay it launches itself must complete with no lost message. (Numbers from a debug build mean
nothing; the measured ratios come from a release build, see the README.)"""
import os
import subprocess

import pytest

from conftest import require_tool


def test_relay_bench_quick_run_is_valid(relay_binary):
    bench = os.path.join(os.path.dirname(relay_binary), "relay-bench")
    if not os.path.exists(bench):
        pytest.skip(f"relay-bench not built next to {relay_binary} (scripts/test builds it)")
    require_tool("redis-server", "apt-get install redis-server")
    run = subprocess.run(
        [bench, "--quick", "--relay", relay_binary, "--scenarios", "fanout_100,pattern_1000,latency,backplane_100,backplane_latency,pg_notify_1"],
        capture_output=True, text=True, timeout=180)
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "RESULT valid redis=1 relay=1" in run.stdout
    for scenario in ("fanout_100", "pattern_1000", "backplane_100"):
        assert f"RESULT {scenario}_lost redis=0 relay=0" in run.stdout
    assert "RESULT backplane_latency_lost redis=0 relay=0" in run.stdout
    # NOTIFY through the relay fleet (leader relay -> redis -> other relay) against a direct LISTEN.
    assert "RESULT pg_notify_1 redis=" in run.stdout and "relay=NA" not in run.stdout.split("RESULT pg_notify_1 ")[1].split("\n")[0]


def test_relay_bench_cluster_direct_mode_is_valid(relay_binary):
    """The cluster scenarios' own machinery: a 3-master + 3-replica Redis Cluster is started,
    loaded straight (SSUBSCRIBE/SPUBLISH on the owning master, then classic PUBLISH), every
    message counted, its CPU read, and every node stopped."""
    bench = os.path.join(os.path.dirname(relay_binary), "relay-bench")
    if not os.path.exists(bench):
        pytest.skip(f"relay-bench not built next to {relay_binary} (scripts/test builds it)")
    require_tool("redis-server", "apt-get install redis-server")
    require_tool("redis-cli", "apt-get install redis-tools")
    run = subprocess.run([bench, "--quick", "--only-redis", "--scenarios", "cluster_cpu"],
                         capture_output=True, text=True, timeout=180)
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "RESULT cluster_cpu_direct_valid classic=1 sharded=1" in run.stdout
    assert "RESULT cluster_cpu_direct_lost classic=0 sharded=0" in run.stdout
    assert "redis cluster: stopped" in run.stdout


def test_relay_bench_cluster_through_relays_is_valid(relay_binary):
    """The cluster scenarios through relays joined by redis-cluster:// (sharded, then classic):
    every message delivered and every PUBLISH counted as the fleet's receivers. (The CPU ratio of
    a debug build means nothing; the README's comes from a release build.)"""
    bench = os.path.join(os.path.dirname(relay_binary), "relay-bench")
    if not os.path.exists(bench):
        pytest.skip(f"relay-bench not built next to {relay_binary} (scripts/test builds it)")
    require_tool("redis-server", "apt-get install redis-server")
    require_tool("redis-cli", "apt-get install redis-tools")
    run = subprocess.run([bench, "--quick", "--relay", relay_binary, "--scenarios", "cluster_cpu,cluster_fanout"],
                         capture_output=True, text=True, timeout=180)
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "RESULT cluster_cpu_valid classic=1 sharded=1" in run.stdout
    assert "RESULT cluster_cpu_lost classic=0 sharded=0" in run.stdout
    assert "RESULT cluster_fanout_lost standalone=0 cluster=0" in run.stdout
    counts = run.stdout.split("PUBLISH counts unexpected")[1].split("\n")[0].split()
    assert counts == ["0", "0"], counts
