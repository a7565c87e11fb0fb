"""NVIDIA network pickles for tests, written the way NVIDIA's torch_utils.persistence writes them (a metadata dict with
type, version, module_src, class_name and state handed to torch_utils.persistence._reconstruct_persistent_obj), with
stand-ins for NVIDIA's modules registered only while pickling. The embedded module_src would leave a marker file if
anything ever ran it. As tests/io/test_nv_pickle.py builds them, packaged for the family, CLI, UI tests and the
import benchmark."""

from __future__ import annotations

import collections
import contextlib
import json
import pickle
import sys
import types
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors.torch import load_file

FIX = Path(__file__).resolve().parent / "fixtures" / "stylegan"
BUFFERS = {"w_avg", "noise_const", "resample_filter", "magnitude_ema", "up_filter", "down_filter", "freqs",
           "phases", "transform"}


def _reconstruct_persistent_obj(meta: dict[str, Any]) -> Any:  # pragma: no cover - never called by the reader
    raise AssertionError("the reader must not call the pickle's own reconstructor")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
_reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"


class EasyDict(dict):  # type: ignore[type-arg]
    def __getattr__(self, name: str) -> Any:
        return self[name]


EasyDict.__module__ = "dnnlib.util"
EasyDict.__qualname__ = "EasyDict"


class Persistent:
    """Pickles exactly as a persistent_class instance: reduce → (_reconstruct_persistent_obj, (meta,))."""

    def __init__(self, class_name: str, state: dict[str, Any], src: str) -> None:
        self.meta = dict(type="class", version=6, module_src=src, class_name=class_name, state=state)

    def __reduce__(self) -> Any:
        return (_reconstruct_persistent_obj, (self.meta,))


@contextlib.contextmanager
def nvidia_modules() -> Iterator[None]:
    """torch_utils.persistence and dnnlib stand-ins in sys.modules while pickling (so pickle writes their names)."""
    tu, pers = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")
    dn, du = types.ModuleType("dnnlib"), types.ModuleType("dnnlib.util")
    pers._reconstruct_persistent_obj = _reconstruct_persistent_obj  # type: ignore[attr-defined]
    du.EasyDict = EasyDict  # type: ignore[attr-defined]
    dn.util = du  # type: ignore[attr-defined]
    tu.persistence = pers  # type: ignore[attr-defined]
    names = {"torch_utils": tu, "torch_utils.persistence": pers, "dnnlib": dn, "dnnlib.util": du}
    saved = {k: sys.modules.get(k) for k in names}
    sys.modules.update(names)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def module_state(init_kwargs: dict[str, Any], params: dict[str, Any], buffers: dict[str, Any],
                 modules: dict[str, Any]) -> dict[str, Any]:
    return {"training": False, "_parameters": collections.OrderedDict(params),
            "_buffers": collections.OrderedDict(buffers), "_non_persistent_buffers_set": set(),
            "_backward_hooks": collections.OrderedDict(), "_forward_hooks": collections.OrderedDict(),
            "_modules": collections.OrderedDict(modules), "_init_args": (), "_init_kwargs": init_kwargs,
            "weight_gain": np.float64(0.125),
            # as StyleGAN3's layers keep sizes: a numpy array that does not own its data (broadcast, then copied)
            "size": np.broadcast_to(np.asarray(36), [2]).copy()}


def marking_source(marker: Path) -> str:
    """module_src that leaves `marker` if anything ever runs it."""
    return f"open({str(marker)!r}, 'w').write('ran')\nclass Generator: pass\n"


def tree(state_dict: dict[str, torch.Tensor], init_kwargs: dict[str, Any], src: str) -> Persistent:
    nested: dict[str, Any] = {}
    for key, value in state_dict.items():
        node = nested
        *path, leaf = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value

    def build(node: dict[str, Any], name: str, kwargs: dict[str, Any]) -> Persistent:
        params = {k: torch.nn.Parameter(v) for k, v in node.items() if isinstance(v, torch.Tensor) and k not in BUFFERS}
        buffers = {k: v for k, v in node.items() if isinstance(v, torch.Tensor) and k in BUFFERS}
        subs = {k: build(v, k, {}) for k, v in node.items() if isinstance(v, dict)}
        return Persistent(name, module_state(kwargs, params, buffers, subs), src)

    return build(nested, "Generator", init_kwargs)


def fixture_kwargs(name: str) -> dict[str, Any]:
    return dict(json.loads((FIX / f"{name}.init_kwargs.json").read_text())["init_kwargs"])


def write_snapshot(path: Path, state_dict: dict[str, torch.Tensor], init_kwargs: dict[str, Any],
                   marker: Path | None = None, g_ema: bool = True, extra: dict[str, Any] | None = None,
                   protocol: int = pickle.DEFAULT_PROTOCOL) -> Path:
    """A network-snapshot pickle holding G (and G_ema) with these tensors and constructor arguments."""
    marker = marker or path.with_name(path.name + ".SOURCE_WAS_EXECUTED")
    src = marking_source(marker)
    kwargs = dict(init_kwargs)
    for key in ("mapping_kwargs", "synthesis_kwargs"):
        if isinstance(kwargs.get(key), dict):
            kwargs[key] = EasyDict(kwargs[key])  # train.py passes EasyDicts
    with nvidia_modules():
        g = tree(state_dict, kwargs, src)
        data: dict[str, Any] = {"G": g, "D": Persistent("Discriminator", module_state({}, {}, {}, {}), src)}
        if g_ema:
            data["G_ema"] = g
        data.update(augment_pipe=None, training_set_kwargs=EasyDict(resolution=32, use_labels=False))
        data.update(extra or {})
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=protocol)
    return path


def fixture_snapshot(name: str, path: Path, **kw: Any) -> Path:
    """The fixture generator `name` (sg2_uncond, sg3t) as a network-snapshot pickle."""
    return write_snapshot(path, load_file(FIX / f"{name}.G_ema.safetensors"), fixture_kwargs(name), **kw)


def random_snapshot(path: Path, generation: str, init_kwargs: dict[str, Any], seed: int = 0, **kw: Any) -> Path:
    """A snapshot of a generator built from `init_kwargs` with random weights (seeded)."""
    from studio.nets.stylegan_nv import make_nvidia_generator

    torch.manual_seed(seed)
    g = make_nvidia_generator(generation, (), init_kwargs)
    state = {}
    for k, v in g.state_dict().items():
        if k.startswith("mapping.") and k.endswith("weight"):
            state[k] = torch.randn_like(v) / 0.01  # NVIDIA's init: randn / lr_multiplier
        elif k.endswith(("weight", "const")):
            state[k] = torch.randn_like(v) * 0.5
        else:
            state[k] = v.clone()
    return write_snapshot(path, state, init_kwargs, **kw)


class SystemCall:
    """Pickles as os.system("…"): what a hostile pickle slips in beside the networks."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> Any:
        import os

        return (os.system, (self.command,))
