"""Reading checkpoints from outside the studio without running their code: safetensors files, and PyTorch pickles
through torch's weights-only unpickler only (a pickle that needs any other global is refused, naming it).

A pickle needs no code to be a bomb: a few hundred bytes can describe a tree of 2⁴⁰ dicts (each level refers to the
one below twice, through the memo) or a dict that holds itself. So before torch reads it, the pickle is scanned
opcode by opcode without executing anything (`pickletools.genops`), against MAX_PICKLE_OPCODES and MAX_PICKLE_MEMO;
and when the tree it made is flattened, every container visited is counted against MAX_PICKLE_OBJECTS and a
container that holds one of its own ancestors is refused. `pickle.load` is never called.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from studio import limits
from studio.errors import WeightsError

WRAPPER_KEYS = ("state_dict", "model", "ema", "params_ema", "g_ema")
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|unrecognized function <?([^>\s]+)", re.IGNORECASE)
_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error:\s*([^\n]+)")


def _is_safetensors(path: Path) -> bool:
    """The safetensors shape: an 8-byte little-endian header length, then a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


_MEMO_OPS = frozenset(("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"))
_LEGACY_PICKLES = 5  # torch's legacy format: magic number, protocol, system info, the object, storage keys


def scan_pickle(stream, path: Path, opcodes: int = 0, memo: int = 0) -> tuple[int, int]:
    """Walk one pickle in `stream` opcode by opcode (nothing is executed or built) up to its STOP, counting opcodes
    and memo entries against the limits; the running counts."""
    for op, _arg, _pos in pickletools.genops(stream):
        opcodes += 1
        if op.name in _MEMO_OPS:
            memo += 1
            if memo > limits.MAX_PICKLE_MEMO:
                raise WeightsError(f"the checkpoint's pickle keeps more than {limits.MAX_PICKLE_MEMO:,} objects "
                                   "to refer back to; refused before loading", path)
        if opcodes > limits.MAX_PICKLE_OPCODES:
            raise WeightsError(f"the checkpoint's pickle has more than {limits.MAX_PICKLE_OPCODES:,} opcodes; "
                               "refused before loading", path)
    return opcodes, memo


def check_pickle(path: str | Path) -> None:
    """Scan a PyTorch checkpoint's pickle before it is loaded: `data.pkl` inside a torch zip, or the pickles at the
    start of a legacy (or raw) pickle file; a WeightsError naming the file when it is over a limit. Bytes that are
    not a pickle are left for torch.load to report."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
                if not names:
                    return
                info = archive.getinfo(names[0])
                if info.file_size > limits.MAX_PICKLE_BYTES:
                    raise WeightsError(f"the checkpoint's pickle ({names[0]}) is {info.file_size:,} bytes, over "
                                       f"the limit of {limits.MAX_PICKLE_BYTES:,}", path)
                with archive.open(info) as stream:
                    scan_pickle(stream, path)
        except (ValueError, EOFError, zipfile.BadZipFile, NotImplementedError, OSError, RuntimeError):
            return  # not a well-formed pickle or zip: torch.load says what is wrong
        return
    opcodes = memo = 0
    with open(path, "rb") as stream:
        for _ in range(_LEGACY_PICKLES):
            try:
                opcodes, memo = scan_pickle(stream, path, opcodes, memo)
            except (ValueError, EOFError):
                return  # the end of the pickles (tensor data follows), or not a pickle at all


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or (not isinstance(value, torch.Tensor) and isinstance(value, Mapping))


def _measure(tree: Mapping, path: Path) -> int:
    """How many entries flattening `tree` would visit, counting a shared sub-dict each time it is reached, computed
    once per distinct dict (a "billion laughs" tree of 40 levels costs 40 steps here, not 2⁴⁰); a WeightsError over
    MAX_PICKLE_OBJECTS, or when a dict holds one of its own ancestors. Iterative: no recursion limit to hit."""
    sizes: dict[int, int] = {}
    ancestors = {id(tree)}
    stack: list[list[Any]] = [[tree, iter(tree.values()), 0]]  # [dict, its values, entries counted so far]
    while stack:
        frame = stack[-1]
        for value in frame[1]:
            frame[2] += 1
            if _is_mapping(value):
                key = id(value)
                if key in ancestors:
                    raise WeightsError("the checkpoint's pickle refers to itself (a dict inside itself); refused",
                                       path)
                if key not in sizes:
                    ancestors.add(key)
                    stack.append([value, iter(value.values()), 0])
                    break
                frame[2] += sizes[key]
            if frame[2] > limits.MAX_PICKLE_OBJECTS:
                break
        else:
            stack.pop()
            ancestors.discard(id(frame[0]))
            sizes[id(frame[0])] = frame[2]
            if stack:
                stack[-1][2] += frame[2]
            continue
        if frame[2] > limits.MAX_PICKLE_OBJECTS:
            raise WeightsError(f"the checkpoint holds more than {limits.MAX_PICKLE_OBJECTS:,} objects (its pickle "
                               "reuses the same parts over and over); refused", path)
    return sizes[id(tree)]


def _flatten(tree: Mapping, path: Path) -> dict[str, torch.Tensor]:
    """Tensor leaves of nested dicts, keyed by dotted paths; other leaves (numbers, lists of hyper-parameters) are
    ignored. Measured first (`_measure`: bounded, acyclic), then walked without recursion."""
    _measure(tree, path)
    flat: dict[str, torch.Tensor] = {}
    stack: list[tuple[str, Any]] = [("", iter(tree.items()))]  # depth first, in order, as the dicts hold them
    while stack:
        prefix, items = stack[-1]
        for key, value in items:
            if isinstance(value, torch.Tensor):
                flat[f"{prefix}{key}"] = value.detach()
            elif _is_mapping(value):
                stack.append((f"{prefix}{key}.", iter(value.items())))
                break
        else:
            stack.pop()
    return flat


def _refused(exc: BaseException, path: Path) -> WeightsError:
    found = _REFUSED_GLOBAL.search(str(exc))
    reason = _UNPICKLER_REASON.search(str(exc))
    what = (f" (it refers to {found.group(1) or found.group(2)})" if found
            else f" ({reason.group(1).strip()})" if reason else "")
    return WeightsError(f"this checkpoint needs code to load{what}, which safe loading refuses; it was not "
                        "executed. Ask for a plain state dict or a .safetensors file", path)


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, never executing it: a state dict, or one under a usual wrapper key
    (state_dict, model, ema, params_ema, g_ema), flattened with dots. Safetensors files are read as such."""
    path = Path(path)
    try:
        if not path.is_file():
            raise WeightsError("no such checkpoint file", path)
        if _is_safetensors(path):
            try:
                return load_file(str(path), device="cpu")
            except SafetensorError as exc:
                raise WeightsError(f"not a readable safetensors file (truncated or corrupt: {exc})", path) from None
        check_pickle(path)  # a pickle bomb is refused before torch builds anything
        with warnings.catch_warnings():  # torch warns about pickle protocols it did not write
            warnings.simplefilter("ignore")
            data: Any = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except WeightsError:
        raise
    except pickle.UnpicklingError as exc:
        raise _refused(exc, path) from None
    except OSError as exc:
        raise WeightsError(f"cannot read: {exc.strerror or exc}", path) from None
    except Exception as exc:  # torch raises KeyError, EOFError, RuntimeError, ValueError… for non-checkpoints
        if path.stat().st_size == 0:
            raise WeightsError("not a PyTorch checkpoint: the file is empty", path) from None
        detail = type(exc).__name__ + (f": {str(exc).split('. ')[0].strip()[:160]}" if str(exc).strip() else "")
        raise WeightsError(f"not a PyTorch checkpoint (not a pickle or torch zip, or truncated; {detail})",
                           path) from None
    if not isinstance(data, Mapping):
        raise WeightsError(f"expected a dict of tensors (a state dict), found {type(data).__name__}", path)
    for key in WRAPPER_KEYS:
        if isinstance(data.get(key), Mapping):
            wrapped = _flatten(data[key], path)
            if wrapped:
                return wrapped
    tensors = _flatten(data, path)
    if not tensors:
        raise WeightsError(f"no tensors found (top-level keys: {', '.join(map(str, list(data)[:8]))})", path)
    return tensors
