"""`latent-studio import FILE.ckpt --sd`: a pickled Stable Diffusion checkpoint rewritten as the .safetensors file the
app opens, read only through torch's weights-only loader."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from studio.errors import WeightsError
from studio.families.stable_diffusion import sdxl
from studio.families.stable_diffusion.files import (HF5_TEXT_KEY, SD1_TEXT_KEY, SD2_TEXT_KEY, UNET_KEY,
                                                    checkpoint_architecture, safetensors_keys)
from studio.io.checkpoints import read_checkpoint

NOT_SD_FILE = "is not a Stable Diffusion .safetensors file; refusing to replace it"


def _check_replaceable(out: Path) -> None:
    """--force replaces only what this command writes: a regular .safetensors file holding an SD UNet. A folder, a
    link, or any other file (a user's) is refused, naming it, and left alone."""
    try:
        if not stat.S_ISREG(os.lstat(out).st_mode) or UNET_KEY not in safetensors_keys(out):
            raise WeightsError(NOT_SD_FILE, out, "--out")
    except (OSError, WeightsError):
        raise WeightsError(NOT_SD_FILE, out, "--out") from None


def import_sd_checkpoint(path: str | Path, out: str | Path | None = None, force: bool = False) -> Path:
    """A pickled Stable Diffusion 1.x / 2.x or SDXL base checkpoint (.ckpt) rewritten as the .safetensors file the app
    opens (beside it by default), read with the weights-only loader: nothing in it is executed, and checkpoints whose
    pickle needs code (training callbacks, say) are refused. With `force` a Stable Diffusion .safetensors file already at `out`
    is replaced; nothing else ever is. The file is written to a unique temporary beside it and renamed into place."""
    from safetensors.torch import save_file

    from studio.files import check_name
    from studio.io.atomic import forget, temporary_beside

    path = Path(path)
    out = Path(out) if out else path.with_suffix(".safetensors")
    check_name(out.name, "file name", WeightsError, field="--out")  # not `..`, not empty, not hidden
    if os.path.lexists(out):
        if not force:
            raise WeightsError("a file is already there (use --force to replace it, or --out)", out)
        _check_replaceable(out)
    tensors = read_checkpoint(path)
    if UNET_KEY not in tensors:
        raise WeightsError("not a Stable Diffusion checkpoint (no model.diffusion_model.* weights)", path)
    if not any(key in tensors for key in (SD1_TEXT_KEY, HF5_TEXT_KEY, SD2_TEXT_KEY)) and not sdxl.is_xl_checkpoint(set(tensors)):
        raise WeightsError("not a full SD 1.x / 2.x or SDXL base checkpoint (no cond_stage_model.transformer.*, "
                           "cond_stage_model.model.* or conditioner.embedders.* text encoder)", path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot write: {exc.strerror or exc}", out) from None
    tmp = temporary_beside(out, out.parent)  # a unique name of ours: a user's `<out>.tmp` is never touched
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"converted_from": path.name, "by": "latent-studio import --sd"})
        if os.path.lexists(out):
            _check_replaceable(out)  # still ours, just before it is replaced
        os.replace(tmp, out)
    except OSError as exc:
        raise WeightsError(f"cannot write: {exc.strerror or exc}", out) from None
    finally:
        if os.path.lexists(tmp):
            try:
                tmp.unlink()
            except OSError:
                pass
        forget(tmp)
    checkpoint_architecture(out)
    return out
