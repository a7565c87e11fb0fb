"""ONNX generators are read by the onnx package before onnxruntime sees them (studio/families/generators/onnx.py):
custom operator domains are refused naming the node and domain (in the graph, its subgraphs and local functions);
external data must resolve to a regular file inside the model's folder, naming the tensor; what passes renders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import tomli_w

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from conftest import finish  # noqa: E402
from studio.errors import WeightsError  # noqa: E402
from studio.library import load_model, resolve  # noqa: E402
from studio.request import RenderRequest  # noqa: E402

WEIGHTS = (np.arange(4 * 192, dtype=np.float32).reshape(4, 192) % 7 - 3) / 10


def weights(location: str | None = None, offset: int = 0, length: int | None = None) -> TensorProto:
    tensor = numpy_helper.from_array(WEIGHTS, "W")
    if location is not None:
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        size = WEIGHTS.nbytes if length is None else length
        entries = {"location": location, "offset": str(offset), "length": str(size)}
        for key, value in entries.items():
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    return tensor


def graph(nodes: list, initializers: list, name: str = "generator"):
    shape = numpy_helper.from_array(np.array([1, 3, 8, 8], np.int64), "shape")
    return helper.make_graph(nodes, name, [helper.make_tensor_value_info("latent", TensorProto.FLOAT, [1, 4])],
                             [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
                             [*initializers, shape])


def standard_nodes(matmul: str = "MatMul", domain: str = "") -> list:
    return [helper.make_node(matmul, ["latent", "W"], ["flat"], name="project", domain=domain),
            helper.make_node("Reshape", ["flat", "shape"], ["square"], name="reshape"),
            helper.make_node("Tanh", ["square"], ["image"], name="tanh")]


def package(folder: Path, model) -> Path:
    """A generator package holding `model` (latent (1, 4) → image (1, 3, 8, 8))."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "generator.onnx"))
    manifest = {
        "format": 1, "id": folder.name, "name": folder.name, "family": "onnx", "version": "1.0", "license": "MIT",
        "weights": "generator.onnx", "output": {"kind": "image", "width": 8, "height": 8, "channels": 3},
        "latent": {"shape": [4], "prior": "normal"}, "conditions": {"kind": "none"}, "architecture": {"range": "-1..1"},
    }
    (folder / "model.toml").write_text(tomli_w.dumps(manifest))
    return folder


def make(g, functions: list | None = None, domains: tuple[str, ...] = ()):
    opsets = [helper.make_opsetid("", 17)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(g, opset_imports=opsets, functions=functions or [], ir_version=8)


@pytest.fixture
def no_session(monkeypatch):
    """Fails the test if onnxruntime is asked to make a session: refusals come before it reads anything."""
    calls: list = []
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: calls.append(a) or pytest.fail("session"))
    return calls


def refused(folder: Path, match: str) -> str:
    with pytest.raises(WeightsError, match=match) as info:
        load_model(resolve(str(folder)))
    message = str(info.value)
    assert "generator.onnx" in message and "\n" not in message
    return message


def render(folder: Path) -> np.ndarray:
    model = load_model(resolve(str(folder)))
    return finish(model.family.render(model, RenderRequest(model.id, seed=5)))[0].data


def expected(latent_seed_folder: Path) -> np.ndarray:
    """What the graph computes, in NumPy, for the latent the studio draws for seed 5."""
    model = load_model(resolve(str(latent_seed_folder)))
    z = model.family.latent(model, RenderRequest(model.id, seed=5)).numpy()[None]
    out = np.tanh(z @ WEIGHTS).reshape(3, 8, 8)
    return np.round(np.clip((out + 1) / 2, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)


def test_a_plain_graph_renders(tmp_path):
    folder = package(tmp_path / "plain", make(graph(standard_nodes(), [weights()])))
    assert np.abs(render(folder).astype(int) - expected(folder).astype(int)).max() <= 1


def test_external_data_inside_the_folder_renders(tmp_path):
    folder = tmp_path / "inside"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0" * 8 + WEIGHTS.tobytes())
    package(folder, make(graph(standard_nodes(), [weights("weights.bin", offset=8)])))
    assert np.abs(render(folder).astype(int) - expected(folder).astype(int)).max() <= 1


def test_a_custom_domain_is_refused_naming_node_and_domain(tmp_path, no_session):
    folder = package(tmp_path / "custom", make(graph(standard_nodes("Leak", "com.evil"), [weights()]),
                                               domains=("com.evil",)))
    refused(folder, r"node 'project' \(Leak\) in the graph is from the operator domain 'com.evil': custom operators "
                    "are refused")


def test_an_ep_context_node_naming_a_file_is_refused(tmp_path, no_session):
    """com.microsoft's EPContext loads a compiled blob from a file it names."""
    context = helper.make_node("EPContext", ["latent"], ["blob"], name="ctx", domain="com.microsoft",
                               embed_mode=0, ep_cache_context="/etc/passwd")
    nodes = [context, *standard_nodes()]
    refused(package(tmp_path / "ep", make(graph(nodes, [weights()]), domains=("com.microsoft",))),
            r"node 'ctx' \(EPContext\) in the graph is from the operator domain 'com.microsoft'")


def test_a_custom_domain_inside_an_if_branch_is_refused(tmp_path, no_session):
    inner = helper.make_node("Leak", ["latent"], ["hidden"], name="hidden_leak", domain="com.evil")
    branch = helper.make_graph([inner], "then", [], [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, None)])
    plain = helper.make_graph([helper.make_node("Identity", ["latent"], ["same"], name="same")], "else", [],
                              [helper.make_tensor_value_info("same", TensorProto.FLOAT, None)])
    flag = numpy_helper.from_array(np.array(False), "flag")
    node = helper.make_node("If", ["flag"], ["unused"], name="branch", then_branch=branch, else_branch=plain)
    refused(package(tmp_path / "if", make(graph([node, *standard_nodes()], [weights(), flag]), domains=("com.evil",))),
            r"node 'hidden_leak' \(Leak\) in the subgraph 'then_branch' of node 'branch' is from the operator domain "
            r"'com.evil'")


def test_a_custom_domain_inside_a_local_function_is_refused(tmp_path, no_session):
    dirty = helper.make_function("studio.local", "Project", ["a", "b"], ["c"],
                                 [helper.make_node("Leak", ["a", "b"], ["c"], name="inner", domain="com.evil")],
                                 [helper.make_opsetid("", 17), helper.make_opsetid("com.evil", 1)])
    bad = package(tmp_path / "dirty", make(graph(standard_nodes("Project", "studio.local"), [weights()]),
                                           functions=[dirty], domains=("studio.local", "com.evil")))
    refused(bad, r"node 'inner' \(Leak\) in function studio.local.Project is from the operator domain 'com.evil'")


def test_a_clean_local_function_renders(tmp_path):
    """A node may call a function the file defines (exporters emit them); its body is what gets checked."""
    body = [helper.make_node("MatMul", ["a", "b"], ["c"], name="mm")]
    clean = helper.make_function("studio.local", "Project", ["a", "b"], ["c"], body, [helper.make_opsetid("", 17)])
    folder = package(tmp_path / "function", make(graph(standard_nodes("Project", "studio.local"), [weights()]),
                                                 functions=[clean], domains=("studio.local",)))
    assert np.abs(render(folder).astype(int) - expected(folder).astype(int)).max() <= 1


@pytest.mark.parametrize("location", ["../../etc/passwd", "../outside.bin", "sub/../../outside.bin"])
def test_external_data_above_the_folder_is_refused(tmp_path, no_session, location):
    (tmp_path / "outside.bin").write_bytes(WEIGHTS.tobytes())
    folder = package(tmp_path / "up", make(graph(standard_nodes(), [weights(location)])))
    refused(folder, rf"tensor 'W' in the graph keeps its data in '{location}', outside the model's folder")


def test_external_data_at_an_absolute_path_is_refused(tmp_path, no_session):
    secret = tmp_path / "outside.bin"
    secret.write_bytes(WEIGHTS.tobytes())
    folder = package(tmp_path / "abs", make(graph(standard_nodes(), [weights(str(secret))])))
    refused(folder, "tensor 'W' in the graph keeps its data in .*an absolute path")


def test_external_data_through_a_link_out_of_the_folder_is_refused(tmp_path, no_session):
    secret = tmp_path / "outside.bin"
    secret.write_bytes(WEIGHTS.tobytes())
    folder = package(tmp_path / "link", make(graph(standard_nodes(), [weights("weights.bin")])))
    (folder / "weights.bin").symlink_to(secret)
    refused(folder, "tensor 'W' in the graph keeps its data in 'weights.bin', outside the model's folder \\(links "
                    "followed\\)")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_external_data_that_is_a_fifo_is_refused_without_hanging(tmp_path, no_session):
    folder = package(tmp_path / "fifo", make(graph(standard_nodes(), [weights("weights.bin")])))
    os.mkfifo(folder / "weights.bin")
    refused(folder, "a FIFO")


def test_external_data_past_the_end_of_its_file_is_refused(tmp_path, no_session):
    folder = package(tmp_path / "short", make(graph(standard_nodes(), [weights("weights.bin", offset=16)])))
    (folder / "weights.bin").write_bytes(WEIGHTS.tobytes())
    refused(folder, "past the end")


def test_external_data_in_a_constant_inside_a_subgraph_is_checked(tmp_path, no_session):
    constant = helper.make_node("Constant", [], ["k"], name="k", value=weights("../../etc/passwd"))
    branch = helper.make_graph([constant], "then", [], [helper.make_tensor_value_info("k", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Constant", [], ["k2"], name="k2", value=weights())], "else", [],
                              [helper.make_tensor_value_info("k2", TensorProto.FLOAT, None)])
    flag = numpy_helper.from_array(np.array(False), "flag")
    node = helper.make_node("If", ["flag"], ["unused"], name="branch", then_branch=branch, else_branch=other)
    folder = package(tmp_path / "const", make(graph([node, *standard_nodes()], [weights(), flag])))
    refused(folder, r"tensor 'W' in the subgraph 'then_branch' of node 'branch' keeps its data in '../../etc/passwd'")


def test_without_the_onnx_package_external_data_is_refused_by_onnxruntime(tmp_path, monkeypatch):
    inside = tmp_path / "inside"
    inside.mkdir()
    (inside / "weights.bin").write_bytes(WEIGHTS.tobytes())
    package(inside, make(graph(standard_nodes(), [weights("weights.bin")])))
    plain = package(tmp_path / "plain", make(graph(standard_nodes(), [weights()])))
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    refused(inside, "not a readable ONNX model: .*[Ee]xternal data")
    assert render(plain).shape == (8, 8, 3)
