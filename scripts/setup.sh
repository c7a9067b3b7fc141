#!/usr/bin/env bash
# Install everything this project needs on a fresh Debian 12 machine, idempotently.
#
#   scripts/setup.sh            (make setup calls this)
#
# 1. Debian packages: compilers and cmake (Horovod's build), the Fashion-MNIST
#    IDX files (dataset-fashion-mnist: the built-in real data), and slurm-wlm +
#    munge (the tests run a real one-node SLURM).
# 2. A virtual environment at .venv with the project and its pinned dependencies.
# 3. Horovod 0.28.1 built against that TensorFlow (scripts/build-horovod.sh).
# Each step is skipped when already done, so a second run takes seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
debs=(build-essential cmake dataset-fashion-mnist slurm-wlm munge)
missing=()
for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
    echo "Installing Debian packages: ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi
python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    echo "Creating .venv with $($python --version)"
    "$python" -m venv .venv
fi
stamp=.venv/.deps-stamp
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "Installing the project and its pinned dependencies into .venv"
    .venv/bin/pip install -q --upgrade pip setuptools wheel
    .venv/bin/pip install -q -c constraints.txt -e ".[dev]"
    echo "$want" > "$stamp"
fi
scripts/build-horovod.sh "$root/.venv"
