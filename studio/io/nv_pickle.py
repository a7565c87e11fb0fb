"""NVIDIA network pickles (``network-snapshot-*.pkl``) read without running anything in them.

NVIDIA's pickles embed their own Python source (``torch_utils.persistence``: each network is pickled as
``_reconstruct_persistent_obj({'type', 'version', 'module_src', 'class_name', 'state'})``) and NVIDIA's
loader ``exec``s that source. Here a restricted :class:`pickle.Unpickler` maps an allowlist of globals to
inert reconstructors and refuses every other global by name:

- ``torch_utils.persistence._reconstruct_persistent_obj`` → :class:`PersistentRecord` (class name,
  ``init_args``/``init_kwargs``, ``module_src`` kept as TEXT, never executed or imported, and the state);
- ``dnnlib.EasyDict`` / ``dnnlib.util.EasyDict`` → :class:`EasyDictRecord` (a plain dict);
- ``torch.storage._load_from_bytes`` → the storage bytes read by ``torch.load(weights_only=True)``;
  ``torch._utils._rebuild_tensor(_v2)`` / ``_rebuild_parameter(_with_state)`` → a tensor viewing that storage;
- ``collections.OrderedDict``, ``builtins.set``/``frozenset``, ``_codecs.encode`` (latin-1 bytes only),
  torch dtypes and ``torch.device``;
- numpy ``_reconstruct``/``ndarray``/``dtype``/``scalar`` → arrays and scalars built from their raw bytes
  (object dtypes refused: their data would be more pickled objects).

:func:`read_network_pickle` gives the top-level object (a dict for NVIDIA snapshots) with records in place
of networks; :func:`extract_network` takes one network (``G_ema`` by default) as plain data: its class
name, constructor arguments and tensors, for :func:`studio.nets.stylegan_nv.build_nvidia_generator`.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.errors import WeightsError
from studio.io.checkpoints import scan_pickle

#: the newest torch_utils.persistence format we know (NVIDIA's ``_version``)
PERSISTENCE_VERSION = 6
#: how deep network records may nest (NVIDIA's generators nest 4 deep)
MAX_MODULE_DEPTH = 64
#: how many submodules a network may have, counted along every path (NVIDIA's 1024² generator has under 200)
MAX_MODULES = 10_000


class EasyDictRecord(dict):
    """Inert stand-in for ``dnnlib.EasyDict``: the same items, no attribute magic."""

    def __setstate__(self, state: Any) -> None:
        if state:
            if not isinstance(state, dict):
                raise pickle.UnpicklingError("dnnlib.EasyDict with a non-dict state")
            self.update(state)


@dataclass
class PersistentRecord:
    """What a ``torch_utils.persistence`` object holds, as data. ``module_src`` is text only."""

    class_name: str
    module_src: str
    version: int
    state: dict[str, Any]

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("a pickle instruction tried to overwrite a network record's fields")

    @property
    def init_args(self) -> tuple[Any, ...]:
        args = self.state.get("_init_args", ())
        return tuple(args) if isinstance(args, (tuple, list)) else ()

    @property
    def init_kwargs(self) -> dict[str, Any]:
        kwargs = self.state.get("_init_kwargs", {})
        return _plain(kwargs) if isinstance(kwargs, dict) else {}

    def tensors(self) -> dict[str, torch.Tensor]:
        """The module's parameters and persistent buffers by state-dict name, walking submodules (a submodule that
        holds one of its parents, or nesting deeper than MAX_MODULE_DEPTH, is a WeightsError)."""
        out: dict[str, torch.Tensor] = {}
        self._collect("", out, (), [0])
        return out

    def _collect(self, prefix: str, out: dict[str, torch.Tensor], parents: tuple[int, ...],
                 visited: list[int]) -> None:
        # a submodule shared by two parents is walked once per path: a few records that each hold the next twice
        # would be walked 2^depth times, so the walk itself is bounded
        visited[0] += 1
        if visited[0] > MAX_MODULES:
            raise WeightsError(f"the network has more than {MAX_MODULES:,} submodules (counted along every path)")
        if id(self) in parents:
            raise WeightsError(f"submodule {prefix.rstrip('.')} holds one of its own parents (a loop)")
        if len(parents) >= MAX_MODULE_DEPTH:
            raise WeightsError(f"submodules nest more than {MAX_MODULE_DEPTH} deep")
        parents = (*parents, id(self))
        skip = self.state.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            items = self.state.get(group) or {}
            if not isinstance(items, dict):
                raise WeightsError(f"{self.class_name}.{group} is not a mapping")
            for name, value in items.items():
                if value is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(value, torch.Tensor):
                    raise WeightsError(f"{prefix}{name} is not a tensor")
                out[prefix + name] = value
        for name, child in (self.state.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise WeightsError(f"submodule {prefix}{name} is not a network record")
            child._collect(f"{prefix}{name}.", out, parents, visited)


@dataclass
class NetworkData:
    """One network of a pickle, as data: what :func:`build_nvidia_generator` needs."""

    key: str
    class_name: str
    module_src: str
    init_args: tuple[Any, ...]
    init_kwargs: dict[str, Any]
    tensors: dict[str, torch.Tensor]


def _plain(obj: Any) -> Any:
    """EasyDictRecord/OrderedDict → dict, recursively (constructor kwargs as plain data)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    return obj


# ---------------------------------------------------------------------------------------------------
# Inert reconstructors


def _reconstruct_persistent(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict):
        raise pickle.UnpicklingError("persistent object without its metadata dict")
    if meta.get("type") != "class":
        raise pickle.UnpicklingError(f"persistent object of unknown type {meta.get('type')!r}")
    version = meta.get("version")
    if not isinstance(version, int) or not 1 <= version <= PERSISTENCE_VERSION:
        raise pickle.UnpicklingError(f"torch_utils.persistence version {version!r} is not one we know "
                                     f"(1–{PERSISTENCE_VERSION})")
    src, name, state = meta.get("module_src"), meta.get("class_name"), meta.get("state")
    if not isinstance(src, str) or not isinstance(name, str):
        raise pickle.UnpicklingError("persistent object without module_src text or class_name")
    if state is None:
        state = {}
    if not isinstance(state, dict):
        raise pickle.UnpicklingError(f"persistent {name} has a state that is not a dict")
    return PersistentRecord(class_name=name, module_src=src, version=version, state=dict(state))


def _load_storage(data: Any) -> Any:
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("torch storage without its bytes")
    try:
        return torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure of the weights-only reader is a bad file
        raise pickle.UnpicklingError(f"a tensor storage could not be read: {exc}") from exc


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> torch.Tensor:
    if isinstance(storage, torch.TypedStorage):
        with warnings.catch_warnings():  # TypedStorage is what torch.load gives for pickled storages
            warnings.simplefilter("ignore", UserWarning)
            dtype, untyped = storage.dtype, storage.untyped()
    else:
        raise pickle.UnpicklingError("tensor whose storage is not a torch storage")
    if not (isinstance(offset, int) and all(isinstance(v, int) and v >= 0 for v in (*size, *stride))):
        raise pickle.UnpicklingError("tensor with a malformed offset, size or stride")
    t = torch.empty((0,), dtype=dtype)
    try:
        t.set_(untyped, offset, tuple(size), tuple(stride))
    except RuntimeError as exc:
        raise pickle.UnpicklingError(f"tensor does not fit its storage: {exc}") from exc
    return t


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, *_state: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter without tensor data")
    return data


class _TypeMarker:
    """Stands for torch.Tensor / Parameter as an argument of _rebuild_from_type_v2; not a class, so a
    pickle cannot instantiate it."""

    def __init__(self, name: str) -> None:
        self.name = name


_TENSOR_TYPE = _TypeMarker("torch.Tensor")
_PARAMETER_TYPE = _TypeMarker("torch.nn.Parameter")


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> torch.Tensor:
    if func not in (_rebuild_tensor, _rebuild_parameter) or new_type not in (_TENSOR_TYPE, _PARAMETER_TYPE):
        raise pickle.UnpicklingError("tensor subclass reconstruction that is not a plain tensor")
    if state:
        raise pickle.UnpicklingError("tensor with extra Python attributes")
    result = func(*args)
    assert isinstance(result, torch.Tensor)
    return result


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode used for something other than latin-1 bytes")
    return text.encode("latin1")


def _np_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(spec, str):
        raise pickle.UnpicklingError("numpy dtype from something other than a type code")
    dt = np.dtype(spec, align=bool(align), copy=bool(copy))
    if dt.hasobject:
        raise pickle.UnpicklingError("numpy object dtype (its data would be more pickled objects)")
    return dt


class _ArrayStub:
    """Receives an ndarray's pickled state; :func:`_resolve` swaps in the array built from raw bytes."""

    array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise pickle.UnpicklingError("numpy array with a malformed state")
        _version, shape, dtype, fortran, raw = state
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise pickle.UnpicklingError("numpy array of an object dtype")
        if not isinstance(raw, (bytes, bytearray)) or not all(isinstance(v, int) and v >= 0 for v in shape):
            raise pickle.UnpicklingError("numpy array without raw bytes")
        count = int(np.prod(shape, dtype=np.int64))
        if len(raw) != count * dtype.itemsize:
            raise pickle.UnpicklingError("numpy array whose bytes do not match its shape")
        flat = np.frombuffer(bytes(raw), dtype=dtype, count=count)
        self.array = flat.reshape(shape, order="F" if fortran else "C").copy()


def _np_reconstruct(cls: Any, shape: Any, typecode: Any) -> _ArrayStub:
    if cls is not np.ndarray:
        raise pickle.UnpicklingError("numpy reconstruction of something other than a plain ndarray")
    return _ArrayStub()


def _np_scalar(dtype: Any, raw: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(raw, (bytes, bytearray)):
        raise pickle.UnpicklingError("numpy scalar of an object dtype or without raw bytes")
    if len(raw) != dtype.itemsize:
        raise pickle.UnpicklingError("numpy scalar whose bytes do not match its dtype")
    return np.frombuffer(bytes(raw), dtype=dtype, count=1)[0]


def _copyreg_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    if cls is EasyDictRecord and base is dict:
        return EasyDictRecord(state or {})
    if cls is collections.OrderedDict and base is dict:
        return collections.OrderedDict(state or {})
    raise pickle.UnpicklingError("copyreg._reconstructor of a class outside the allowlist")


_TORCH_DTYPES = {name for name in ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16",
                                   "int8", "uint8", "bool", "complex64", "complex128")}

_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
    ("dnnlib", "EasyDict"): EasyDictRecord,
    ("dnnlib.util", "EasyDict"): EasyDictRecord,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _TENSOR_TYPE,
    ("torch.nn.parameter", "Parameter"): _PARAMETER_TYPE,
    ("torch", "device"): torch.device,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _codecs_encode,
    ("copyreg", "_reconstructor"): _copyreg_reconstructor,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _np_dtype,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _np_reconstruct
    _ALLOWED[(_mod, "scalar")] = _np_scalar
for _name in _TORCH_DTYPES:
    _ALLOWED[("torch", _name)] = getattr(torch, _name)


class _Refused(pickle.UnpicklingError):
    def __init__(self, qualname: str) -> None:
        super().__init__(f"it refers to {qualname}, which is not allowed in a network pickle "
                         f"(nothing from the file is run)")
        self.qualname = qualname


class NetworkUnpickler(pickle.Unpickler):
    """A pickle reader that resolves only the allowlisted globals above, to inert reconstructors."""

    def find_class(self, module: str, name: str) -> Any:
        # protocols 0–2 name globals as Python 2 did (__builtin__.set); map them as pickle itself does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        found = _ALLOWED.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it uses persistent ids (a torch.save archive, not a network pickle)")


def _resolve(obj: Any, memo: dict[int, Any] | None = None) -> Any:
    """Swap array stubs for arrays, in containers and records."""
    memo = {} if memo is None else memo
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise pickle.UnpicklingError("numpy array without its state")
        return obj.array
    if isinstance(obj, PersistentRecord):
        memo[id(obj)] = obj
        obj.state = _resolve(obj.state, memo)
        return obj
    if isinstance(obj, dict):
        memo[id(obj)] = obj
        for k in list(obj):
            obj[k] = _resolve(obj[k], memo)
        return obj
    if isinstance(obj, list):
        memo[id(obj)] = obj
        obj[:] = [_resolve(v, memo) for v in obj]
        return obj
    if isinstance(obj, tuple):  # memoised too: tuples sharing one another through the memo would be walked 2^depth
        memo[id(obj)] = resolved = tuple(_resolve(v, memo) for v in obj)  # times (a bomb of a few hundred bytes)
        return resolved
    return obj


def read_network_pickle(path: str | Path) -> Any:
    """The top-level object of an NVIDIA network pickle, with records in place of networks.

    Raises :class:`WeightsError` naming the file and the problem (for a refused global: its name)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(4)
            f.seek(0)
            if head[:2] == b"PK" and zipfile.is_zipfile(f):
                raise WeightsError("this is a torch.save archive, not an NVIDIA network pickle "
                                   "(use the checkpoint importer)", p)
            f.seek(0)
            scan_pickle(f, p)  # opcode and memo limits, before anything is built (nothing is executed by the scan)
            f.seek(0)
            obj = NetworkUnpickler(f).load()
    except WeightsError:
        raise
    except OSError as exc:
        raise WeightsError(f"cannot be read: {exc.strerror or exc}", p) from exc
    except _Refused as exc:
        raise WeightsError(f"refused: {exc}", p) from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            MemoryError, RecursionError, UnicodeDecodeError) as exc:
        raise WeightsError(f"is not a readable NVIDIA network pickle: {exc or type(exc).__name__}", p) from exc
    return _resolve(obj)


def extract_network(path: str | Path, key: str = "G_ema", obj: Any = None) -> NetworkData:
    """One network of a snapshot (``G_ema`` by default) as data. ``obj``: an already-read pickle."""
    p = Path(path)
    top = read_network_pickle(p) if obj is None else obj
    record: Any = top
    if isinstance(top, dict):
        record = top.get(key)
        if not isinstance(record, PersistentRecord):
            have = ", ".join(sorted(str(k) for k, v in top.items() if isinstance(v, PersistentRecord)))
            raise WeightsError(f"has no network {key!r} (networks: {have or 'none'})", p)
    elif not isinstance(top, PersistentRecord):
        raise WeightsError(f"holds a {type(top).__name__}, not a network snapshot", p)
    try:
        tensors = record.tensors()
    except WeightsError as exc:
        raise WeightsError(f"{key}: {exc.problem}", p) from exc
    return NetworkData(key=key, class_name=record.class_name, module_src=record.module_src,
                       init_args=record.init_args, init_kwargs=record.init_kwargs, tensors=tensors)
