"""CLIP tokenizer folders in both layouts diffusers pipelines ship, checked before transformers reads them.

- **BPE files** (what transformers 4 and the original releases save): `vocab.json` + `merges.txt`.
- **tokenizer.json** (what transformers 5 saves: `save_pretrained` writes `tokenizer.json` and
  `tokenizer_config.json` only): one JSON file for the `tokenizers` library, holding the same vocabulary and merges
  under `model`, plus the normaliser, pre-tokeniser and the special tokens.

Either is read through studio.files first (a regular file, at most MAX_JSON_BYTES, nested at most MAX_JSON_DEPTH),
its vocabulary and merges bounded by MAX_VOCABULARY and their shapes checked, so a hostile folder is refused with
one line naming the file instead of reaching the Rust parser. Loading picks the class that reads what is there.
"""

from __future__ import annotations

from pathlib import Path

from studio.errors import WeightsError
from studio.files import read_json
from studio.limits import MAX_VOCABULARY, quote

TOKENIZER_JSON = "tokenizer.json"
BPE_PARTS = ("vocab.json", "merges.txt")
MAX_ADDED_TOKENS = 10_000  # CLIP has 2 (start and end of text); textual-inversion folders add a few
MAX_TOKEN_CHARS = 1_000


def has_bpe_files(folder: Path) -> bool:
    return all((folder / name).is_file() for name in BPE_PARTS)


def has_tokenizer_json(folder: Path) -> bool:
    return (folder / TOKENIZER_JSON).is_file()


def layout_problem(folder: Path, part: str = "tokenizer") -> str:
    """'' when `folder` holds a tokenizer in either layout, else what is missing (for find_source's list)."""
    if has_bpe_files(folder) or has_tokenizer_json(folder):
        return ""
    return f"{part}/ has neither tokenizer.json nor vocab.json with merges.txt"


def _whole(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and 0 <= value < MAX_VOCABULARY


def check_tokenizer_json(path: Path) -> None:
    """A `tokenizers` BPE file as transformers 5 writes it for CLIP: an object whose `model` is a BPE model with a
    vocabulary of at most MAX_VOCABULARY tokens (text → whole-number id) and as many merges at most (each "a b" or
    ["a", "b"]), and at most MAX_ADDED_TOKENS added tokens (each an id and its text). WeightsError naming the file
    otherwise."""
    data = read_json(path, WeightsError, what="JSON file")
    if not isinstance(data, dict):
        raise WeightsError(f"not a JSON object (it holds {type(data).__name__})", path)
    model = data.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        kind = model.get("type") if isinstance(model, dict) else model
        raise WeightsError(f"not a BPE tokenizer (model.type is {quote(kind, 40)}); CLIP's tokenizer is BPE", path)
    vocab, merges = model.get("vocab"), model.get("merges")
    if not isinstance(vocab, dict):
        raise WeightsError(f"model.vocab must be an object of token → id, got {type(vocab).__name__}", path)
    if len(vocab) > MAX_VOCABULARY:
        raise WeightsError(f"{len(vocab):,} tokens is over the limit of {MAX_VOCABULARY:,}", path)
    for token, index in vocab.items():
        if not _whole(index):
            raise WeightsError(f"the id of token {quote(token, 60)} must be a whole number in 0..{MAX_VOCABULARY - 1},"
                               f" got {quote(index, 60)}", path)
    if not isinstance(merges, list):
        raise WeightsError(f"model.merges must be a list, got {type(merges).__name__}", path)
    if len(merges) > MAX_VOCABULARY:
        raise WeightsError(f"{len(merges):,} merges is over the limit of {MAX_VOCABULARY:,}", path)
    for number, merge in enumerate(merges, 1):
        pair = merge.split(" ") if isinstance(merge, str) else merge
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) and s for s in pair)):
            raise WeightsError(f"merge {number} is not a merge of two symbols: {quote(merge, 80)}", path)
    added = data.get("added_tokens", [])
    if not isinstance(added, list) or len(added) > MAX_ADDED_TOKENS:
        raise WeightsError(f"added_tokens must be a list of at most {MAX_ADDED_TOKENS:,} tokens", path)
    for token in added:
        if not (isinstance(token, dict) and _whole(token.get("id")) and isinstance(token.get("content"), str)
                and 0 < len(token["content"]) <= MAX_TOKEN_CHARS):
            raise WeightsError(f"an added token must have a whole-number id and a text of 1 to {MAX_TOKEN_CHARS} "
                               f"characters, got {quote(token, 80)}", path)


def load_tokenizer(folder: Path):
    """CLIP's tokenizer from a checked folder, offline: the BPE-files class where vocab.json and merges.txt are
    there (transformers 4's CLIPTokenizer reads only those), else the fast class over tokenizer.json."""
    import transformers

    if has_bpe_files(folder):
        cls = transformers.CLIPTokenizer
    else:  # transformers 5's CLIPTokenizer is the fast one; 4 names it CLIPTokenizerFast
        cls = getattr(transformers, "CLIPTokenizerFast", transformers.CLIPTokenizer)
    return cls.from_pretrained(str(folder), local_files_only=True)
