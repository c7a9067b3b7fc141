"""ONNX graph surgery after tf2onnx: attach weights, fix Resize scales, name inputs and outputs.

attach_weights: the fast conversion path (export.convert) hands tf2onnx a function whose weights
are graph inputs instead of frozen constants, so neither TensorFlow's freezing nor
tf2onnx's optimiser (which deep-copies every constant several times per pass) ever
touches the 233 MB of AlexNet weights. What tf2onnx could not fold at conversion time
(the HWIO->OIHW kernel transposes, the BatchNorm scale/offset arithmetic) is left as
nodes whose inputs are all weights. `attach_weights` evaluates exactly those nodes
once, in onnxruntime, and replaces them by initializers: the result is an ordinary
self-contained model with no weight inputs.

fix_resize_scales: see its docstring (a tf2onnx rounding bug that breaks AlexNet's resize).

Imports neither TensorFlow nor tf2onnx: it is pure ONNX + onnxruntime.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

# Folding these would freeze one random draw into the model.
NONDETERMINISTIC_OPS = frozenset({
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli",
})


def _has_subgraph(node: onnx.NodeProto) -> bool:
    # A subgraph may read outer-scope tensors that are not listed as the node's inputs.
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)


def _constant_nodes(graph: onnx.GraphProto, constants: set[str]) -> list[onnx.NodeProto]:
    """Nodes (in graph order, which tf2onnx leaves topologically sorted) computable from `constants` alone."""
    known = set(constants)
    folded = []
    for node in graph.node:
        if node.op_type in NONDETERMINISTIC_OPS or _has_subgraph(node):
            continue
        if all(name in known for name in node.input if name):
            folded.append(node)
            known.update(node.output)
    return folded


def cpu_session(model: onnx.ModelProto) -> ort.InferenceSession:
    """A session that runs each node as written (no fusions), for evaluating parts of a graph."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def attach_weights(model: onnx.ModelProto, weights: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """Turn the graph inputs named in `weights` into initializers and fold the nodes fed only by constants.

    The constant nodes are evaluated in one onnxruntime run with graph optimisations off,
    so each node is computed as written.
    """
    graph = model.graph
    missing = set(weights) - {i.name for i in graph.input}
    if missing:
        raise ValueError(f"weights {sorted(missing)[:3]} are not inputs of the converted graph")
    initializers = {t.name: t for t in graph.initializer}
    folded = _constant_nodes(graph, set(weights) | set(initializers))
    folded_ids = {id(n) for n in folded}
    kept = [n for n in graph.node if id(n) not in folded_ids]
    produced = {out for n in folded for out in n.output}
    needed = {name for n in kept for name in n.input} | {o.name for o in graph.output}
    to_compute = sorted(needed & produced)

    computed: dict[str, np.ndarray] = {}
    if to_compute:
        used = {name for n in folded for name in n.input}
        fold_inputs = [i for i in graph.input if i.name in weights and i.name in used]
        fold_graph = helper.make_graph(
            folded, "fold", fold_inputs,
            [helper.make_empty_tensor_value_info(name) for name in to_compute],
            initializer=[t for name, t in initializers.items() if name in used])
        fold_model = helper.make_model(fold_graph, opset_imports=model.opset_import, ir_version=model.ir_version)
        session = cpu_session(fold_model)
        feeds = {i.name: np.ascontiguousarray(weights[i.name]) for i in fold_inputs}
        computed = dict(zip(to_compute, session.run(to_compute, feeds)))

    still_used = {name for n in kept for name in n.input} | {o.name for o in graph.output}
    # In place: the initializers kept are not copied (copying protobufs that hold 233 MB takes seconds).
    for index in reversed(range(len(graph.initializer))):
        if graph.initializer[index].name not in still_used:
            del graph.initializer[index]
    graph.initializer.extend(numpy_helper.from_array(np.asarray(weights[name]), name)
                             for name in sorted(still_used & set(weights)))
    graph.initializer.extend(numpy_helper.from_array(np.asarray(value), name) for name, value in computed.items())
    del graph.node[:]
    graph.node.extend(kept)
    inputs = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)
    produced_now = {out for n in kept for out in n.output} | {t.name for t in graph.initializer}
    value_info = [v for v in graph.value_info if v.name in produced_now]
    del graph.value_info[:]
    graph.value_info.extend(value_info)
    return model


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold every node fed by initializers alone (attach_weights with no weights to attach)."""
    return attach_weights(model, {})


def fix_resize_scales(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> None:
    """Make constant Resize scales give the intended size under float32 rounding.

    tf2onnx turns a fixed-size resize into scales = size / input_size in float32, and
    onnxruntime sizes the output as int(input_size * scale) in float32: 28 * float32(227/28)
    is 226.99998, so the graph resizes 28 -> 226 and AlexNet's Flatten then fails. Each
    such scale is nudged up to the first float32 whose exact product with the input size
    reaches the intended size: onnxruntime's float32 product then does too, and so does onnx
    shape inference's (28 * float32(67/28) rounds to 67 in float32 but is 66.99999 exactly:
    onnxruntime made 67 px and shape inference 66, which the rewrites and bench's operation
    counts, both reading inferred shapes, would have got wrong).

    The Resize inputs' sizes are data-dependent in tf2onnx's graph (shape inference
    cannot see through the Shape/Concat/Reshape it emits), so they are measured by
    running the graph once on `feeds` (one sample of every graph input).
    """
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    resizes = [n for n in graph.node if n.op_type == "Resize" and len(n.input) >= 3 and n.input[2] in initializers]
    if not resizes:
        return
    probe_outputs = [n.input[0] for n in resizes]
    needed, nodes = set(probe_outputs), []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            nodes.append(node)
            needed.update(node.input)
    probe = helper.make_model(
        helper.make_graph(nodes[::-1], "probe", [i for i in graph.input if i.name in needed],
                          [helper.make_empty_tensor_value_info(name) for name in probe_outputs],
                          initializer=[t for t in graph.initializer if t.name in needed]),
        opset_imports=model.opset_import, ir_version=model.ir_version)
    used_feeds = {i.name: feeds[i.name] for i in probe.graph.input}
    shapes = [a.shape for a in cpu_session(probe).run(probe_outputs, used_feeds)]
    for node, shape in zip(resizes, shapes):
        proto = initializers[node.input[2]]
        scales = numpy_helper.to_array(proto).astype(np.float32)
        if scales.size != len(shape):
            continue
        for axis, (dim, scale) in enumerate(zip(shape, scales)):
            target = round(float(dim) * float(scale))
            # The exact product (a float64 one is exact here) reaching the size: then onnxruntime's float32
            # product does too, and so does onnx shape inference's, which later steps rely on.
            while int(np.float64(dim) * np.float64(scale)) < target:
                scale = np.nextafter(scale, np.float32(np.inf), dtype=np.float32)
            scales[axis] = scale
        proto.CopyFrom(numpy_helper.from_array(scales, proto.name))


def rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename a tensor everywhere it appears in `graph`."""
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new


def name_io(model: onnx.ModelProto, input_name: str, output_name: str) -> None:
    """Our names for the one input and output, and a named dynamic batch dimension ("batch")."""
    graph = model.graph
    rename_value(graph, graph.input[0].name, input_name)
    rename_value(graph, graph.output[0].name, output_name)
    for value in (graph.input[0], graph.output[0]):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = "batch"
