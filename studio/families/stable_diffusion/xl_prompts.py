"""SDXL prompts read the AUTOMATIC1111 way, as its SDXL text conditioning does (modules/sd_hijack_clip.py
`FrozenCLIPEmbedderForSDXLWithCustomWords` and sd_hijack_open_clip.py `FrozenOpenCLIPEmbedder2WithCustomWords`,
modules/sd_models_xl.py `get_learned_conditioning`), on top of the SD 1.x reading in prompts.py:

- the same parse for both text encoders (`<kind:…>` tags out, `(word:1.2)` / `[word]` weights, escapes, BREAK), each
  tokenizer cutting the tokens into chunks of 75 (going back to a comma within the last 20 tokens); CLIP ViT-L and
  OpenCLIP ViT-bigG share one vocabulary, so both cut the prompt at the same places;
- each chunk goes through both encoders, SDXL's *penultimate* hidden states without the final layer norm (the second
  encoder pads with its own token after the first end-of-text, as OpenCLIP does), each encoder's states weighted and
  rescaled to their unweighted mean on their own (A1111's "Original" emphasis, per encoder);
- the two encoders' states side by side on the channel axis (768 + 1280 = 2048 for SDXL base), the chunks one after
  another on the token axis (77 per chunk);
- the pooled embedding (the UNet's `text_embeds`) is encoder 2's projected output for the FIRST chunk, as A1111
  returns `zs[0].pooled`;
- textual-inversion embeddings are put into both encoders: the first gets an SDXL embedding's `clip_l` vectors, the
  second its `clip_g` (embeddings.py reads whichever is as wide as the encoder).

Clip skip is not used (A1111's default: its "Clip skip SDXL" option is off, and SDXL reads the penultimate layer of
both encoders whatever "Clip skip" says). A prompt of at most 75 tokens with no brackets is exactly diffusers'
StableDiffusionXLPipeline reading: the same token ids, the same layers, weights of 1 leave the states as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from studio.errors import RequestError, WeightsError
from studio.families.stable_diffusion.prompts import Parsed, encode_chunk, parse_prompt, specials_of

if TYPE_CHECKING:
    import torch

    from studio.families.stable_diffusion.embeddings import EmbeddingBook


@dataclass(frozen=True)
class XLText:
    """A prompt's SDXL conditioning: the UNet's context (1, 77·chunks, D₁ + D₂), encoder 2's pooled projection of
    the first chunk (1, P), and the prompt as the first tokenizer read it (its tags, chunks and embeddings used)."""

    context: torch.Tensor
    pooled: torch.Tensor
    parsed: Parsed


def _penultimate(out) -> torch.Tensor:
    return out.hidden_states[-2]


def encode_xl_prompt(prompt: str, tokenizer, text_encoder, tokenizer_2, text_encoder_2,
                     book: EmbeddingBook | None = None, book_2: EmbeddingBook | None = None) -> XLText:
    """`prompt` through both SDXL text encoders, read the A1111 way (see the module's docstring). `book` and `book_2`
    find textual-inversion embeddings for each encoder. RequestError when the prompt is too long (prompts.py) or the
    two tokenizers cut it differently (they share a vocabulary in every SDXL model; a pair that does not is said)."""
    import torch

    parsed = parse_prompt(prompt, tokenizer, book.find if book is not None else None)
    parsed_2 = parse_prompt(prompt, tokenizer_2, book_2.find if book_2 is not None else None)
    for chunk, chunk_2 in zip(parsed.chunks, parsed_2.chunks):
        for (_, emb), (_, emb_2) in zip(chunk.fixes, chunk_2.fixes):
            if emb.vectors != emb_2.vectors:
                raise WeightsError(f"an SDXL embedding needs as many vectors for each text encoder; this one has "
                                   f"{emb.vectors} for the first (clip_l) and {emb_2.vectors} for the second (clip_g)",
                                   emb.path)
    if [len(c.tokens) for c in parsed.chunks] != [len(c.tokens) for c in parsed_2.chunks] or \
            [[at for at, _ in c.fixes] for c in parsed.chunks] != [[at for at, _ in c.fixes] for c in parsed_2.chunks]:
        raise RequestError(f"SDXL's two tokenizers read the prompt differently ({len(parsed.chunks)} and "
                           f"{len(parsed_2.chunks)} chunks of 75 tokens, or embeddings of different lengths): the "
                           "model's tokenizer/ and tokenizer_2/ should share one vocabulary", field="prompt")
    ids, ids_2 = specials_of(tokenizer), specials_of(tokenizer_2)
    pooled: list[torch.Tensor] = []

    def penultimate_and_pooled(out) -> torch.Tensor:
        pooled.append(out[0])  # CLIPTextModelWithProjection's text_embeds, before any emphasis (as A1111)
        return out.hidden_states[-2]

    states = []
    with torch.inference_mode():
        for chunk, chunk_2 in zip(parsed.chunks, parsed_2.chunks):
            z = encode_chunk(text_encoder, chunk, ids, vectors=book.vectors if book is not None else None,
                             select=_penultimate)
            z_2 = encode_chunk(text_encoder_2, chunk_2, ids_2,
                               vectors=book_2.vectors if book_2 is not None else None, select=penultimate_and_pooled)
            states.append(torch.cat([z, z_2.to(z.device, z.dtype)], dim=-1))
    return XLText(torch.cat(states, dim=1), pooled[0], parsed)
