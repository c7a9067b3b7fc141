"""--device auto|gpu|cpu: the rules as a pure function, the driver's version, and the CLI's one-line refusal."""
import pytest

from alexnet import devices
from alexnet.devices import decide, parse_proc_version
from tests.conftest import run_module
from tests.toolkit.test_imports import heavy_modules
from toolkit.cli import UsageError

NO_DRIVER_HERE = devices.driver_version() is None
WHEELS = ("nvidia-cudnn-cu12",)


@pytest.mark.parametrize("requested, driver, tf_gpus, expected", [
    ("cpu", "580.65.06", 4, "cpu"),        # the CPU on a GPU machine, when asked for
    ("cpu", None, 0, "cpu"),
    ("auto", "580.65.06", 2, "gpu"),
    ("gpu", "580.65.06", 1, "gpu"),
    ("auto", None, 0, "cpu"),              # no driver: a CPU machine, nothing to warn about
])
def test_where_training_runs(requested, driver, tf_gpus, expected):
    assert decide(requested, driver, tf_gpus) == expected


def test_gpu_without_a_driver_names_the_problem_and_the_fix():
    with pytest.raises(UsageError, match=r"^--device gpu: no NVIDIA driver is loaded here .*: run on a machine with "
                                         r"an NVIDIA GPU and driver 580\.65\.06 or newer, or pass --device cpu$"):
        decide("gpu", None, 0)


@pytest.mark.parametrize("requested", ["auto", "gpu"])
@pytest.mark.parametrize("driver, missing, visible, reason, fix", [
    ("580.65.06", (), "", "CUDA_VISIBLE_DEVICES='' hides every GPU", "unset CUDA_VISIBLE_DEVICES"),
    ("580.65.06", (), "-1", "CUDA_VISIBLE_DEVICES='-1' hides every GPU", "unset CUDA_VISIBLE_DEVICES"),
    ("580.65.06", WHEELS, None, "TensorFlow's CUDA libraries are not installed (nvidia-cudnn-cu12 missing)",
     "GPU=1 scripts/setup.sh"),
    ("550.54.14", (), None, "driver 550.54.14 is older than 580.65.06", "update the NVIDIA driver to 580.65.06"),
    ("580.65.06", (), "0", "TensorFlow could not initialise CUDA", "check that nvidia-smi lists the GPU"),
])
def test_a_driver_with_no_gpu_for_tensorflow_is_refused_with_the_reason(requested, driver, missing, visible, reason,
                                                                        fix):
    """auto refuses too: a loaded driver means a GPU was meant; --device cpu is how to mean the CPU."""
    with pytest.raises(UsageError) as refused:
        decide(requested, driver, 0, missing, visible)
    message = str(refused.value)
    assert message.startswith(f"--device {requested}: NVIDIA driver {driver} is loaded but TensorFlow sees no GPU: ")
    assert reason in message and f"fix: {fix}" in message and message.endswith("or pass --device cpu to train on "
                                                                               "the CPU")
    assert "\n" not in message


def test_the_most_likely_cause_comes_first():
    with pytest.raises(UsageError, match="CUDA_VISIBLE_DEVICES"):
        decide("gpu", "470.1", 0, WHEELS, "")
    with pytest.raises(UsageError, match="CUDA libraries are not installed"):
        decide("gpu", "470.1", 0, WHEELS, "0,1")


def test_unknown_device():
    with pytest.raises(UsageError, match="unknown --device 'tpu': use one of auto, gpu, cpu"):
        decide("tpu", None, 0)


@pytest.mark.parametrize("text, version", [
    ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 07:09:02 UTC 2025\n"
     "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n", "580.65.06"),
    ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (dvs-builder@U22)  "
     "Thu Oct  9 2025\n", "580.159.04"),
    ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54\n", "550.54"),
    ("something else entirely\n", None),
])
def test_driver_version_from_proc(text, version):
    assert parse_proc_version(text) == version


def test_driver_version_reads_proc_first_then_nvidia_smi(tmp_path, monkeypatch):
    proc = tmp_path / "version"
    proc.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27\n")
    monkeypatch.setattr(devices, "PROC_VERSION", proc)
    monkeypatch.setattr("toolkit.environment.gpu_info", lambda: [{"driver": "999.1"}])
    assert devices.driver_version() == "580.65.06"
    proc.unlink()
    assert devices.driver_version() == "999.1"
    monkeypatch.setattr("toolkit.environment.gpu_info", lambda: [])
    assert devices.driver_version() is None


@pytest.mark.skipif(not NO_DRIVER_HERE, reason="an NVIDIA driver is loaded here")
def test_train_device_gpu_without_a_driver_exits_2_in_one_line_before_loading_tensorflow(tmp_path):
    done = run_module("alexnet.train", "--device", "gpu", "--output-dir", tmp_path / "out", timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "alexnet.train: error: --device gpu: no NVIDIA driver is loaded here (no /proc/driver/nvidia/version, no "
        "nvidia-smi): run on a machine with an NVIDIA GPU and driver 580.65.06 or newer, or pass --device cpu"]
    assert not (tmp_path / "out").exists()
    heavy, code = heavy_modules("alexnet.train", "--device", "gpu")
    assert code == "2" and heavy == []
