"""A VAE chosen per render (the `vae` parameter) and the VAE decode at large sizes.

Override: `vae` names a `.safetensors` file in the VAE folder (`<user data>/vae`, as A1111's models/VAE): a plain
file name, never a path, so a request restored from a picture cannot make the app read a file of its choosing. The
file may be in diffusers' AutoencoderKL layout (encoder.down_blocks.…) or the original one shared on model sites
(encoder.down.…, bare or under `first_stage_model.` / `vae.`, as in a full checkpoint); other keys (a training loss,
EMA copies) are ignored. It must fit the model's own VAE (same config): every tensor's shape is checked before it is
used, and a mismatch names the file and the tensors. The model's scaling factor is kept (an override is a finetune
of the same latent space, e.g. vae-ft-mse). One override is kept loaded beside the model's own VAE; switching is a
load of the VAE alone. Its name and sha256 go into the render's info (`vae`, `vae_hash`: A1111's "VAE" and
"VAE hash" settings).

Tiling: above `TILE_ABOVE` latent cells the decode runs in overlapping tiles blended at the seams (diffusers'
AutoencoderKL.tiled_decode, tiles of the VAE's native size) so 2048² fits in memory; below it the decode is the
plain one. Tiling is not exact: each tile normalises (GroupNorm) and attends (the mid-block attention) over itself
only, so it is used only where the whole decode would not fit.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from studio.errors import RequestError, WeightsError

VAE_PARAM = "vae"
SUFFIX = ".safetensors"
PREFIXES = ("first_stage_model.", "vae.")  # the VAE inside a full original checkpoint (SD 1.x/2.x, SDXL)
PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
TILE_ABOVE = 128 * 128  # latent cells (1024² for an 8× VAE): larger pictures decode in tiles


def vae_folder() -> Path:
    from studio.paths import user_data_dir

    return user_data_dir() / "vae"


def vae_spec():
    from studio.params import SAMPLER, Kind, ParamSpec

    return ParamSpec(VAE_PARAM, Kind.TEXT, "VAE", default="", render_only=True, group=SAMPLER,
                     help=f"Another VAE for this model: the name of a {SUFFIX} file in {vae_folder()} (empty: the "
                          "model's own)")


def vae_names() -> list[str]:
    """The VAE files there are to choose from, by name."""
    folder = vae_folder()
    try:
        return sorted(p.name for p in folder.iterdir() if p.suffix.lower() == SUFFIX and p.is_file())
    except OSError:
        return []


def vae_path(name: str) -> Path:
    """The file a `vae` value names: a plain file name in the VAE folder, a safetensors file."""
    if not name or Path(name).name != name or name in (".", "..") or "\\" in name or "/" in name:
        raise RequestError(f"the VAE must be a file name in {vae_folder()}, got {name!r}", field=f"params.{VAE_PARAM}")
    if not name.lower().endswith(SUFFIX):
        raise RequestError(f"{name!r}: a VAE is read from a {SUFFIX} file only (pickled .pt/.ckpt/.bin VAEs can run "
                           "code: convert them to .safetensors first)", field=f"params.{VAE_PARAM}")
    path = vae_folder() / name
    if not path.exists():
        there = ", ".join(vae_names()) or "none"
        raise RequestError(f"no VAE {name!r} in {vae_folder()} (there: {there})", field=f"params.{VAE_PARAM}")
    return path


def _state(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """The VAE's own tensors (prefix removed, other keys dropped) and their layout: "diffusers" or "original"."""
    prefix = next((p for p in PREFIXES if any(k.startswith(p) for k in tensors)), "")
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    state = {k: v for k, v in state.items() if k.startswith(PARTS)}
    diffusers = any(".down_blocks." in k or ".up_blocks." in k or ".mid_block." in k for k in state)
    return state, "diffusers" if diffusers else "original"


def read_vae(path: Path, like: Any) -> tuple[Any, str]:
    """A copy of the model's VAE `like` with the weights of `path`, and the file's sha256."""
    from studio.io.weights import check_weights_file, load_into, read_tensors_and_hash

    check_weights_file(path)
    tensors, sha = read_tensors_and_hash(path)
    state, layout = _state(tensors)
    if not state:
        raise WeightsError("not a VAE: no encoder./decoder. tensors (bare, or under first_stage_model. or vae.)", path)
    if layout == "original":
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        expected = like.state_dict()
        try:
            state = convert_ldm_vae_checkpoint(state, dict(like.config))
        except (KeyError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
            raise WeightsError(f"cannot read this original-layout VAE: {type(exc).__name__}: {exc}", path) from None
        for key, value in list(state.items()):  # the original attention's 1×1 convolutions are linear layers here
            if key in expected and value.ndim == 4 and expected[key].ndim == 2 and value.shape[2:] == (1, 1):
                state[key] = value[:, :, 0, 0]
    vae = copy.deepcopy(like)
    try:
        load_into(vae, {k: v for k, v in state.items()}, path)
    except WeightsError as exc:
        raise WeightsError(exc.problem.replace("weights do not fit the architecture in model.toml",
                                               f"this {layout}-layout VAE does not fit the model's VAE"), path) from None
    return vae.eval(), sha


def chosen_vae(net: Any, name: str, device, dtype) -> tuple[Any, dict]:
    """The VAE a render uses (the model's own for "") and what its info records about it."""
    if not name:
        return net.vae, {}
    loaded = getattr(net, "vae_override", None)
    if loaded is None or getattr(net, "vae_override_name", "") != name:
        vae, sha = read_vae(vae_path(name), net.vae)
        if hasattr(net, "vae_override"):  # the previous override goes before the next is moved to the device
            delattr(net, "vae_override")
        net.add_module("vae_override", vae.to(device, dtype))  # moved and cast with the model from now on
        net.vae_override_name, net.vae_override_sha = name, sha
    return net.vae_override, {"vae": Path(name).stem, "vae_hash": net.vae_override_sha[:10]}


def decode_latents(vae, z: torch.Tensor, tile_above: int = TILE_ABOVE) -> Any:
    """The VAE decode of unscaled latents `z` (1, C, h, w) → pixels (1, 3, H, W) in −1 … 1: in one piece, or in tiles
    above `tile_above` latent cells."""
    if z.shape[-1] * z.shape[-2] <= tile_above:
        return vae.decode(z).sample
    return vae.tiled_decode(z).sample
