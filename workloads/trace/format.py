"""The trace file: a versioned `.npz` (read with allow_pickle=False) documented in docs/traces.md.

Layout (schema version 1):
- `schema`: JSON string {"format": "fp8sim-trace", "version": 1}.
- `header`: JSON string: layer graph, batch, gated layers, Lasso group shape and layers,
  captured iterations, codes description, provenance metadata, and `arrays`, the declaration
  (shape, dtype, packed) of every other array in the file.
- `sha256`: hex digest over the header string and every declared array's name and bytes.
- masks, bit-packed with np.packbits (C order, big-endian bit order, zero padding):
  `i{k}.gate.{layer}` (batch, n_gate_groups, H_out, W_out), True = conditional path computed;
  `i{k}.wgroup.{layer}` (C_out, n_in_groups), True = the weight group is nonzero;
  `i{k}.skip` (batch,), True = the image skipped BP and WU.
- optional codes of one iteration: `codes.inputs` (FP8 codes of the input batch),
  `codes.targets` (int64 labels), `codes.weight.{layer}`, `codes.error.{layer}` (FP8 codes).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from workloads.graph import GraphError, LayerGraph
from workloads.trace.accounting import GateInfo

SCHEMA_NAME: Final = "fp8sim-trace"
SCHEMA_VERSION: Final = 1


class TraceError(ValueError):
    """A trace that cannot be trusted: unreadable, truncated, altered or inconsistent."""


@dataclass(frozen=True)
class IterationRecord:
    """Sparsity of one captured training step (True = work issued, except `skip`)."""

    step: int
    epoch: int
    gates: dict[str, np.ndarray]
    wgroups: dict[str, np.ndarray]
    skip: np.ndarray


@dataclass(frozen=True)
class TensorCodes:
    """FP8 codes of one iteration's tensors, for exact replay by the functional simulator.

    `formats` maps "input", "weight", "error" to format names of simulator.numerics; weights
    and errors are keyed by MAC layer (errors are the gradients w.r.t. the layer's output).
    """

    step: int
    formats: dict[str, str]
    inputs: np.ndarray
    targets: np.ndarray
    weights: dict[str, np.ndarray]
    errors: dict[str, np.ndarray]


@dataclass(frozen=True)
class Trace:
    graph: LayerGraph
    batch: int
    gate_layers: dict[str, GateInfo]
    group_in: int
    lasso_layers: tuple[str, ...]
    iterations: tuple[IterationRecord, ...]
    codes: TensorCodes | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def gate_shape(self, layer: str) -> tuple[int, ...]:
        lay = self.graph.layer(layer)
        c, h, w = lay.out_shape
        return (self.batch, -(-c // self.gate_layers[layer].channel_group), h, w)

    def wgroup_shape(self, layer: str) -> tuple[int, int]:
        lay = self.graph.layer(layer)
        return (lay.out_channels, -(-lay.in_channels // self.group_in))


# ---- writing ----------------------------------------------------------------------------


def _digest(header_json: str, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(header_json.encode())
    for name in sorted(arrays):
        h.update(name.encode() + b"\0")
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()


def _pack(mask: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(mask, dtype=bool).reshape(-1))


def _validate_structure(t: Trace) -> None:
    """Raise TraceError on the first inconsistency between masks and the graph."""
    mac = {lay.name: lay for lay in t.graph.mac_layers}
    for name, info in t.gate_layers.items():
        lay = mac.get(name)
        if lay is None or lay.kind != "conv" or lay.groups != 1:
            raise TraceError(f"gated layer {name!r} is not a dense conv of the graph")
        if not 0 < info.base_channels < lay.in_channels or info.channel_group < 1:
            raise TraceError(f"gated layer {name!r}: bad split {info} for {lay.in_channels} inputs")
    for name in t.lasso_layers:
        lay = mac.get(name)
        if lay is None or lay.kind != "conv" or lay.groups != 1:
            raise TraceError(f"Lasso layer {name!r} is not a dense conv of the graph")
    if t.batch < 1 or t.group_in < 1:
        raise TraceError(f"batch ({t.batch}) and group_in ({t.group_in}) must be positive")
    for k, it in enumerate(t.iterations):
        where = f"iteration {k} (step {it.step})"
        if set(it.gates) != set(t.gate_layers):
            raise TraceError(
                f"{where}: gate bitmaps for {sorted(it.gates)} but gated layers are "
                f"{sorted(t.gate_layers)}"
            )
        if set(it.wgroups) != set(t.lasso_layers):
            raise TraceError(f"{where}: weight-group bitmaps do not match the Lasso layers")
        for name, g in it.gates.items():
            if g.shape != t.gate_shape(name):
                raise TraceError(
                    f"{where}: gate bitmap of {name!r} has shape {g.shape}, "
                    f"expected {t.gate_shape(name)}"
                )
        for name, g in it.wgroups.items():
            if g.shape != t.wgroup_shape(name):
                raise TraceError(
                    f"{where}: weight-group bitmap of {name!r} has shape {g.shape}, "
                    f"expected {t.wgroup_shape(name)}"
                )
        if it.skip.shape != (t.batch,):
            raise TraceError(
                f"{where}: skip vector has shape {it.skip.shape}, expected ({t.batch},)"
            )
    if t.codes is not None:
        c = t.codes
        if c.inputs.shape != (t.batch, *t.graph.input_shape):
            raise TraceError(
                f"codes: inputs have shape {c.inputs.shape}, expected "
                f"{(t.batch, *t.graph.input_shape)}"
            )
        if c.targets.shape[0] != t.batch:
            raise TraceError(f"codes: {c.targets.shape[0]} targets for a batch of {t.batch}")
        for kind, d in (("weight", c.weights), ("error", c.errors)):
            for name in d:
                if name not in mac:
                    raise TraceError(f"codes: {kind} of {name!r}, which is not a MAC layer")
            for name, arr in c.errors.items():
                want = (t.batch, *mac[name].out_shape)
                if arr.shape != want:
                    raise TraceError(
                        f"codes: error of {name!r} has shape {arr.shape}, expected {want}"
                    )


def save_trace(t: Trace, path: str | Path) -> Path:
    """Validate and write `t` (atomically: a temporary file renamed into place)."""
    _validate_structure(t)
    arrays: dict[str, np.ndarray] = {}
    decl: dict[str, dict[str, Any]] = {}

    def put(name: str, arr: np.ndarray, packed: bool) -> None:
        arr = np.asarray(arr)
        decl[name] = {
            "shape": list(arr.shape),
            "dtype": "bool" if packed else arr.dtype.str,
            "packed": packed,
        }
        arrays[name] = _pack(arr) if packed else np.ascontiguousarray(arr)

    for k, it in enumerate(t.iterations):
        for name, g in it.gates.items():
            put(f"i{k}.gate.{name}", g, True)
        for name, g in it.wgroups.items():
            put(f"i{k}.wgroup.{name}", g, True)
        put(f"i{k}.skip", it.skip, True)
    codes_hdr = None
    if t.codes is not None:
        c = t.codes
        put("codes.inputs", c.inputs, False)
        put("codes.targets", c.targets, False)
        for name, a in c.weights.items():
            put(f"codes.weight.{name}", a, False)
        for name, a in c.errors.items():
            put(f"codes.error.{name}", a, False)
        codes_hdr = {
            "step": c.step,
            "formats": c.formats,
            "weights": list(c.weights),
            "errors": list(c.errors),
        }
    header = {
        "graph": t.graph.to_dict(),
        "batch": t.batch,
        "gate_layers": {
            n: {"base_channels": g.base_channels, "channel_group": g.channel_group}
            for n, g in t.gate_layers.items()
        },
        "group_in": t.group_in,
        "lasso_layers": list(t.lasso_layers),
        "iterations": [{"step": it.step, "epoch": it.epoch} for it in t.iterations],
        "codes": codes_hdr,
        "meta": t.meta,
        "arrays": decl,
    }
    header_json = json.dumps(header, sort_keys=True)
    schema = json.dumps({"format": SCHEMA_NAME, "version": SCHEMA_VERSION})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(
            tmp,
            schema=np.array(schema),
            header=np.array(header_json),
            sha256=np.array(_digest(header_json, arrays)),
            **arrays,
        )
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a trace is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# ---- reading ----------------------------------------------------------------------------


def _json_scalar(npz: Any, key: str, path: Path) -> Any:
    if key not in npz.files:
        raise TraceError(f"{path}: no {key!r} entry; not an fp8sim trace")
    arr = npz[key]
    if arr.dtype.kind != "U" or arr.shape != ():
        raise TraceError(f"{path}: entry {key!r} is not a string")
    return str(arr[()])


def _unpack(raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    bits = np.unpackbits(raw, count=n).astype(bool)
    return bits.reshape(shape)


def load_trace(path: str | Path) -> Trace:
    """Read and validate a trace; any problem raises TraceError naming the first one found."""
    path = Path(path)
    if not path.is_file():
        what = "not a regular file" if path.exists() else "not found"
        raise TraceError(f"trace file {what}: {path}")
    with path.open("rb") as f:
        magic = f.read(4)
    # numpy takes anything that is not a zip or .npy file for a pickle, and its refusal
    # suggests allow_pickle: say what the file is not instead
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise TraceError(f"{path}: not an .npz archive (a trace is zipped arrays)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            schema_s = _json_scalar(npz, "schema", path)
            try:
                schema = json.loads(schema_s)
            except json.JSONDecodeError:
                raise TraceError(f"{path}: schema entry is not JSON") from None
            if schema.get("format") != SCHEMA_NAME:
                raise TraceError(f"{path}: format {schema.get('format')!r} is not {SCHEMA_NAME!r}")
            version = schema.get("version")
            if version != SCHEMA_VERSION:
                raise TraceError(
                    f"{path}: schema version {version!r}; this fp8sim reads version "
                    f"{SCHEMA_VERSION} only"
                )
            header_json = _json_scalar(npz, "header", path)
            stored_hash = _json_scalar(npz, "sha256", path)
            try:
                header = json.loads(header_json)
            except json.JSONDecodeError:
                raise TraceError(f"{path}: header is not valid JSON") from None
            decl = header.get("arrays")
            if not isinstance(decl, dict):
                raise TraceError(f"{path}: header has no array declarations")
            present = set(npz.files) - {"schema", "header", "sha256"}
            missing = sorted(set(decl) - present)
            if missing:
                raise TraceError(f"{path}: declared array {missing[0]!r} is missing")
            extra = sorted(present - set(decl))
            if extra:
                raise TraceError(f"{path}: undeclared array {extra[0]!r}")
            raw = {name: npz[name] for name in sorted(decl)}
    except TraceError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise TraceError(f"{path}: unreadable (truncated, altered or not an .npz): {e}") from None

    if _digest(header_json, raw) != stored_hash:
        raise TraceError(f"{path}: content hash mismatch: the file was altered or corrupted")
    return _build(header, raw, path)


def _build(header: dict[str, Any], raw: dict[str, np.ndarray], path: Path) -> Trace:
    decl = header["arrays"]
    arrays: dict[str, np.ndarray] = {}
    for name, d in decl.items():
        try:
            shape = tuple(int(s) for s in d["shape"])
            a = raw[name]
            if d["packed"]:
                n = int(np.prod(shape))
                if a.dtype != np.uint8 or a.shape != (-(-n // 8),):
                    raise TraceError(
                        f"{path}: packed mask {name!r} holds {a.size} bytes, expected "
                        f"{-(-n // 8)} for shape {shape}"
                    )
                arrays[name] = _unpack(a, shape)
            else:
                if a.dtype.str != d["dtype"] or a.shape != shape:
                    raise TraceError(
                        f"{path}: array {name!r} is {a.dtype.str}{a.shape}, declared "
                        f"{d['dtype']}{shape}"
                    )
                arrays[name] = a
        except (KeyError, TypeError) as e:
            raise TraceError(f"{path}: bad declaration of {name!r}: {e}") from None
    try:
        graph = LayerGraph.from_dict(header["graph"])
        gate_layers = {
            n: GateInfo(int(g["base_channels"]), int(g["channel_group"]))
            for n, g in header["gate_layers"].items()
        }
        iterations = []
        for k, it in enumerate(header["iterations"]):
            iterations.append(
                IterationRecord(
                    step=int(it["step"]),
                    epoch=int(it["epoch"]),
                    gates={n: arrays[f"i{k}.gate.{n}"] for n in gate_layers},
                    wgroups={n: arrays[f"i{k}.wgroup.{n}"] for n in header["lasso_layers"]},
                    skip=arrays[f"i{k}.skip"],
                )
            )
        codes = None
        ch = header["codes"]
        if ch is not None:
            codes = TensorCodes(
                step=int(ch["step"]),
                formats=dict(ch["formats"]),
                inputs=arrays["codes.inputs"],
                targets=arrays["codes.targets"],
                weights={n: arrays[f"codes.weight.{n}"] for n in ch["weights"]},
                errors={n: arrays[f"codes.error.{n}"] for n in ch["errors"]},
            )
        t = Trace(
            graph=graph,
            batch=int(header["batch"]),
            gate_layers=gate_layers,
            group_in=int(header["group_in"]),
            lasso_layers=tuple(header["lasso_layers"]),
            iterations=tuple(iterations),
            codes=codes,
            meta=dict(header["meta"]),
        )
    except GraphError as e:
        raise TraceError(f"{path}: layer graph: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise TraceError(f"{path}: header is missing or has a bad field: {e!r}") from None
    _validate_structure(t)
    return t
