"""NVIDIA network pickles (``network-snapshot-*.pkl``) converted once into `stylegan` packages.

The pickle is read by studio.io.nv_pickle's restricted reader (nothing in it is imported or run; a global outside its
allowlist is refused by name), its ``G_ema`` (or, in a snapshot without one, ``G``, said so in the package) is
rebuilt by studio.nets.stylegan_nv to check that every tensor fits its constructor arguments, and the package
(model.toml + weights.safetensors holding the pickle's tensors as stored) is written atomically: built in a
temporary folder beside the target and renamed into place, so a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from studio.errors import WeightsError

log = logging.getLogger(__name__)

SNIFF_BYTES = 64 * 1024
# The reconstructor NVIDIA's torch_utils.persistence pickles every network with: its module and name appear, as text,
# among the first opcodes of a snapshot (the first network's reduce), in every pickle protocol.
_MARKERS = (b"torch_utils.persistence", b"_reconstruct_persistent_obj")
CLASS_NAMES = {"stylegan2": "training.networks_stylegan2.Generator",
               "stylegan3": "training.networks_stylegan3.Generator"}
POSITIONAL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
NO_G_EMA = "the pickle has no G_ema (the averaged generator NVIDIA's tools render); its G was imported instead"
DIRECTION_SLIDERS = 16  # GANSpace components kept: the first few carry most of the variance, each is a slider


def looks_like_network_pickle(path: str | Path) -> bool:
    """Whether `path` is meant as an NVIDIA network pickle, judged from its first bytes (cheap, never raises): a
    pickle (not a torch.save zip archive) naming NVIDIA's persistence reconstructor. The file is still read only by
    the restricted reader, which decides whether it is one."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return False
    if not head or head[:2] == b"PK":
        return False
    return all(marker in head for marker in _MARKERS)


def _json_value(value: Any, where: str, source: Path) -> Any:
    """Constructor arguments as JSON data (numpy scalars as numbers, tuples as lists); WeightsError naming the
    argument otherwise."""
    if isinstance(value, dict):
        return {str(k): _json_value(v, f"{where}.{k}", source) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray) and value.ndim <= 1 and value.dtype.kind in "biuf":
        return [_json_value(v, f"{where}[{i}]", source) for i, v in enumerate(value.tolist())]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise WeightsError(f"constructor argument {where} is {value}", source)
        return value
    raise WeightsError(f"constructor argument {where} is a {type(value).__name__}, not plain data", source)


def package_manifest(source: Path, model_id: str, name: str, generation: str, kwargs: dict[str, Any],
                     network: str, notes: list[str]) -> dict[str, Any]:
    """The model.toml of a converted network (as a dict for tomli_w)."""
    c_dim, res = int(kwargs["c_dim"]), int(kwargs["img_resolution"])
    manifest: dict[str, Any] = {
        "format": 1, "id": model_id, "name": name, "family": "stylegan", "version": "1.0.0",
        "license": "unknown (imported: check the network's own licence)",
        "description": f"{source.name}: a {'StyleGAN3' if generation == 'stylegan3' else 'StyleGAN2'} network "
                       f"({res}×{res}{', conditional' if c_dim else ''}) converted from NVIDIA's network pickle.",
        "output": {"kind": "image", "width": res, "height": res, "channels": int(kwargs["img_channels"])},
        "latent": {"shape": [int(kwargs["w_dim"])], "prior": "normal"},
        "conditions": ({"kind": "class", "labels": [str(i) for i in range(c_dim)], "default": "0"} if c_dim
                       else {"kind": "none"}),
        "architecture": {"class_name": CLASS_NAMES[generation],
                         "init_kwargs": json.dumps(kwargs, sort_keys=True, allow_nan=False)},
        "training": {"imported_from": source.name, "network": network},
    }
    if notes:
        manifest["training"]["import_note"] = " ".join(notes)
    return manifest


def import_network_pickle(path: str | Path, out: str | Path | None = None, force: bool = False,
                          model_id: str | None = None, name: str | None = None,
                          license_: str | None = None) -> Path:
    """Convert the network pickle at `path` into a `stylegan` package at `out` (default: the user models folder,
    named from the file): the package folder. A package already there is replaced only with `force`; anything else
    there never is. Raises WeightsError naming the file and the problem (a refused global by its name); nothing is
    written then."""
    from studio.files import check_name
    from studio.io.nv_pickle import PersistentRecord, extract_network, read_network_pickle
    from studio.io.package import check_replaceable, write_package
    from studio.manifest import package_id_from
    from studio.nets.stylegan_nv import StyleGAN3Generator, build_nvidia_generator
    from studio.paths import user_models_dir

    source = Path(path)
    if model_id is not None:
        model_id = check_name(model_id, "package id", WeightsError, field="--id")
    model_id = model_id or package_id_from(source.stem, "stylegan")
    target = Path(out) if out else user_models_dir() / model_id
    if os.path.lexists(target):  # before the (long) read: nothing to do if it cannot be written
        if not force:
            raise WeightsError("a package is already there (use --force to replace it, or --out)", target)
        check_replaceable(target, WeightsError)
    top = read_network_pickle(source)
    key, notes = "G_ema", []
    if isinstance(top, dict) and not isinstance(top.get("G_ema"), PersistentRecord) \
            and isinstance(top.get("G"), PersistentRecord):
        key = "G"
        notes.append(NO_G_EMA)
        log.warning("%s: %s", source, NO_G_EMA)
    net = extract_network(source, key=key, obj=top)
    try:
        generator = build_nvidia_generator(net.class_name, net.init_args, net.init_kwargs, net.tensors)
    except WeightsError as exc:
        raise WeightsError(f"{key}: {exc.problem}", source) from exc
    generation = "stylegan3" if isinstance(generator, StyleGAN3Generator) else "stylegan2"
    del generator
    kwargs = dict(zip(POSITIONAL, net.init_args))
    kwargs.update(net.init_kwargs)
    kwargs = _json_value(kwargs, key, source)
    manifest = package_manifest(source, model_id, name or source.stem, generation, kwargs, key, notes)
    if license_:
        manifest["license"] = license_
    weights = {k: v.contiguous() for k, v in net.tensors.items()}
    if os.path.lexists(target):
        check_replaceable(target, WeightsError)  # still a package, just before it is replaced
    try:
        folder = write_package(target, manifest, weights)
    except OSError as exc:
        raise WeightsError(f"cannot write: {exc.strerror or exc}", target) from None
    # GANSpace now, so the package's direction sliders are there from its first opening (cheap: the mapping only)
    from studio.io.weights import sha256_file
    from studio.manifest import read_manifest
    from studio.nets.stylegan_directions import cached_directions

    network = build_nvidia_generator(net.class_name, net.init_args, net.init_kwargs, weights)
    cached_directions(folder, sha256_file(read_manifest(folder).weights_path), network, k=DIRECTION_SLIDERS)
    return folder
