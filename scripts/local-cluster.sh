#!/usr/bin/env bash
# A SLURM cluster of several nodes on this machine, each node in its own Linux namespaces
# (hostname, network, PIDs) with its own slurmd and sshd: what the `multinode` tests run on.
#
#   scripts/local-cluster.sh up [--nodes 3]                # start it (a few seconds; needs root)
#   scripts/local-cluster.sh up --nodes 3 --link 1gbit     # ... each node's link shaped to 1 Gbit/s (tc tbf)
#   scripts/local-cluster.sh exec sinfo -N                 # run a command on its login node
#   scripts/local-cluster.sh exec .venv/bin/slurm-submit train --nodes 3 --gpus-per-node 0 ...
#   scripts/local-cluster.sh exec --node node2 ps -ef      # ... or on a compute node (no command: a shell)
#   scripts/local-cluster.sh down                          # stop it; nothing is left behind
#
# --dir DIR (before the action) keeps it elsewhere than /tmp/local-cluster; every directory above DIR
# must be searchable by all (munged's rule for its socket), or `up` says which is not and exits 2.
# How it works, and what it needs (unshare, nsenter, ip, slurm-wlm, munge, openssh-server):
# tests/cluster/localcluster.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
[[ -x $python ]] || { echo "local-cluster.sh: no $python; run scripts/setup.sh first" >&2; exit 2; }
PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH} exec "$python" -m tests.cluster.localcluster "$@"
