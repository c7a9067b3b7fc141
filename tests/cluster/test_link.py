"""A shaped link on the local cluster (`up --link RATE`): a tbf qdisc on both ends of every node's link,
the rate in the cluster's environment, and nothing left after the cluster stops.

    flock /tmp/alexnet-cluster.lock .venv/bin/pytest tests/cluster/test_link.py

Its own small cluster (2 nodes), not the session's unshaped one.
"""
from __future__ import annotations

import subprocess

import pytest

from tests.cluster.conftest import skip_unless_possible
from tests.cluster.localcluster import LINK_VARIABLE, Cluster, main, new_root, tbf_qdisc

pytestmark = pytest.mark.multinode


def test_burst_covers_five_milliseconds_of_the_rate():
    assert tbf_qdisc("eth0", "1gbit") == ["qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "1gbit",
                                          "burst", "625000", "latency", "50ms"]
    assert tbf_qdisc("eth0", "1mbit")[-3] == str(16 * 1024)


def test_a_bad_rate_is_refused_before_anything_starts(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["up", "--nodes", "1", "--link", "1gigabit"])
    assert exit_.value.code == 2 and "e.g. 1gbit" in capsys.readouterr().err


def test_link_is_shaped_each_way_and_goes_with_the_cluster():
    skip_unless_possible()
    cluster = Cluster.start(new_root(), size=2, link="100mbit")
    try:
        for name in cluster.compute_nodes:
            for end in cluster.qdiscs(name):
                assert "qdisc tbf" in end and "rate 100Mbit" in end, end
        assert cluster.login("printenv", LINK_VARIABLE).stdout.strip() == "100mbit"
    finally:
        cluster.stop()
    assert cluster.leftovers() == []
    machine = subprocess.run(["tc", "qdisc", "show"], capture_output=True, text=True, check=True).stdout
    assert "lc-" not in machine
