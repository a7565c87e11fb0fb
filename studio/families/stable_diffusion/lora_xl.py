"""kohya's SDXL LoRAs on diffusers' UNet: kohya sd-scripts trains SDXL on the original (Stability's generative-models,
"SGM") UNet and names its LoRA layers by that UNet's modules (`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_
to_q`, `lora_unet_middle_block_1_…`, `lora_unet_output_blocks_2_1_…`, `lora_unet_label_emb_0_0`, …); the app runs
diffusers' UNet2DConditionModel. `original_unet_names` gives, for every layer of a diffusers UNet, its name in the
original layout, read from the UNet's own blocks (so it holds for SDXL base, SD 1.x / 2.x and any UNet of these block
types), with the block rules of diffusers' single-file converter (`convert_ldm_unet_checkpoint`, which is what opens
the same layout's checkpoints in `load_parts`):

- `input_blocks.0.0` is conv_in; then, down block by down block, one input block per resnet (`.0`, its attention
  `.1`) and one for the downsampler (`.0.op`);
- `middle_block.0/1/2` are the mid block's first resnet, its attention and its second resnet;
- `output_blocks.N` take each up block's resnets in turn (`.0`, attention `.1`), the upsampler after the block's last
  one (`.2.conv` after an attention, `.1.conv` without);
- `time_embed.0/2`, `label_emb.0.0/0.2` (SDXL's added embedding) and `out.0/2` are the time embedding, the added
  embedding and the output norm / conv;
- inside a resnet `in_layers.0/2`, `emb_layers.1`, `out_layers.0/3` and `skip_connection` are norm1 / conv1,
  time_emb_proj, norm2 / conv2 and conv_shortcut; inside an attention the names are the same in both layouts.

The test (tests/families/test_sdxl_a1111.py) checks every layer against diffusers' converter and against diffusers'
own `load_lora_weights`. No torch at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
           "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_OUTSIDE = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
            "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
            "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _count(block, name: str) -> int:
    modules = getattr(block, name, None)
    return len(modules) if modules is not None else 0


def block_names(unet: nn.Module) -> dict[str, tuple[str, bool]]:
    """diffusers block prefix → (original prefix, whether it is a resnet) for the UNet's blocks."""
    out: dict[str, tuple[str, bool]] = {}
    number = 1
    for i, block in enumerate(getattr(unet, "down_blocks", ())):
        for j in range(_count(block, "resnets")):
            out[f"down_blocks.{i}.resnets.{j}"] = (f"input_blocks.{number}.0", True)
            if j < _count(block, "attentions"):
                out[f"down_blocks.{i}.attentions.{j}"] = (f"input_blocks.{number}.1", False)
            number += 1
        if _count(block, "downsamplers"):
            out[f"down_blocks.{i}.downsamplers.0.conv"] = (f"input_blocks.{number}.0.op", False)
            number += 1
    mid = getattr(unet, "mid_block", None)
    if mid is not None:
        for j in range(_count(mid, "resnets")):
            out[f"mid_block.resnets.{j}"] = (f"middle_block.{2 * j}", True)
        for j in range(_count(mid, "attentions")):
            out[f"mid_block.attentions.{j}"] = (f"middle_block.{2 * j + 1}", False)
    number = 0
    for i, block in enumerate(getattr(unet, "up_blocks", ())):
        resnets, attentions = _count(block, "resnets"), _count(block, "attentions")
        for j in range(resnets):
            out[f"up_blocks.{i}.resnets.{j}"] = (f"output_blocks.{number}.0", True)
            if j < attentions:
                out[f"up_blocks.{i}.attentions.{j}"] = (f"output_blocks.{number}.1", False)
            if j == resnets - 1 and _count(block, "upsamplers"):
                out[f"up_blocks.{i}.upsamplers.0.conv"] = (f"output_blocks.{number}.{2 if attentions else 1}.conv",
                                                           False)
            number += 1
    return out


def original_unet_names(unet: nn.Module) -> dict[str, str]:
    """diffusers module name → its name in the original (SGM / CompVis) layout, for every module of `unet` inside a
    block or one of the outside layers (conv_in, time and added embeddings, output norm and conv)."""
    blocks = block_names(unet)
    out: dict[str, str] = {}
    for name, _module in unet.named_modules():
        if name in _OUTSIDE:
            out[name] = _OUTSIDE[name]
            continue
        prefix = name
        while prefix and prefix not in blocks:
            prefix = prefix.rpartition(".")[0]
        if not prefix:
            continue
        original, resnet = blocks[prefix]
        rest = name[len(prefix):].lstrip(".")
        if resnet and rest:
            head, dot, tail = rest.partition(".")
            rest = _RESNET.get(head, head) + dot + tail
        out[name] = f"{original}.{rest}" if rest else original
    return out
