"""Exact graph rewrites of a converted model: the same function, less work for onnxruntime.

    from export.rewrite import rewrite
    applied = rewrite(model_proto)                          # every pass, in order: {name: times applied}
    applied = rewrite(model_proto, ["batchnorm", "constant-folding"])
    python -m export model.keras -o a.onnx --no-rewrite affine-into-gemm     # all but one
    python -m export model.keras -o a.onnx --rewrites none                   # tf2onnx's graph as it was

Each pass is named (export.REWRITES, in the order they run), can be switched off, and is exact:
the rewritten graph computes the same function, up to float32 rounding where a sum is
reordered (tests/export/test_rewrite.py checks each on a graph where it applies and on one where
it must not, and all of them end to end against Keras on a trained AlexNet: max |diff| <= 1e-5).
The export records which passes ran and how often (metadata "rewrites", OUTPUT.onnx.json).

Why each (onnxruntime's profiler on the 227 px AlexNet, 2 threads; README "Faster float32"):
  repeat-into-conv     Fashion-MNIST's grey images are repeated to 3 channels, resized to 227 px,
                       and convolved: resizing one channel and convolving it with the kernel summed
                       over the 3 copies is the same (conv1 had 13% of the time, Resize 1.4%).
  resize-as-matmul     a resize of both spatial axes with constant scales is rows @ x @ columns^T, the
                       two matrices being the Resize's own weights (obtained by running the node on an
                       identity matrix). onnxruntime's Resize took 3.0 ms per 32 images, the two
                       MatMuls 0.6 ms; in the int8 variant, whose layout transformer moved the Resize
                       to NHWC, it had 15% of the time.
  batchnorm            tf2onnx writes Keras' BatchNormalization after ReLU as Mul and Add in NHWC
                       between two Transposes. onnxruntime makes the Mul a 1x1 depthwise NCHWc conv
                       but leaves the Add in plain NCHW, so every BatchNorm costs a layout reorder out
                       of NCHWc and back. One BatchNormalization node is one NCHWc conv with bias.
  affine-past-maxpool  max(s*x + b) = s*max(x) + b for s > 0 (float rounding is monotone too, so
                       this one is bit-exact): the affine runs on the pooled tensor, 4x smaller.
  affine-into-gemm     (x*s + b) @ W = x @ (s*W) + b @ W: the affine after the last pool disappears
                       into fc6, through the flatten (its Transpose and Reshape are followed).
  affine-into-conv     the same for a Conv, where it is exact: no padding (zeros padded after the
                       affine are not the affine of padded zeros) or no offset. AlexNet's convs after
                       BatchNorm all pad, so this one finds nothing there; it is for other models.
  batchnorm-as-conv    each BatchNormalization left is written as the 1x1 depthwise Conv it is (x*s + b
                       per channel): what onnxruntime's float32 NCHWc path makes of it anyway, and what its
                       int8 path quantizes with per-channel weights (exactly) and runs in NHWC uint8, where
                       a BatchNormalization was dequantized, run in float NCHW between two Transposes, and
                       requantized (9% of the int8 variant's time).
  constant-folding     tf2onnx computes the flatten's and the standardisation's sizes at run time
                       from Shape ops; with shapes inferred statically they are constants (the batch
                       size becomes Reshape's "copy this dimension", 0), and whatever is then fed by
                       constants alone is folded (export.graph.fold_constants).
The affine passes work on BatchNormalization nodes, so they find tf2onnx's Mul/Add only after
`batchnorm` has run. constant-folding runs first: the sizes it makes static free the tensors that
Shape ops read, and the other passes need those to have a single consumer.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from export import REWRITES
from export.graph import cpu_session, fold_constants
from toolkit.onnxgraph import infer_shapes, static_sizes, topological_sort

# Ops in which every channel is computed from the same channel alone, the same way.
_CHANNELWISE_UNARY = frozenset({"Relu", "Cast", "Identity", "Sigmoid", "Tanh", "Abs", "Neg"})
_ELEMENTWISE_BINARY = frozenset({"Mul", "Add", "Sub", "Div"})
NCHW_TO_NHWC = [0, 2, 3, 1]
NHWC_TO_NCHW = [0, 3, 1, 2]

Dim = int | str | None                # a static size, a symbol (equal symbols: equal sizes), or unknown


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _set_attr(node: onnx.NodeProto, name: str, value) -> None:
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


class Graph:
    """A model's main graph with the look-ups the passes need; `nodes` is written back by `commit`."""

    def __init__(self, model: onnx.ModelProto):
        self._read(model)

    def _read(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.nodes = list(model.graph.node)
        self.initializers = {t.name: t for t in model.graph.initializer}
        self.outputs = {o.name for o in model.graph.output}
        self._shapes: dict[str, list[Dim]] | None = None
        self._arrays: dict[str, np.ndarray] = {}          # initializers as arrays, made once (fc6's is 151 MB)
        self._new: set[str] = set()                       # initializers not yet in the model

    # --- structure -------------------------------------------------------------------------------
    def consumers(self, name: str) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if name in n.input]

    def producer(self, name: str) -> onnx.NodeProto | None:
        return next((n for n in self.nodes if name in n.output), None)

    def sole_consumer(self, name: str) -> onnx.NodeProto | None:
        """The one node reading `name`, which no one else reads (nor the graph's outputs)."""
        users = self.consumers(name)
        if len(users) != 1 or name in self.outputs or list(users[0].input).count(name) != 1:
            return None
        return users[0]

    def fresh(self, hint: str) -> str:
        taken = set(self.initializers) | {o for n in self.nodes for o in (*n.input, *n.output)}
        taken |= {i.name for i in self.model.graph.input}
        name, k = hint, 0
        while name in taken:
            k += 1
            name = f"{hint}_{k}"
        return name

    def remove(self, *nodes: onnx.NodeProto) -> None:
        gone = {id(n) for n in nodes}
        self.nodes = [n for n in self.nodes if id(n) not in gone]

    def changed(self) -> None:
        self._shapes = None

    # --- constants -------------------------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        """The initializer `name` as an array (not to be modified), or None if it is not one."""
        if name not in self._arrays and name in self.initializers:
            self._arrays[name] = numpy_helper.to_array(self.initializers[name])
        return self._arrays.get(name)

    def add_const(self, array: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        self.set_const(name, array)
        return name

    def set_const(self, name: str, array: np.ndarray) -> None:
        self.initializers[name] = numpy_helper.from_array(np.ascontiguousarray(array), name)
        self._arrays.pop(name, None)
        self._new.add(name)

    # --- shapes ----------------------------------------------------------------------------------
    def shape(self, name: str) -> list[Dim] | None:
        if self._shapes is None:
            self._shapes = infer_shapes(self.nodes, self.model, initializers=self.initializers.values())
        return self._shapes.get(name)

    def commit(self) -> None:
        """Write nodes back, drop what nothing uses any more, and order the nodes."""
        _prune(self)
        graph = self.model.graph
        del graph.node[:]
        graph.node.extend(self.nodes)
        used = {i for n in self.nodes for i in n.input} | self.outputs
        # In place: the kept ones are not copied (copying protobufs of 233 MB of weights took seconds).
        for index in reversed(range(len(graph.initializer))):
            if graph.initializer[index].name not in used or graph.initializer[index].name in self._new:
                del graph.initializer[index]
        graph.initializer.extend(self.initializers[name] for name in sorted(self._new & used))
        self.reload()
        # Shapes recorded by the converter may no longer hold (repeat-into-conv changes channel counts);
        # they are optional, and onnxruntime infers its own.
        del graph.value_info[:]
        topological_sort(graph)

    def reload(self) -> None:
        """Read the model again, after something else (export.graph.fold_constants) changed it."""
        self._read(self.model)


def _prune(g: Graph) -> None:
    """Remove nodes none of whose outputs is used, until none is left."""
    while True:
        used = {i for n in g.nodes for i in n.input} | g.outputs
        dead = [n for n in g.nodes if not used.intersection(n.output)]
        if not dead:
            return
        g.remove(*dead)


# --- per-channel affines ---------------------------------------------------------------------------

def _per_channel(g: Graph, name: str, axis: int, rank: int, channels: int) -> np.ndarray | None:
    """The float32 constant `name` as one value per channel, where it broadcasts along `axis` only."""
    a = g.const(name)
    if a is None or a.dtype != np.float32 or a.ndim > rank:
        return None
    shape = (1,) * (rank - a.ndim) + a.shape
    if any(d != 1 for i, d in enumerate(shape) if i != axis) or shape[axis] not in (1, channels):
        return None
    return np.broadcast_to(a.reshape(-1), (channels,)).astype(np.float32)


def _affine(g: Graph, bn: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray] | None:
    """An inference BatchNormalization as y = x*s + b per channel, or None if its parameters are not constant."""
    if bn.op_type != "BatchNormalization" or len(bn.output) != 1 or _attr(bn, "training_mode", 0):
        return None
    params = [p for name in bn.input[1:5] if (p := g.const(name)) is not None]
    if len(params) != 4:
        return None
    scale, offset, mean, var = (p.astype(np.float64) for p in params)
    s = scale / np.sqrt(var + _attr(bn, "epsilon", 1e-5))
    return s.astype(np.float32), (offset - mean * s).astype(np.float32)


def _batchnorm_node(g: Graph, x: str, y: str, s: np.ndarray, b: np.ndarray, hint: str) -> onnx.NodeProto:
    """y = x*s + b per channel (axis 1) as one BatchNormalization: mean 0, variance 1, epsilon 0."""
    names = [g.add_const(value, f"{hint}/{what}") for value, what in
             ((s, "scale"), (b, "offset"), (np.zeros_like(s), "mean"), (np.ones_like(s), "var"))]
    return helper.make_node("BatchNormalization", [x, *names], [y], name=g.fresh(f"{hint}/batchnorm"), epsilon=0.0)


def _const_operand(g: Graph, node: onnx.NodeProto) -> tuple[str, str] | None:
    """(variable input, constant input) of a binary node with exactly one constant input."""
    a, b = node.input
    if (g.const(a) is None) == (g.const(b) is None):
        return None
    return (b, a) if g.const(a) is not None else (a, b)


def pass_batchnorm(g: Graph) -> int:
    """Per-channel Mul (then Add) on a 4-d tensor -> one BatchNormalization in NCHW (see the module docstring)."""
    applied = 0
    for mul in [n for n in g.nodes if n.op_type == "Mul"]:
        operands = _const_operand(g, mul)
        if operands is None:
            continue
        x, s_name = operands
        before = g.producer(x)
        if before is not None and before.op_type == "Transpose" and _attr(before, "perm") == NCHW_TO_NHWC:
            source, axis, nhwc = before.input[0], 3, True        # tf2onnx: NHWC between two Transposes
        elif (x_shape := g.shape(x)) is not None and len(x_shape) == 4:
            source, axis, nhwc = x, 1, False
        else:
            continue
        source_shape = g.shape(source)
        if source_shape is None or len(source_shape) != 4 or not isinstance(source_shape[1], int):
            continue
        channels = source_shape[1]
        s = _per_channel(g, s_name, axis, 4, channels)
        if s is None or (s_const := g.const(s_name)) is None or s_const.size != channels:
            continue                                # a scalar Mul (a rescaling) is not a BatchNorm
        add, b, y = g.sole_consumer(mul.output[0]), np.zeros_like(s), mul.output[0]
        if add is not None and add.op_type == "Add" and (operands := _const_operand(g, add)) is not None:
            offset = _per_channel(g, operands[1], axis, 4, channels)
            if offset is not None:
                b, y = offset, add.output[0]
        g.remove(mul, *([add] if add is not None and y != mul.output[0] else []))
        hint = y.rsplit("/", 1)[0] if "/" in y else y
        if not nhwc:
            g.nodes.append(_batchnorm_node(g, source, y, s, b, hint))
        else:
            # Consumers that only turn it back to NCHW read the BatchNormalization; any other gets NHWC.
            back = [n for n in g.consumers(y) if n.op_type == "Transpose" and _attr(n, "perm") == NHWC_TO_NCHW]
            out = back[0].output[0] if back and y not in g.outputs else g.fresh(f"{hint}/nchw")
            g.nodes.append(_batchnorm_node(g, source, out, s, b, hint))
            for t in back:
                g.remove(t)
                for n in g.consumers(t.output[0]):
                    n.input[:] = [out if i == t.output[0] else i for i in n.input]
            if g.consumers(y) or y in g.outputs:
                g.nodes.append(helper.make_node("Transpose", [out], [y], name=g.fresh(f"{hint}/nhwc"),
                                                perm=NCHW_TO_NHWC))
        g.changed()
        applied += 1
    return applied


def _per_batchnorm(rewrite_one: Callable[[Graph, onnx.NodeProto, np.ndarray, np.ndarray], bool]):
    """A pass that tries `rewrite_one(g, bn, s, b)` on every inference BatchNormalization whose parameters
    are constant (s, b: its per-channel y = x*s + b) and counts where it rewrote."""
    def run(g: Graph) -> int:
        applied = 0
        for bn in [n for n in g.nodes if n.op_type == "BatchNormalization"]:
            affine = _affine(g, bn)
            if affine is not None and rewrite_one(g, bn, *affine):
                g.changed()
                applied += 1
        return applied
    run.__doc__ = rewrite_one.__doc__
    return run


@_per_batchnorm
def pass_affine_past_maxpool(g: Graph, bn: onnx.NodeProto, s: np.ndarray, b: np.ndarray) -> bool:
    """BatchNormalization with every scale > 0, then MaxPool -> MaxPool, then the BatchNormalization."""
    pool = g.sole_consumer(bn.output[0])
    if not (s > 0).all() or pool is None or pool.op_type != "MaxPool" or pool.input[0] != bn.output[0]:
        return False
    if len(pool.output) != 1:
        return False                                     # the Indices output would change meaning
    pooled = g.fresh(f"{pool.output[0]}/before_affine")
    pool.input[0], bn.input[0], bn.output[0], pool.output[0] = bn.input[0], pooled, pool.output[0], pooled
    return True


def _flatten_order(g: Graph, start: str) -> tuple[list[onnx.NodeProto], onnx.NodeProto, np.ndarray] | None:
    """Follow `start` (N, C, *spatial) through Transposes that keep the batch first, then one Reshape or
    Flatten, to the MatMul or Gemm that consumes it. Returns (the nodes on the way, that node, and for
    each of its input features the channel it comes from); None where the path is anything else."""
    shape = g.shape(start)
    sizes = static_sizes(shape[1:]) if shape is not None and len(shape) >= 3 else None
    if sizes is None:
        return None
    channel = np.broadcast_to(np.arange(sizes[0]).reshape(-1, *[1] * (len(sizes) - 1)), sizes)
    path: list[onnx.NodeProto] = []
    name = start
    while (node := g.sole_consumer(name)) is not None and node.input[0] == name:
        perm = _attr(node, "perm") if node.op_type == "Transpose" else None
        if perm and perm[0] == 0 and channel.ndim == len(perm) - 1:
            channel = channel.transpose([p - 1 for p in perm[1:]])
        elif channel.ndim > 1 and (node.op_type == "Reshape" or
                                   node.op_type == "Flatten" and _attr(node, "axis", 1) == 1):
            # A reshape whose rows hold one sample's features each is the row-major flatten (the batch
            # stayed first above): the consumer's K = one sample's size (checked below) ensures it.
            channel = channel.reshape(-1)
        elif node.op_type in ("MatMul", "Gemm") and channel.ndim == 1:
            weight = g.const(node.input[1])
            if weight is None or weight.ndim != 2 or _attr(node, "transA", 0):
                return None
            k = weight.shape[1] if _attr(node, "transB", 0) else weight.shape[0]
            return (path, node, channel) if k == channel.size else None
        else:
            return None
        path.append(node)
        name = node.output[0]
    return None


def _optional_const(g: Graph, node: onnx.NodeProto, index: int) -> tuple[bool, np.ndarray | None]:
    """(whether optional input `index` is usable: absent or constant, its value or None if absent)."""
    if len(node.input) <= index or not node.input[index]:
        return True, None
    value = g.const(node.input[index])
    return value is not None, value


def _dot64(vector: np.ndarray, matrix: np.ndarray, rows: int = 1024) -> np.ndarray:
    """vector @ matrix in float64 (no rounding to speak of), a block of rows at a time: fc6's weights in
    float64 at once would be 302 MB more memory, and took 4x longer here."""
    return sum((vector[i:i + rows].astype(np.float64) @ matrix[i:i + rows].astype(np.float64)
                for i in range(0, len(vector), rows)), np.zeros(matrix.shape[1]))


def _fold_into_gemm(g: Graph, gemm: onnx.NodeProto, s: np.ndarray, b: np.ndarray) -> bool:
    """Make `gemm` (MatMul or Gemm, constant weights) compute its function of x*s + b from x."""
    weight = g.const(gemm.input[1])
    if weight is None:
        return False
    trans_b = bool(_attr(gemm, "transB", 0))
    scaled = weight * (s[None, :] if trans_b else s[:, None])
    extra = _dot64(b, weight.T if trans_b else weight)                   # b's share of each output
    if gemm.op_type == "Gemm":
        usable, bias = _optional_const(g, gemm, 2)
        alpha, beta = _attr(gemm, "alpha", 1.0), _attr(gemm, "beta", 1.0)
        if not usable or bias is not None and beta == 0:
            return False
        if bias is None:
            _set_attr(gemm, "beta", 1.0)
            bias, beta = np.zeros_like(extra), 1.0
        gemm.input[:] = [gemm.input[0], g.add_const(scaled, gemm.input[1]),
                         g.add_const((bias + alpha * extra / beta).astype(np.float32), f"{gemm.output[0]}/bias")]
        return True
    add = g.sole_consumer(gemm.output[0])
    operands = _const_operand(g, add) if add is not None and add.op_type == "Add" else None
    gemm.input[1] = g.add_const(scaled, gemm.input[1])
    if add is not None and operands is not None and (offset := g.const(operands[1])) is not None and \
            offset.shape == extra.shape:
        index = list(add.input).index(operands[1])
        add.input[index] = g.add_const((offset + extra).astype(np.float32), operands[1])
    else:
        out = gemm.output[0]
        gemm.output[0] = g.fresh(f"{out}/without_offset")
        g.nodes.append(helper.make_node("Add", [gemm.output[0], g.add_const(extra.astype(np.float32), f"{out}/offset")],
                                        [out], name=g.fresh(f"{out}/offset")))
    return True


@_per_batchnorm
def pass_affine_into_gemm(g: Graph, bn: onnx.NodeProto, s: np.ndarray, b: np.ndarray) -> bool:
    """BatchNormalization -> (Transposes, Reshape/Flatten) -> MatMul/Gemm with constant weights: folded in."""
    found = _flatten_order(g, bn.output[0])
    if found is None:
        return False
    path, gemm, channel = found
    if not _fold_into_gemm(g, gemm, s[channel], b[channel]):
        return False
    (path[0] if path else gemm).input[0] = bn.input[0]
    g.remove(bn)
    return True


@_per_batchnorm
def pass_affine_into_conv(g: Graph, bn: onnx.NodeProto, s: np.ndarray, b: np.ndarray) -> bool:
    """BatchNormalization -> Conv with constant weights, where exact: W' = W*s, bias' = bias + sum(W*b)."""
    conv = g.sole_consumer(bn.output[0])
    if conv is None or conv.op_type != "Conv" or conv.input[0] != bn.output[0]:
        return False
    weight = g.const(conv.input[1])
    usable, bias = _optional_const(g, conv, 2)
    if weight is None or not usable:
        return False
    padded = any(_attr(conv, "pads", [])) or _attr(conv, "auto_pad", "NOTSET") not in ("NOTSET", "VALID")
    if padded and b.any():
        return False                  # the padded border would see the convolution of b where it saw zeros
    groups = _attr(conv, "group", 1)
    out_channels, group_in = weight.shape[:2]
    if group_in * groups != s.size:
        return False
    # The input channel each weight reads: its output channel's group * channels per group + its index.
    channel = (np.arange(out_channels) // (out_channels // groups))[:, None] * group_in + np.arange(group_in)
    spatial = (...,) + (None,) * (weight.ndim - 2)
    extra = (weight.astype(np.float64) * b[channel][spatial]).sum(axis=tuple(range(1, weight.ndim)))
    conv.input[:] = [bn.input[0], g.add_const(weight * s[channel][spatial], conv.input[1]),
                     g.add_const((extra if bias is None else bias + extra).astype(np.float32),
                                 f"{conv.output[0]}/bias")]
    g.remove(bn)
    return True


@_per_batchnorm
def pass_batchnorm_as_conv(g: Graph, bn: onnx.NodeProto, s: np.ndarray, b: np.ndarray) -> bool:
    """Each remaining inference BatchNormalization -> the same per-channel x*s + b as a 1x1 depthwise Conv."""
    shape = g.shape(bn.input[0])
    if shape is None or len(shape) < 3:
        return False
    spatial = len(shape) - 2
    g.remove(bn)
    g.nodes.append(helper.make_node(
        "Conv", [bn.input[0], g.add_const(s.reshape(-1, *[1] * (spatial + 1)), f"{bn.output[0]}/scale"),
                 g.add_const(b, f"{bn.output[0]}/offset")], list(bn.output), name=g.fresh(f"{bn.output[0]}/conv"),
        group=int(s.size), kernel_shape=[1] * spatial))
    return True


# --- repeated channels -----------------------------------------------------------------------------

def _copies(g: Graph, node: onnx.NodeProto) -> tuple[str, int, int] | None:
    """(the one copy, axis, number of copies) where `node`'s output repeats a size-1 axis of its input."""
    if node.op_type == "Tile":
        shape, reps = g.shape(node.input[0]), g.const(node.input[1])
        if shape is None or reps is None or len(reps) != len(shape):
            return None
        tiled = [i for i, r in enumerate(reps) if r != 1]
        if len(tiled) == 1 and shape[tiled[0]] == 1:
            return node.input[0], tiled[0], int(reps[tiled[0]])
    elif node.op_type == "Concat" and len(node.input) > 1 and len(set(node.input)) == 1:
        shape = g.shape(node.input[0])
        if shape is not None and shape[_attr(node, "axis") % len(shape)] == 1:
            return node.input[0], _attr(node, "axis") % len(shape), len(node.input)
    return None


def _same_sizes(a: list[Dim], b: list[Dim]) -> bool:
    """Whether two shapes of a reshape's input and output are the same sizes: equal where static, and
    at most one size on each side not static (the element count a reshape keeps then makes them equal)."""
    static = [isinstance(x, int) and isinstance(y, int) for x, y in zip(a, b)]
    return len(a) == len(b) and all(x == y for x, y, st in zip(a, b, static) if st) and \
        [isinstance(x, int) for x in a] == [isinstance(y, int) for y in b] and static.count(False) <= 1


def _reshaped_axis(before: list[Dim], after: list[Dim], axis: int) -> int | None:
    """Where a reshape from `before` to `after` puts axis `axis`, if it only adds or drops size-1 axes."""
    kept_before = [i for i, d in enumerate(before) if d != 1]
    kept_after = [i for i, d in enumerate(after) if d != 1]
    if axis not in kept_before or not _same_sizes([before[i] for i in kept_before], [after[i] for i in kept_after]):
        return None
    return kept_after[kept_before.index(axis)]


def _reshape_target(sizes: list[Dim], data: list[Dim] | None) -> np.ndarray | None:
    """A Reshape's shape input for these output sizes: a symbolic size is 0 ("copy the input's") where the
    input has the same symbol at the same position, else -1 if it is the only one; None if neither works."""
    target = [d if isinstance(d, int) else 0 if data and i < len(data) and d is not None and d == data[i] else None
              for i, d in enumerate(sizes)]
    if target.count(None) == 1 and 0 not in sizes:
        target[target.index(None)] = -1
    return None if None in target else np.array(target, np.int64)


def _copies_path(g: Graph, name: str, axis: int, copies: int) -> tuple[list, list] | None:
    """From a tensor whose `axis` holds `copies` copies of one slice, through ops that treat every copy
    alike, to a Conv that reads the copies as its input channels. Returns (the nodes, and the inputs to
    replace so that they run on the one copy: (node, input index, new value)); None if no such path."""
    path, edits = [], []
    while (node := g.sole_consumer(name)) is not None and node.input[0] == name:
        shape, out_shape = g.shape(name), g.shape(node.output[0])
        if shape is None or out_shape is None:
            return None
        path.append(node)
        if node.op_type == "Conv":
            weight = g.const(node.input[1])
            if axis != 1 or _attr(node, "group", 1) != 1 or weight is None or weight.shape[1] != copies:
                return None
            edits.append((node, 1, weight.sum(axis=1, keepdims=True)))
            return path, edits
        if node.op_type == "Transpose":
            axis = _attr(node, "perm").index(axis)
        elif node.op_type == "Reshape":
            new_axis = _reshaped_axis(shape, out_shape, axis)
            if new_axis is None:
                return None
            target = _reshape_target([1 if i == new_axis else d for i, d in enumerate(out_shape)], None)
            if target is None:
                return None
            edits.append((node, 1, target))           # the one copy's shape
            axis = new_axis
        elif node.op_type == "Resize":
            usable, scales = _optional_const(g, node, 2)
            usable_sizes, sizes = _optional_const(g, node, 3)
            if not (usable and usable_sizes) or _attr(node, "axes") is not None or (scales is None) == (sizes is None):
                return None
            if scales is not None and scales[axis] != 1 or sizes is not None and sizes[axis] != copies:
                return None
            if sizes is not None:
                edits.append((node, 3, np.where(np.arange(len(sizes)) == axis, 1, sizes)))
        elif node.op_type in _ELEMENTWISE_BINARY:
            operands = _const_operand(g, node)
            if operands is None or operands[0] != name:
                return None
            const = g.const(operands[1])
            if const is None:
                return None
            const_shape = list(const.shape)
            if len(const_shape) > len(shape) or ([1] * (len(shape) - len(const_shape)) + const_shape)[axis] != 1:
                return None
        elif node.op_type not in _CHANNELWISE_UNARY:
            return None
        name = node.output[0]
    return None


def pass_repeat_into_conv(g: Graph) -> int:
    """A tensor whose channels are copies of one, through ops that treat them alike, into a Conv -> the
    same ops on the one channel and the Conv with its kernel summed over the copies."""
    applied = 0
    for start in list(g.nodes):
        found = _copies(g, start)
        path_and_edits = _copies_path(g, start.output[0], found[1], found[2]) if found is not None else None
        if found is None or path_and_edits is None:
            continue
        path, edits = path_and_edits
        for node, index, value in edits:
            node.input[index] = g.add_const(value, node.input[index] or f"{node.output[0]}/input{index}")
        path[0].input[0] = found[0]
        g.changed()
        applied += 1
    return applied


# --- resize as two matrix products --------------------------------------------------------------------

RESIZE_MODES = ("linear", "nearest", "cubic")


def _resize_matrix(resize: onnx.NodeProto, model: onnx.ModelProto, size: int, scale: float, axis: int) -> np.ndarray:
    """The (size * scale) x size matrix of this Resize along one spatial axis: the node itself, run by
    onnxruntime on an identity matrix with that axis' scale alone (the other spatial axis scaled by 1,
    which every mode and coordinate transformation leaves as it is), so its exact weights are used."""
    scales = np.ones(4, np.float32)
    scales[axis] = scale
    # roi: empty (opsets before 13 require the input; tf_crop_and_resize, which reads it, is not rewritten).
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], **{a.name: helper.get_attribute_value(a)
                                                                         for a in resize.attribute})
    probe = helper.make_model(
        helper.make_graph([node], "resize", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(scales, "scales"),
                                       numpy_helper.from_array(np.zeros(0, np.float32), "roi")]),
        opset_imports=model.opset_import, ir_version=model.ir_version)
    resized = cpu_session(probe).run(None, {"x": np.eye(size, dtype=np.float32)[None, None]})[0][0, 0]
    return resized if axis == 2 else resized.T       # rows: output positions; columns: input positions


def pass_resize_as_matmul(g: Graph) -> int:
    """A Resize of the two spatial axes of an NCHW tensor with constant scales -> rows @ x @ columns^T."""
    applied = 0
    for resize in [n for n in g.nodes if n.op_type == "Resize"]:
        usable, scales = _optional_const(g, resize, 2)
        shape = g.shape(resize.input[0])
        if not usable or scales is None or len(resize.input) > 3 and resize.input[3] or len(scales) != 4:
            continue                         # (opset 10's Resize has its scales second: scales is None)
        sizes = static_sizes(shape[2:]) if shape is not None and len(shape) == 4 else None
        if sizes is None:
            continue
        if list(scales[:2]) != [1, 1] or _attr(resize, "mode", "nearest") not in RESIZE_MODES or \
                _attr(resize, "antialias", 0) or _attr(resize, "axes") is not None or \
                _attr(resize, "coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize":
            continue
        rows = _resize_matrix(resize, g.model, sizes[0], float(scales[2]), 2)
        columns = _resize_matrix(resize, g.model, sizes[1], float(scales[3]), 3)
        out = resize.output[0]
        half = g.fresh(f"{out}/rows")
        g.remove(resize)
        g.nodes += [helper.make_node("MatMul", [g.add_const(rows, f"{out}/row_weights"), resize.input[0]], [half],
                                     name=g.fresh(f"{out}/rows")),
                    helper.make_node("MatMul", [half, g.add_const(np.ascontiguousarray(columns.T),
                                                                  f"{out}/column_weights")], [out],
                                     name=g.fresh(f"{out}/columns"))]
        g.changed()
        applied += 1
    return applied


# --- sizes known statically ------------------------------------------------------------------------

def _shape_values(g: Graph) -> dict[str, tuple[np.ndarray, np.dtype]]:
    """Values of the small integer tensors that Shape ops feed: object arrays of sizes (ints) and symbols
    (equal symbols are equal sizes; None unknown), with their ONNX element types as numpy dtypes."""
    values: dict[str, tuple[np.ndarray, np.dtype]] = {}

    def value(name: str) -> tuple[np.ndarray, np.dtype] | None:
        tensor = g.initializers.get(name)
        if tensor is not None and helper.tensor_dtype_to_np_dtype(tensor.data_type).kind in "iu" and \
                (array := g.const(name)) is not None:
            return array.astype(object), array.dtype
        return values.get(name)

    for node in g.nodes:
        ins = [value(i) for i in node.input]
        known = [v for v in ins if v is not None]
        arrays = [v[0] for v in known]
        op, out = node.op_type, node.output[0] if node.output else ""
        if op == "Shape" and (shape := g.shape(node.input[0])) is not None:
            values[out] = np.array(shape, dtype=object)[_attr(node, "start", 0):_attr(node, "end")], np.dtype(np.int64)
        elif not ins or None in ins:
            continue
        elif op == "Cast" and (to := helper.tensor_dtype_to_np_dtype(_attr(node, "to"))).kind in "iu":
            values[out] = arrays[0], np.dtype(to)
        elif op == "Gather" and _attr(node, "axis", 0) == 0:
            values[out] = np.take(arrays[0], arrays[1].astype(np.int64), axis=0), known[0][1]
        elif op == "Slice" and arrays[0].ndim == 1 and len(arrays) in (3, 4, 5) and \
                (len(arrays) < 4 or list(arrays[3]) in ([0], [-1])) and (len(arrays) < 5 or list(arrays[4]) == [1]):
            values[out] = arrays[0][int(arrays[1][0]):int(arrays[2][0])], known[0][1]
        elif op == "Concat" and _attr(node, "axis") == 0 and all(a.ndim == 1 for a in arrays):
            values[out] = np.concatenate(arrays), known[0][1]
    return values


def pass_constant_folding(g: Graph) -> int:
    """Sizes computed by Shape ops -> constants where static (see the module docstring); then every node
    fed by constants alone is folded. Returns how many nodes fewer the graph has."""
    before = len(g.nodes)
    values = _shape_values(g)
    for node in [n for n in g.nodes if n.op_type == "Reshape" and n.input[1] in values]:
        target = _reshape_target(list(values[node.input[1]][0]), g.shape(node.input[0]))
        if target is not None and not _attr(node, "allowzero", 0):
            node.input[1] = g.add_const(target, f"{node.input[1]}/static")
    for name, (array, dtype) in values.items():
        producer = g.producer(name)
        if producer is not None and all(isinstance(v, int) for v in array) and g.consumers(name):
            g.remove(producer)
            g.set_const(name, array.astype(dtype))
    g.commit()
    fold_constants(g.model)
    g.reload()
    return before - len(g.nodes)


PASSES: dict[str, Callable[[Graph], int]] = dict(zip(REWRITES, (
    pass_constant_folding, pass_repeat_into_conv, pass_resize_as_matmul, pass_batchnorm, pass_affine_past_maxpool,
    pass_affine_into_gemm, pass_affine_into_conv, pass_batchnorm_as_conv)))


def rewrite(model: onnx.ModelProto, passes: Sequence[str] = REWRITES) -> dict[str, int]:
    """Apply the named passes in export.REWRITES' order, in place; returns how often each applied."""
    unknown = set(passes) - set(PASSES)
    if unknown:
        raise ValueError(f"unknown rewrite(s) {sorted(unknown)}: use {', '.join(PASSES)}")
    applied = {}
    for name in (p for p in PASSES if p in passes):
        g = Graph(model)
        applied[name] = PASSES[name](g)
        g.commit()
    return applied
