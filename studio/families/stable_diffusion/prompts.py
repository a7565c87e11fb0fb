"""AUTOMATIC1111's prompt language for Stable Diffusion's CLIP text encoder, written from its published rules
(modules/prompt_parser.py `parse_prompt_attention`, modules/extra_networks.py, modules/sd_hijack_clip.py):

- `<kind:name:weight>` tags (`<lora:…>`, `<hypernet:…>`) are taken out of the text and returned, for the code that
  applies those networks;
- `(words)` multiplies their attention by 1.1, `[words]` divides it by 1.1, `(words:1.3)` sets a factor, brackets
  nest and multiply, `\\(` `\\)` `\\[` `\\]` `\\\\` are literal, an unclosed bracket runs to the end, a stray closing
  one is text; `BREAK` (capitals, a word of its own) ends a chunk;
- the prompt is tokenised without truncation and cut into chunks of 75 tokens, each sent through CLIP as
  BOS + 75 + EOS (padded with EOS): a chunk that fills up goes back to its last comma when that comma is within the
  last 20 tokens, so a phrase is not split; the chunks' hidden states are concatenated (77 per chunk);
- each token's hidden state is multiplied by its weight, then the whole is rescaled so its mean is the unweighted
  mean (A1111's "Original" emphasis);
- clip skip N ≥ 2 takes the hidden states N − 1 layers before the last, through CLIP's final layer norm;
- textual-inversion embeddings are found by their name's tokens in the prompt and their vectors replace those
  tokens (see `studio.families.stable_diffusion.embeddings`).

No torch at import; the encoder runs wherever its weights are (the caller's worker thread).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from studio.errors import RequestError

if TYPE_CHECKING:
    import torch

CHUNK = 75  # prompt tokens per CLIP pass (77 with BOS and EOS)
COMMA_BACKTRACK = 20  # A1111's default "comma padding backtrack"
ROUND, SQUARE = 1.1, 1 / 1.1
BREAK = -1.0  # the weight that marks a BREAK piece
MAX_CLIP_SKIP = 12
MAX_CHUNKS = 32  # 2,400 tokens: more is not a prompt (and would cost minutes per step)

_EXTRA = re.compile(r"<(\w+):([^>]+)>")
_ATTENTION = re.compile(r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|   # escapes and a lone backslash
\(|\[|
:\s*([+-]?[.\d]+)\s*\)|       # the end of (text:1.3)
\)|]|
[^\\()\[\]:]+|
:
""", re.X)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


@dataclass(frozen=True)
class ExtraNetwork:
    """A `<kind:name:weight>` tag taken out of a prompt: kind as written (lora, hypernet, …), the network's name and
    its weight (1.0 when not given). `more` keeps further fields (A1111's LoRA takes a separate UNet weight)."""

    kind: str
    name: str
    weight: float
    more: tuple[str, ...] = ()


def extra_networks(prompt: str) -> tuple[str, tuple[ExtraNetwork, ...]]:
    """The prompt without its `<kind:args>` tags, and the tags in order. A weight that is not a number is a
    RequestError naming the tag."""
    found: list[ExtraNetwork] = []

    def take(m: re.Match) -> str:
        name, *rest = m.group(2).split(":")
        weight = 1.0
        if rest and rest[0].strip():
            try:
                weight = float(rest[0])
            except ValueError:
                raise RequestError(f"the weight in {m.group(0)} is not a number", field="prompt") from None
            if not math.isfinite(weight):
                raise RequestError(f"the weight in {m.group(0)} is not a finite number", field="prompt")
        found.append(ExtraNetwork(m.group(1), name.strip(), weight, tuple(rest[1:])))
        return ""

    return _EXTRA.sub(take, prompt), tuple(found)


def parse_attention(text: str) -> list[tuple[str, float]]:
    """(text, weight) pieces of a prompt by A1111's bracket rules; `("BREAK", -1.0)` marks a BREAK. Neighbours of
    equal weight are merged; an empty prompt is [("", 1.0)]."""
    res: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for piece in res[start:]:
            piece[1] *= factor

    for m in _ATTENTION.finditer(text):
        word, weight = m.group(0), m.group(1)
        if word.startswith("\\"):
            res.append([word[1:], 1.0])
        elif word == "(":
            round_open.append(len(res))
        elif word == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            try:
                factor = float(weight)
            except ValueError:  # "(a:.)": not a number, as A1111 it is then plain text
                res.append([word, 1.0])
                continue
            multiply(round_open.pop(), factor)
        elif word == ")" and round_open:
            multiply(round_open.pop(), ROUND)
        elif word == "]" and square_open:
            multiply(square_open.pop(), SQUARE)
        else:
            for i, part in enumerate(_BREAK.split(word)):
                if i:
                    res.append(["BREAK", BREAK])
                res.append([part, 1.0])
    for start in round_open:
        multiply(start, ROUND)
    for start in square_open:
        multiply(start, SQUARE)
    if not res:
        res = [["", 1.0]]
    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return [(str(t), float(w)) for t, w in res]


class Embedding(Protocol):
    """A textual-inversion embedding as the chunker needs it: its name, file and number of vectors."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> Path: ...

    @property
    def vectors(self) -> int: ...


FindEmbedding = Callable[[Sequence[int], int], "tuple[Embedding, int] | None"]


@dataclass
class Chunk:
    """One CLIP pass: 77 token ids (BOS … EOS), a weight per token, and the embeddings to put in at offsets."""

    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    fixes: list[tuple[int, Embedding]] = field(default_factory=list)


@dataclass(frozen=True)
class Specials:
    """The tokenizer's ids the chunker needs."""

    bos: int
    eos: int
    pad: int
    comma: int | None


def specials_of(tokenizer) -> Specials:
    vocab = tokenizer.get_vocab()
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return Specials(int(bos), int(eos), int(pad), vocab.get(",</w>"))


def chunk_tokens(pieces: Sequence[tuple[str, float]], tokenized: Sequence[Sequence[int]], ids: Specials,
                 find: FindEmbedding | None = None) -> tuple[list[Chunk], int]:
    """A1111's `tokenize_line`: the pieces' tokens (no BOS/EOS, not truncated) in chunks of 77, and the number of
    prompt tokens counted as A1111 counts them (75 per full chunk)."""
    chunks: list[Chunk] = []
    chunk = Chunk()
    count = 0
    last_comma = -1

    def next_chunk(last: bool = False) -> None:
        nonlocal chunk, count, last_comma
        count += len(chunk.tokens) if last else CHUNK
        missing = CHUNK - len(chunk.tokens)
        if missing > 0:
            chunk.tokens += [ids.eos] * missing
            chunk.weights += [1.0] * missing
        chunk.tokens = [ids.bos, *chunk.tokens, ids.eos]
        chunk.weights = [1.0, *chunk.weights, 1.0]
        last_comma = -1
        chunks.append(chunk)
        chunk = Chunk()

    for tokens, (text, weight) in zip(tokenized, pieces):
        if text == "BREAK" and weight == BREAK:
            next_chunk()
            continue
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == ids.comma:
                last_comma = len(chunk.tokens)
            elif len(chunk.tokens) == CHUNK and last_comma != -1 and len(chunk.tokens) - last_comma <= COMMA_BACKTRACK:
                cut = last_comma + 1  # the words after the comma move on to the next chunk
                moved, moved_weights = chunk.tokens[cut:], chunk.weights[cut:]
                chunk.tokens, chunk.weights = chunk.tokens[:cut], chunk.weights[:cut]
                next_chunk()
                chunk.tokens, chunk.weights = moved, moved_weights
            if len(chunk.tokens) == CHUNK:
                next_chunk()
            hit = find(tokens, position) if find is not None else None
            if hit is None:
                chunk.tokens.append(token)
                chunk.weights.append(weight)
                position += 1
                continue
            embedding, used = hit
            if len(chunk.tokens) + embedding.vectors > CHUNK:
                next_chunk()
            chunk.fixes.append((len(chunk.tokens), embedding))
            chunk.tokens += [0] * embedding.vectors
            chunk.weights += [weight] * embedding.vectors
            position += used
    if chunk.tokens or not chunks:
        next_chunk(last=True)
    return chunks, count


def empty_chunk(ids: Specials) -> Chunk:
    """What A1111 pads a batch with: BOS and 76 EOS, all at weight 1."""
    return Chunk([ids.bos] + [ids.eos] * (CHUNK + 1), [1.0] * (CHUNK + 2))


@dataclass(frozen=True)
class Parsed:
    """A prompt read the A1111 way: its weighted pieces, its network tags and its chunks."""

    pieces: tuple[tuple[str, float], ...]
    networks: tuple[ExtraNetwork, ...]
    chunks: tuple[Chunk, ...]
    tokens: int


def parse_prompt(prompt: str, tokenizer, find: FindEmbedding | None = None) -> Parsed:
    """Tags out, brackets read, tokens chunked. More than MAX_CHUNKS chunks is a RequestError."""
    text, networks = extra_networks(prompt)
    pieces = parse_attention(text)
    tokenized = tokenizer([t for t, _ in pieces], truncation=False, add_special_tokens=False)["input_ids"]
    chunks, count = chunk_tokens(pieces, tokenized, specials_of(tokenizer), find)
    if len(chunks) > MAX_CHUNKS:
        raise RequestError(f"the prompt is {count:,} tokens long ({len(chunks)} chunks of {CHUNK}); at most "
                           f"{MAX_CHUNKS} chunks are read", field="prompt")
    return Parsed(tuple(pieces), networks, tuple(chunks), count)


def check_clip_skip(clip_skip: int | float, layers: int) -> int:
    """Clip skip as a whole number of layers this encoder has (2.0 from a JSON file is 2)."""
    if isinstance(clip_skip, float) and clip_skip.is_integer():
        clip_skip = int(clip_skip)
    if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or not 1 <= clip_skip <= layers:
        raise RequestError(f"clip skip must be a whole number from 1 to {layers} (this text encoder's layers), got "
                           f"{clip_skip!r}", field="params.clip_skip")
    return clip_skip


def _token_embedding(text_encoder) -> torch.nn.Module:
    inner = getattr(text_encoder, "text_model", text_encoder)  # transformers 4 nests CLIP under text_model
    return inner.embeddings.token_embedding


def _final_norm(text_encoder) -> torch.nn.Module:
    return getattr(text_encoder, "text_model", text_encoder).final_layer_norm


def encode_chunk(text_encoder, chunk: Chunk, ids: Specials, clip_skip: int = 1,
                 vectors: Callable[[Embedding], torch.Tensor] | None = None,
                 select: Callable[[Any], torch.Tensor] | None = None) -> torch.Tensor:
    """One chunk through CLIP: (1, 77, D) with embeddings put in, clip skip and the mean-restoring emphasis.
    `select`, when given, picks the states from the encoder's output (called with `output_hidden_states`) instead of
    clip skip (SDXL's penultimate layer, sdxl_prompts.py)."""
    import torch

    device = next(text_encoder.parameters()).device
    tokens = list(chunk.tokens)
    if ids.pad != ids.eos:  # OpenCLIP (SD 2.x) pads with its own token after the first EOS
        end = tokens.index(ids.eos)
        tokens[end + 1:] = [ids.pad] * (len(tokens) - end - 1)
    input_ids = torch.tensor([tokens], device=device)
    hook = None
    if chunk.fixes:
        if vectors is None:
            raise RuntimeError("a chunk with embeddings needs their vectors")
        fixes = [(offset + 1, vectors(emb)) for offset, emb in chunk.fixes]  # + 1: after BOS

        def put_in(module, args, out):
            out = out.clone()
            for at, vec in fixes:
                out[0, at:at + len(vec)] = vec.to(out.device, out.dtype)
            return out

        hook = _token_embedding(text_encoder).register_forward_hook(put_in)
    try:
        if select is not None:
            z = select(text_encoder(input_ids, output_hidden_states=True))
        elif clip_skip > 1:
            out = text_encoder(input_ids, output_hidden_states=True)
            z = _final_norm(text_encoder)(out.hidden_states[-clip_skip])
        else:
            z = text_encoder(input_ids)[0]
    finally:
        if hook is not None:
            hook.remove()
    return emphasis(z, torch.tensor(chunk.weights, device=z.device, dtype=z.dtype))


def emphasis(z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A1111's "Original" emphasis: each token's hidden state times its weight, then the whole rescaled to the
    unweighted mean."""
    before = z.float().mean()
    z = z * weights.reshape(1, -1, 1)
    after = z.float().mean()
    return z * (before / after).to(z.dtype)


def encode_prompt(text_encoder, tokenizer, parsed: Parsed, clip_skip: int = 1,
                  vectors: Callable[[Embedding], torch.Tensor] | None = None) -> torch.Tensor:
    """All chunks of a parsed prompt through CLIP, concatenated: (1, 77·chunks, D)."""
    import torch

    ids = specials_of(tokenizer)
    return torch.cat([encode_chunk(text_encoder, c, ids, clip_skip, vectors) for c in parsed.chunks], dim=1)


def pair(cond: torch.Tensor, uncond: torch.Tensor, empty: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt and negative prompt at the same length, the shorter padded with the empty prompt's 77 states per
    missing chunk (A1111's "pad prompt/negative prompt to be same length"), so the UNet takes them as one batch."""
    import torch

    n = max(cond.shape[1], uncond.shape[1])

    def grow(z: torch.Tensor) -> torch.Tensor:
        missing = (n - z.shape[1]) // empty.shape[1]
        return torch.cat([z, empty.expand(z.shape[0], -1, -1).repeat(1, missing, 1)], 1) if missing else z

    return grow(cond), grow(uncond)
