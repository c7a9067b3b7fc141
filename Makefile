# The two commands a newcomer needs (README.md):
#   make demo   install everything, then train -> export -> benchmark -> report on Fashion-MNIST
#   make test   install everything, then run the test suite
.PHONY: setup demo test test-fast
setup:
	scripts/setup.sh

demo: setup
	scripts/demo.sh

test: setup
	.venv/bin/pytest

# Everything but real training, SLURM and Horovod runs: a few minutes.
test-fast: setup
	.venv/bin/pytest -m "not slow and not distributed and not slurm"
