"""Names and limits more than one package needs, in a module that imports nothing heavy.

`bench train` validates an image size and `slurm-submit` a provider name without loading
TensorFlow or onnxruntime; the model, the data loaders and the sessions use the same values.
"""
from __future__ import annotations

from pathlib import Path

# AlexNet's smallest input: conv1 (11x11/4) then three valid 3x3/2 max-pools must leave
# at least 1x1: (67-11)//4+1 = 15 -> 7 -> 3 -> 1.
MIN_IMAGE_SIZE = 67
NORMS = ("batch", "lrn")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
# Where training runs (alexnet.devices): GPUs when TensorFlow sees them, or the one asked for.
DEVICES = ("auto", "gpu", "cpu")
# The oldest NVIDIA driver the GPU stack runs on: CUDA 13.0 (onnxruntime-gpu, Horovod's NCCL build).
MIN_DRIVER = "580.65.06"

DATASETS = ("cifar10", "fashion_mnist", "synthetic")
REAL_DATASETS = ("cifar10", "fashion_mnist")
CLASS_NAMES = {
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
    "synthetic": tuple(f"class_{i}" for i in range(10)),
}
# Debian's dataset-fashion-mnist package: the built-in real data.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_TEST_IMAGES = FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz"

# onnxruntime execution providers: the short names users type, the names onnxruntime uses,
# and the short names tables print.
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}
SHORT_NAMES = {full: short for short, full in
               {"CPU": PROVIDERS["cpu"], "CUDA": PROVIDERS["cuda"], "TensorRT": PROVIDERS["tensorrt"]}.items()}
