"""TorchScript generators (`torch.jit.save`): see `studio.families.generators` for the package layout.

A TorchScript file is a program, so it is checked before any of it runs:

1. Before loading: the file must be a zip archive (the format torch.jit.save writes; the other, flatbuffer, is
   refused), with no duplicate member names, whose code defines no `__setstate__` (TorchScript runs an object's
   `__setstate__` while *loading*, before anything could be checked) and whose pickles hold no custom C++ class
   (`torch.classes`, whose own state-restoring code would also run while loading).
2. Loading compiles the code; every compiled function in the file (every method of the module, of each submodule and
   of each TorchScript class, the hooks, exported methods and any function none of them calls) is inlined and its
   graph walked, nested If/Loop blocks included; an operator not on the reviewed allowlist (`allowlist.py`) refuses
   the model, naming the operator and the method. Values of custom C++ class types are refused too.

The archive is screened through one open handle and torch then reads the same path; a file that is not the same
(device, inode, size, modification time) after loading than the one screened is refused.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import torch

from studio.errors import WeightsError
from studio.families.generators import allowlist
from studio.families.generators.common import GeneratorFile
from studio.files import open_regular

MAX_CODE_BYTES = 64 << 20  # one code or pickle member of the archive, read whole to be screened
NESTING = frozenset({"prim::If", "prim::Loop"})  # the allowed nodes that hold blocks (others with blocks are refused)
OBJECTS = frozenset({"prim::GetAttr", "prim::CreateObject"})  # values that may be objects (constants: screened)


class TorchScriptFamily(GeneratorFile):
    name = "torchscript"
    suffixes = (".pt", ".pth", ".ts", ".torchscript")
    kind_name = "TorchScript"

    def load_network(self, manifest) -> torch.nn.Module:
        self.validate(manifest)
        return load_checked(manifest.weights_path)


def load_checked(path: Path) -> torch.jit.ScriptModule:
    """The TorchScript module in `path`, loaded on the CPU once it passed both checks (module docstring); else
    WeightsError naming the file and what was refused."""
    with open_regular(path, WeightsError, what="TorchScript module file") as file:
        screen_archive(file, path)
        unit = torch._C.CompilationUnit()
        try:
            with warnings.catch_warnings():  # torch 2.13 marks TorchScript deprecated in favour of torch.export
                warnings.simplefilter("ignore", DeprecationWarning)
                cpp_module = torch._C.import_ir_module(  # (torch's stub lags its binding, as in torch.jit.load)
                    unit, str(path), torch.device("cpu"), {}, False)  # type: ignore[call-arg]
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsError(f"not a TorchScript module (save it with torch.jit.save): {first}", path) from None
        if _identity(os.fstat(file.fileno())) != _identity(os.stat(path)):
            raise WeightsError("the TorchScript module file changed while it was being checked: refused", path)
    check_functions(unit, path)
    return torch.jit._recursive.wrap_cpp_module(cpp_module)


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def screen_archive(file: BinaryIO, path: Path) -> None:
    """Refuse, before torch parses it, a file whose loading alone would run its code (module docstring, 1)."""
    if file.read(2) != b"PK":
        raise WeightsError("not a TorchScript module (save it with torch.jit.save): not a zip archive", path)
    file.seek(0)
    try:
        archive = zipfile.ZipFile(file)
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise WeightsError(f"not a TorchScript module (save it with torch.jit.save): {exc}", path) from None
    names = [info.filename for info in members]
    if len(set(names)) != len(names):
        raise WeightsError("the TorchScript archive holds two members of the same name: refused", path)
    for info in members:
        name = info.filename
        code = name.endswith(".py") or "/code/" in name
        if not (code or name.endswith(".pkl")):
            continue  # tensor data, version, byte order
        if info.file_size > MAX_CODE_BYTES:
            raise WeightsError(f"the archive member {name!r} is {info.file_size:,} bytes, over the limit of "
                               f"{MAX_CODE_BYTES:,} for TorchScript code", path)
        try:
            content = archive.read(info)
        except (zipfile.BadZipFile, ValueError, OSError, RuntimeError, NotImplementedError) as exc:
            raise WeightsError(f"the archive member {name!r} cannot be read: {exc}", path) from None
        if code and b"__setstate__" in content:
            raise WeightsError(f"the TorchScript code {name!r} defines __setstate__, which would run while the file "
                               "loads: refused", path)
        if b"torch.classes" in content:
            raise WeightsError(f"the TorchScript archive member {name!r} uses a custom C++ class (torch.classes), "
                               "whose code is not checked: refused", path)


def check_functions(unit: torch._C.CompilationUnit, path: Path) -> None:
    """Walk every compiled function of the file, inlined, against the allowlist (module docstring, 2)."""
    checked: set[str] = set()
    while True:  # compiling one function can import a class its body names, adding that class's methods: repeat
        functions: list = unit.get_functions()  # type: ignore[func-returns-value, assignment]  # (stub: None)
        new = [function for function in functions if function.qualified_name not in checked]
        if not new:
            return
        checked.update(function.qualified_name for function in new)
        check_graphs(((function.qualified_name, function.graph) for function in new), path)


def check_graphs(graphs: Iterable[tuple[str, torch._C.Graph]], path: Path) -> None:
    """Refuse the first node of the (qualified name, graph) pairs, inlined, whose operator is not allowed."""
    for qualified, original in graphs:
        graph = original.copy()
        torch._C._jit_pass_inline(graph)
        name = _method_name(qualified)
        for node in _nodes(graph.block()):
            kind = node.kind()
            if kind in allowlist.ALLOWED and kind not in OBJECTS:
                continue
            reason = allowlist.refusal(kind)
            if reason is not None:
                raise WeightsError(f"the TorchScript module's method {name} calls {kind}, which {reason}: refused "
                                   "(see studio/families/generators/allowlist.py)", path)
            for value in node.outputs():  # an object: one of a custom C++ class would run unchecked code
                if "torch.classes" in value.type().str():
                    raise WeightsError(f"the TorchScript module's method {name} uses a custom C++ class "
                                       f"({value.type().str()}), whose code is not checked: refused", path)


def _nodes(block) -> Iterator:
    """Every node of `block` and of the blocks nested in it, depth first."""
    for node in block.nodes():
        yield node
        if node.kind() in NESTING:
            for inner in node.blocks():
                yield from _nodes(inner)


def _method_name(qualified: str) -> str:
    """'__torch__.Generator.forward' → 'Generator.forward' (the names the model's author wrote)."""
    parts = qualified.split(".")
    if parts and parts[0].startswith("__torch__"):
        parts = parts[1:]
    return ".".join(parts) or qualified
