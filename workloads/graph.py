"""The hardware-relevant layer graph of a model, extracted with `torch.fx`.

`extract_graph(model, input_shape)` traces the model symbolically, propagates shapes for one
image (`ShapeProp`) and returns a `LayerGraph`: one `Layer` per tensor-producing node, in
topological order, with per-image shapes and forward MAC counts. Only conv and fc layers do
multiply-accumulates; every other kind has `macs_fwd == 0` (its element-wise work is the
special-function unit's, not the tensor cores').
"""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass
from typing import Any, Final

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn import functional

LAYER_KINDS: Final = frozenset(
    {
        "input",
        "conv",
        "fc",
        "relu",
        "maxpool",
        "avgpool",
        "add",
        "batchnorm",
        "flatten",
        "identity",
        "dropout",
        "output",
    }
)
MAC_KINDS: Final = frozenset({"conv", "fc"})

Pair = tuple[int, int]


class GraphError(ValueError):
    """A model the layer graph cannot describe, or a malformed serialised graph."""


@dataclass(frozen=True)
class Layer:
    """One node of the layer graph.

    Shapes are per image: (C, H, W) for feature maps, (F,) for vectors. `kernel`, `stride` and
    `padding` are (h, w) pairs for conv and pooling layers and None otherwise; `groups` is the
    conv's group count (C_in for depthwise) and 1 otherwise. `inputs` names the producing layers.
    """

    name: str
    kind: str
    inputs: tuple[str, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: Pair | None = None
    stride: Pair | None = None
    padding: Pair | None = None
    groups: int = 1
    macs_fwd: int = 0

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise GraphError(f"layer {self.name!r}: unknown kind {self.kind!r}")

    @property
    def in_channels(self) -> int:
        return self.in_shape[0]

    @property
    def out_channels(self) -> int:
        return self.out_shape[0]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("inputs", "in_shape", "out_shape", "kernel", "stride", "padding"):
            d[k] = None if d[k] is None else list(d[k])
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Layer:
        def pair(v: Any) -> Pair | None:
            return None if v is None else (int(v[0]), int(v[1]))

        try:
            return Layer(
                name=str(d["name"]),
                kind=str(d["kind"]),
                inputs=tuple(str(s) for s in d["inputs"]),
                in_shape=tuple(int(s) for s in d["in_shape"]),
                out_shape=tuple(int(s) for s in d["out_shape"]),
                kernel=pair(d.get("kernel")),
                stride=pair(d.get("stride")),
                padding=pair(d.get("padding")),
                groups=int(d.get("groups", 1)),
                macs_fwd=int(d.get("macs_fwd", 0)),
            )
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise GraphError(f"malformed layer entry {d!r}: {e}") from None


@dataclass(frozen=True)
class LayerGraph:
    """A model's layers in topological order, with per-image shapes and MAC counts."""

    model_name: str
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for layer in self.layers:
            if layer.name in seen:
                raise GraphError(f"duplicate layer name {layer.name!r}")
            for src in layer.inputs:
                if src not in seen:
                    raise GraphError(
                        f"layer {layer.name!r} reads {src!r}, which is not an earlier layer"
                    )
            seen.add(layer.name)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer named {name!r} in {self.model_name}")

    @property
    def mac_layers(self) -> tuple[Layer, ...]:
        return tuple(layer for layer in self.layers if layer.kind in MAC_KINDS)

    @property
    def macs_fwd_per_image(self) -> int:
        return sum(layer.macs_fwd for layer in self.layers)

    def needs_data_gradient(self, name: str) -> bool:
        """Whether a MAC layer's BP (the gradient w.r.t. its input) has to be computed.

        BP propagates the error to a layer's input; it is only needed if some MAC layer (with
        weights to train) lies upstream. The first conv reads the image (through parameterless
        ops at most), which needs no gradient, so it has no BP.
        """
        by_name = {layer.name: layer for layer in self.layers}
        stack = list(by_name[name].inputs)
        visited: set[str] = set()
        while stack:
            cur = stack.pop()
            if cur in visited:
                continue
            visited.add(cur)
            if by_name[cur].kind in MAC_KINDS:
                return True
            stack.extend(by_name[cur].inputs)
        return False

    @property
    def macs_train_per_image_dense(self) -> int:
        """Dense MACs of one training step per image: FP + BP (data gradient) + WU.

        Per MAC layer: FP = `macs_fwd`; WU (weight gradient) = `macs_fwd`; BP = `macs_fwd`,
        except for layers with no MAC layer upstream (the first conv), whose BP is counted as 0
        because the input image needs no gradient. See `needs_data_gradient`.
        """
        total = 0
        for layer in self.mac_layers:
            bp = layer.macs_fwd if self.needs_data_gradient(layer.name) else 0
            total += 2 * layer.macs_fwd + bp
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "input_shape": list(self.input_shape),
            "layers": [layer.to_dict() for layer in self.layers],
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> LayerGraph:
        try:
            return LayerGraph(
                model_name=str(d["model_name"]),
                input_shape=tuple(int(s) for s in d["input_shape"]),
                layers=tuple(Layer.from_dict(x) for x in d["layers"]),
            )
        except (KeyError, TypeError) as e:
            raise GraphError(f"malformed layer graph: missing or bad field {e}") from None


def _pair(v: int | tuple[int, ...]) -> Pair:
    if isinstance(v, int):
        return (v, v)
    return (int(v[0]), int(v[1]))


def _shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        raise GraphError(f"node {node.name!r} does not produce a single tensor")
    return tuple(int(s) for s in meta.shape[1:])  # drop the batch dimension


_MODULE_KINDS: Final[tuple[tuple[type[nn.Module], str], ...]] = (
    (nn.Conv2d, "conv"),
    (nn.Linear, "fc"),
    (nn.ReLU, "relu"),
    (nn.MaxPool2d, "maxpool"),
    (nn.AvgPool2d, "avgpool"),
    (nn.AdaptiveAvgPool2d, "avgpool"),
    (nn.BatchNorm2d, "batchnorm"),
    (nn.BatchNorm1d, "batchnorm"),
    (nn.Flatten, "flatten"),
    (nn.Identity, "identity"),
    (nn.Dropout, "dropout"),
)
_FUNCTION_KINDS: Final[dict[Any, str]] = {
    operator.add: "add",
    torch.add: "add",
    functional.relu: "relu",
    torch.relu: "relu",
    torch.flatten: "flatten",
    functional.adaptive_avg_pool2d: "avgpool",
    functional.avg_pool2d: "avgpool",
    functional.max_pool2d: "maxpool",
}
_METHOD_KINDS: Final[dict[str, str]] = {
    "add": "add",
    "relu": "relu",
    "view": "flatten",
    "flatten": "flatten",
    "reshape": "flatten",
}


def _module_layer(mod: nn.Module, kind: str) -> dict[str, Any]:
    """Kernel/stride/padding/groups fields of a module-backed layer."""
    if isinstance(mod, nn.Conv2d):
        if not isinstance(mod.padding, tuple):
            raise GraphError(f"conv padding {mod.padding!r} is not supported (use integers)")
        return {
            "kernel": _pair(mod.kernel_size),
            "stride": _pair(mod.stride),
            "padding": _pair(mod.padding),
            "groups": int(mod.groups),
        }
    if isinstance(mod, nn.MaxPool2d | nn.AvgPool2d):
        return {
            "kernel": _pair(mod.kernel_size),
            "stride": _pair(mod.stride if mod.stride is not None else mod.kernel_size),
            "padding": _pair(mod.padding),
        }
    return {}


def _macs(kind: str, fields: dict[str, Any], in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
    if kind == "conv":
        c_out, h_out, w_out = out_shape
        kh, kw = fields["kernel"]
        return c_out * h_out * w_out * (in_shape[0] // fields["groups"]) * kh * kw
    if kind == "fc":
        return in_shape[-1] * out_shape[-1]
    return 0


def extract_graph(
    model: nn.Module, input_shape: tuple[int, ...], model_name: str = ""
) -> LayerGraph:
    """Trace `model` with torch.fx and propagate one image of `input_shape` (C, H, W) through it.

    Layer names are the module paths for module calls (e.g. `features.conv1`) and fx node names
    for function calls (e.g. `add_1`). The model is put in eval mode for the shape pass (so
    batch norm accepts one image) and its mode is restored afterwards.
    """
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # fx raises many types for untraceable control flow
        raise GraphError(f"torch.fx cannot trace {type(model).__name__}: {e}") from e
    was_training = model.training
    gm.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(torch.zeros((1, *input_shape)))
    model.train(was_training)

    modules = dict(gm.named_modules())
    names: dict[fx.Node, str] = {}
    layers: list[Layer] = []
    used: set[str] = set()
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            raise GraphError(
                f"node {node.name!r}: parameters used outside modules are not supported"
            )
        fields: dict[str, Any] = {}
        srcs = [a for a in node.all_input_nodes]
        if node.op == "placeholder":
            kind, name = "input", node.name
        elif node.op == "output":
            kind, name = "output", "output"
        elif node.op == "call_module":
            mod = modules[node.target]
            kind = next((k for t, k in _MODULE_KINDS if isinstance(mod, t)), "")
            if not kind:
                raise GraphError(f"module {node.target!r} ({type(mod).__name__}) is not supported")
            name = str(node.target)
            fields = _module_layer(mod, kind)
        elif node.op == "call_function":
            kind = _FUNCTION_KINDS.get(node.target, "")
            if not kind:
                raise GraphError(f"function {node.target!r} (node {node.name!r}) is not supported")
            name = node.name
        elif node.op == "call_method":
            kind = _METHOD_KINDS.get(str(node.target), "")
            if not kind:
                raise GraphError(f"method .{node.target}() (node {node.name!r}) is not supported")
            name = node.name
        else:  # pragma: no cover - fx has no other ops today
            raise GraphError(f"node {node.name!r}: unsupported fx op {node.op!r}")
        if name in used:  # a module called twice: keep names unique
            i = 1
            while f"{name}#{i}" in used:
                i += 1
            name = f"{name}#{i}"
        used.add(name)
        names[node] = name
        if node.op == "output":
            in_shape = _shape(srcs[0])
            out_shape = in_shape
        elif node.op == "placeholder":
            in_shape = out_shape = tuple(int(s) for s in input_shape)
        else:
            in_shape = _shape(srcs[0])
            out_shape = _shape(node)
        layers.append(
            Layer(
                name=name,
                kind=kind,
                inputs=tuple(names[s] for s in srcs),
                in_shape=in_shape,
                out_shape=out_shape,
                macs_fwd=_macs(kind, fields, in_shape, out_shape),
                **fields,
            )
        )
    return LayerGraph(model_name, tuple(int(s) for s in input_shape), tuple(layers))


def graph_for(name: str, in_channels: int = 3, num_classes: int = 10) -> LayerGraph:
    """The layer graph of a named model at its default input size."""
    from workloads import models

    shape = models.default_input_shape(name, in_channels)
    return extract_graph(models.build(name, num_classes, in_channels), shape, name)
