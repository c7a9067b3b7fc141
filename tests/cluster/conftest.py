"""The 3-node SLURM cluster of the `multinode` tests (tests/cluster/localcluster.py: how it is built).

    .venv/bin/pytest -m multinode             # these tests; the srun+MPI ones skip without an MPI Horovod
    VENV/bin/pytest -m multinode              # VENV's Horovod built with MPI: those too

One cluster for the whole session. Its teardown checks that nothing of it is left (processes,
namespaces, links, files) and fails the run otherwise: the check runs at the end of every run that
used it, whether its tests passed, failed or were interrupted with Ctrl-C.
"""
from __future__ import annotations

import os
import shutil
from typing import Iterator

import pytest

from tests.cluster.localcluster import PROGRAMS, SEARCH_PATH, Cluster, new_root


def skip_unless_possible() -> None:
    if os.geteuid() != 0:
        pytest.skip("the local multi-node cluster needs root (network, PID and mount namespaces)")
    missing = [p for p in PROGRAMS if shutil.which(p, path=SEARCH_PATH) is None]
    if missing:
        pytest.skip(f"the local multi-node cluster needs {', '.join(missing)}: run scripts/setup.sh "
                    "(openssh-server, slurm-wlm, munge, iproute2, util-linux)")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    skip_unless_possible()
    cluster = Cluster.start(new_root())
    try:
        yield cluster
    finally:
        cluster.stop()
        left = cluster.leftovers()
        assert not left, f"the local cluster left these behind: {'; '.join(left)}"
