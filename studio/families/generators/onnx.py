"""ONNX generators, run by onnxruntime (an optional extra: `pip install latent-studio[onnx]`): see
`studio.families.generators` for the package layout. The file's inputs are checked against the manifest when the
model loads: one input for the latent (1, *latent.shape), and a second for the class index when the model has
classes. Runs on the CPU provider (onnxruntime's CUDA build adds CUDAExecutionProvider, used when present).

An ONNX file is checked before onnxruntime sees it (`check_graph`), parsed by the `onnx` package without loading any
external data: every node of the graph, of its subgraphs (If/Loop/Scan bodies) and of the model's local functions must
be in the standard operator domains ("", "ai.onnx", "ai.onnx.ml") or call a local function defined in the file (which
is checked in turn); a custom domain (a library's own kernels, com.microsoft's EPContext that names a file to load, …)
refuses the model, naming the node and the domain. Every tensor whose data is external must name a `location` that
resolves (links followed) to a regular file inside the model's folder, with its offset and length inside that file.
The session is created with no custom-op library registered (`register_custom_ops_library` is never called, so the
file's operators can only be onnxruntime's built-in ones), no profiling file and no optimized-model file.

The session is made from the bytes that were checked. Without the `onnx` package (it comes with the `onnx` extra) the
graph cannot be read before the session exists; the bytes are then given to onnxruntime with no folder for external
data, and onnxruntime (≥ 1.17) refuses any external data of a model loaded from bytes, so no tensor can come from
outside the file; unknown custom domains are refused by onnxruntime's kernel registry (no library is registered).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from studio.errors import ManifestError, WeightsError
from studio.families.generators.common import GeneratorFile
from studio.files import check_regular, read_bytes

STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")


class OnnxGenerator(torch.nn.Module):
    """An onnxruntime session behind the nn.Module call the families use (tensors in, a tensor out)."""

    def __init__(self, session, inputs: list[str]):
        super().__init__()
        self.session, self.inputs = session, inputs

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        feed = {name: arg.detach().cpu().numpy().astype(np.int64 if i else np.float32)
                for i, (name, arg) in enumerate(zip(self.inputs, args))}
        try:
            out = self.session.run(None, feed)[0]
        except Exception as exc:  # onnxruntime's own error types
            raise RuntimeError(str(exc)) from None
        return torch.from_numpy(np.asarray(out, dtype=np.float32))


class OnnxFamily(GeneratorFile):
    name = "onnx"
    suffixes = (".onnx",)
    kind_name = "ONNX"

    def load_network(self, manifest) -> torch.nn.Module:
        self.validate(manifest)
        path = manifest.weights_path
        try:
            import onnxruntime
        except ImportError:
            raise WeightsError("ONNX models need onnxruntime: pip install 'latent-studio[onnx]'", path) from None
        check_regular(path, WeightsError, what="ONNX file")
        data = read_bytes(path, WeightsError, what="ONNX file")
        options = onnxruntime.SessionOptions()
        options.enable_profiling = False  # profiling writes a file
        options.optimized_model_filepath = ""  # as does saving the optimized graph
        try:
            import onnx
        except ImportError:  # nothing can look inside first: no external data at all (module docstring)
            onnx = None  # type: ignore[assignment]
        if onnx is not None:
            try:
                model = onnx.load_model_from_string(data)  # never loads external data
            except Exception as exc:  # onnx raises protobuf's DecodeError and its own
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise WeightsError(f"not a readable ONNX model: {first}", path) from None
            check_graph(model, path)
            # external data, now checked, is read from beside the file
            options.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                             str(path.parent.resolve()))
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in onnxruntime.get_available_providers()]
        try:  # from the bytes checked, so the file cannot change in between
            session = onnxruntime.InferenceSession(data, sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / …
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsError(f"not a readable ONNX model: {first}", path) from None
        inputs = session.get_inputs()
        wanted = 2 if manifest.conditions.kind == "class" else 1
        if len(inputs) != wanted:
            names = ", ".join(f"{i.name} {i.shape}" for i in inputs)
            raise ManifestError(f"the ONNX file takes {len(inputs)} input(s) ({names}) but the model needs {wanted}: "
                                "the latent" + (" and the class index" if wanted == 2 else ""), manifest.path,
                                "conditions" if len(inputs) == 3 - wanted else "latent")
        shape = list(inputs[0].shape)
        expected = [1, *manifest.latent.shape]
        if len(shape) != len(expected) or any(isinstance(s, int) and s != e for s, e in zip(shape, expected)):
            raise ManifestError(f"the ONNX file's latent input {inputs[0].name!r} is shaped {shape} but model.toml "
                                f"says {expected}", manifest.path, "latent.shape")
        return OnnxGenerator(session, [i.name for i in inputs])


def check_graph(model: Any, path: Path) -> None:
    """Refuse a model (an onnx.ModelProto read without its external data) with a node outside the standard domains
    or a tensor whose external data is not a regular file inside the model's folder, naming the node or tensor."""
    from onnx import TensorProto

    functions = {(f.domain, f.name) for f in model.functions}
    folder = path.parent.resolve()
    graphs: list[tuple[str, Any]] = [("the graph", model.graph)]
    for function in model.functions:
        graphs.append((f"function {function.domain}.{function.name}", function))
    for where, graph in graphs:
        for node, inside in _nodes(graph, where):
            if node.domain not in STANDARD_DOMAINS and (node.domain, node.op_type) not in functions:
                raise WeightsError(f"node {node.name or '(unnamed)'!r} ({node.op_type}) in {inside} is from the "
                                   f"operator domain {node.domain!r}: custom operators are refused", path)
        for tensor, inside in _tensors(graph, where):
            if tensor.data_location != TensorProto.EXTERNAL:
                continue
            entries = {entry.key: entry.value for entry in tensor.external_data}
            _check_external(tensor.name, inside, entries, folder, path)


def _check_external(name: str, inside: str, entries: dict[str, str], folder: Path, path: Path) -> None:
    location = entries.get("location", "")
    what = f"tensor {name!r} in {inside} keeps its data in {location!r}"
    if not location or "\0" in location:
        raise WeightsError(f"tensor {name!r} in {inside} has external data without a usable location", path)
    if os.path.isabs(location) or Path(location).is_absolute():
        raise WeightsError(f"{what}, an absolute path: external data must sit in the model's folder", path)
    target = (folder / location).resolve()
    if target == folder or folder not in target.parents:
        raise WeightsError(f"{what}, outside the model's folder (links followed): refused", path)
    try:
        size = check_regular(target, WeightsError, what="file").st_size
    except WeightsError as exc:  # missing, a FIFO, a device, a link loop
        raise WeightsError(f"{what}: {exc.problem}", path) from None
    try:
        offset, length = int(entries.get("offset", "0")), int(entries.get("length", "-1"))
    except ValueError:
        raise WeightsError(f"{what} with an offset or length that is not a number", path) from None
    if offset < 0 or offset > size or (length >= 0 and offset + length > size):
        raise WeightsError(f"{what} at bytes {offset}+{length}, past the end of that {size:,}-byte file", path)


def _nodes(graph: Any, where: str) -> Iterator[tuple[Any, str]]:
    """Every node of a GraphProto or FunctionProto and of the subgraphs in its nodes' attributes."""
    for node in graph.node:
        yield node, where
        for attribute in node.attribute:
            for inner in _subgraphs(attribute):
                yield from _nodes(inner, f"the subgraph {attribute.name!r} of node {node.name or node.op_type!r}")


def _subgraphs(attribute: Any) -> list[Any]:
    return ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)


def _tensors(graph: Any, where: str) -> Iterator[tuple[Any, str]]:
    """Every TensorProto of a graph: initializers, sparse initializers, and node attributes, subgraphs included."""
    for tensor in getattr(graph, "initializer", ()):
        yield tensor, where
    for sparse in getattr(graph, "sparse_initializer", ()):
        yield sparse.values, where
        yield sparse.indices, where
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t, where
            yield from ((t, where) for t in attribute.tensors)
            for sparse in ([attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []) + \
                    list(attribute.sparse_tensors):
                yield sparse.values, where
                yield sparse.indices, where
            for inner in _subgraphs(attribute):
                yield from _tensors(inner, f"the subgraph {attribute.name!r} of node {node.name or node.op_type!r}")
