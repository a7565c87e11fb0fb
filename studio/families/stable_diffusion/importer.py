"""`latent-studio import FILE.ckpt --sd`: a pickled Stable Diffusion checkpoint rewritten as the .safetensors file the
app opens, read only through torch's weights-only loader."""

from __future__ import annotations

from pathlib import Path

from studio.errors import WeightsError
from studio.families.stable_diffusion.files import SD1_TEXT_KEY, UNET_KEY, checkpoint_architecture
from studio.io.checkpoints import read_checkpoint


def import_sd_checkpoint(path: str | Path, out: str | Path | None = None, force: bool = False) -> Path:
    """A pickled Stable Diffusion 1.x checkpoint (.ckpt) rewritten as the .safetensors file the app opens (beside it
    by default), read with the weights-only loader: nothing in it is executed, and checkpoints whose pickle needs
    code (training callbacks, say) are refused."""
    from safetensors.torch import save_file

    path = Path(path)
    out = Path(out) if out else path.with_suffix(".safetensors")
    if out.exists() and not force:
        raise WeightsError("a file is already there (use --force to replace it, or --out)", out)
    tensors = read_checkpoint(path)
    if UNET_KEY not in tensors:
        raise WeightsError("not a Stable Diffusion checkpoint (no model.diffusion_model.* weights)", path)
    if SD1_TEXT_KEY not in tensors:
        raise WeightsError("not a full SD 1.x checkpoint (no cond_stage_model.transformer.* text encoder)", path)
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"converted_from": path.name, "by": "latent-studio import --sd"})
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WeightsError(f"cannot write: {exc.strerror or exc}", out) from None
    checkpoint_architecture(out)
    return out
