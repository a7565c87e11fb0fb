"""The limits on what a file may ask for, in one place, checked before any big allocation.

Model packages, shared pictures, sounds, videos and projects are untrusted input: a number in one of them must not
make the app allocate gigabytes, loop for hours or recurse until Python gives up. Each limit below is documented
where it is defined; `check` refuses a value over a limit with a one-line error naming the file and field, and
`quote` keeps any bad value quoted in a message short.

The limits are far above what the shipped models, Stable Diffusion 1.x (512² / 768², 860 M-parameter UNet) or an
artist's hour-long timeline need, and far below what would exhaust a desktop machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from studio.errors import StudioError

# --- pictures and sounds -------------------------------------------------------------------------------------------
MAX_SIDE = 8192  # px: the widest or tallest picture a request, a manifest or a project may ask for
MAX_PIXELS = 8192 * 8192  # px: width × height of one output picture (67 M: a 4-channel float image is 1 GiB)
MAX_IMAGE_PIXELS = 8192 * 8192  # px: the largest picture decoded from a file (init images, imports, datasets)
MAX_SOUND_SECONDS = 600  # s: the longest sound a model may declare (output.length / sample_rate)
MAX_SAMPLE_RATE = 384_000  # Hz

# --- networks ------------------------------------------------------------------------------------------------------
MAX_STEPS = 1000  # sampler steps of one render (DDPM's own schedule is 1000 steps)
MAX_WIDTH = 16384  # any one channel count, hidden size, latent dimension or layer count in model.toml
MAX_LATENT_SIZE = 1 << 24  # numbers in one latent (SD's 4×128×128 at 1024² is 65 536)
MAX_PARAMETERS = 4_000_000_000  # parameters of one built network (SDXL's UNet is 2.6 G)
MAX_LABELS = 100_000  # class labels of one model
MAX_TRIAL_SECONDS = 60.0  # s: the longest a module's trial render in `wrap` may take (then its worker process is ended)
MAX_TRAIN_TIMESTEPS = 100_000  # steps of a noise schedule (model.toml train_timesteps, SD's num_train_timesteps)

# --- Stable Diffusion LoRAs ----------------------------------------------------------------------------------------
MAX_LORAS = 16  # LoRAs applied to one render (prompt tags and the `loras` list together)
MAX_LORA_RANK = 1024  # rank of one LoRA layer (shared LoRAs use 4 … 256; a full-rank extract of SD 1.x's widest layer is 1280)
MAX_LORA_LAYERS = 4096  # patched layers in one LoRA file (an SD 1.x UNet + text encoder LoRA patches about 260; SDXL about 800)
MAX_LORA_WEIGHT = 100.0  # |weight| of one LoRA in a request (artists use −2 … 2)
MAX_LORA_FOLDER_FILES = 20_000  # files looked at while searching the LoRA folders for a name

# --- timelines and videos ------------------------------------------------------------------------------------------
MAX_KEYFRAMES = 10_000  # keyframes in one timeline
MAX_DURATION = 3600.0  # s: the longest timeline (and the longest span of one keyframe)
MAX_FPS = 240
MAX_FRAMES = 3600 * 60  # frames of one video: an hour at 60 fps
MAX_GRID_CELLS = 1024  # cells of one contact sheet or X/Y grid (32 × 32)

# --- files and text ------------------------------------------------------------------------------------------------
MAX_JSON_DEPTH = 64  # nesting of JSON in a request, project, model_index.json or stored metadata
MAX_TOML_DEPTH = 32  # nesting of arrays and tables in model.toml, recipes and settings
MAX_MANIFEST_BYTES = 1 << 20  # model.toml, settings.toml, recipes
MAX_JSON_BYTES = 16 << 20  # a pipeline's JSON parts (a CLIP vocab.json is 1.6 MB)
MAX_PROJECT_BYTES = 256 << 20  # a .lstudio project (latents of every keyframe)
MAX_METADATA_TEXT = 4 << 20  # characters of one text stored in a picture or sound (the request, `parameters`)
MAX_PROMPT_CHARS = 100_000  # characters of one prompt
MAX_HEADER_BYTES = 100 << 20  # a safetensors header (JSON; the format's own reader stops at 100 MB)
MAX_TENSORS = 100_000  # tensors in one weights file
MAX_VOCABULARY = 1_000_000  # tokens in a tokenizer's vocab.json, and lines of its merges.txt (CLIP has 49 408)

# --- pickled checkpoints (read by torch's weights-only unpickler, never by pickle itself) -------------------------
MAX_PICKLE_OPCODES = 20_000_000  # opcodes in one checkpoint's data.pkl
MAX_PICKLE_MEMO = 5_000_000  # memo entries: objects the pickle may refer back to
MAX_PICKLE_OBJECTS = 1_000_000  # containers and tensors visited when flattening what it holds (stops "billion laughs")
MAX_PICKLE_BYTES = 1 << 30  # one checkpoint's data.pkl (the pickle alone: SD 1.x's is under 1 MB, tensors lie beside)

# --- messages ------------------------------------------------------------------------------------------------------
QUOTE_CHARS = 200  # at most this many characters of a bad value appear in a message

N = TypeVar("N", int, float)


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """`repr(value)`, cut to about `limit` characters with the full length noted (a 50 MB field is never echoed)."""
    if isinstance(value, (str, bytes)) and len(value) > limit * 4:
        value = value[: limit * 4]  # repr of a huge string is never built
        cut = True
    else:
        cut = False
    text = repr(value)
    if len(text) > limit or cut:
        size = f"{len(value)}+" if cut and hasattr(value, "__len__") else f"{len(text)}"
        return f"{text[:limit]}… ({size} characters)"
    return text


def check(value: N, limit: N, what: str, path: str | Path | None = None, field: str | None = None,
          error: type[StudioError] = StudioError, unit: str = "") -> N:
    """`value` when it is at most `limit`; else `error` naming the file and field, the value and the limit."""
    if value > limit:
        raise error(f"{what} {quote(value)}{unit} is over the limit of {limit:,}{unit}", path, field)
    return value


def json_depth(text: str | bytes) -> int:
    """How deeply the JSON `text` nests arrays and objects (brackets inside strings are skipped); linear time, no
    recursion, so it can run before json.loads (which recurses)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        elif ch in "]}":
            depth -= 1
    return deepest


def toml_depth(text: str) -> int:
    """An upper bound on how deeply the TOML `text` nests inline arrays and tables (brackets in strings and comments
    are skipped; `[table]` headers count one). Linear, no recursion: runs before tomllib, which recurses."""
    depth = deepest = 0
    quote_char = ""
    escaped = comment = False
    for ch in text:
        if comment:
            comment = ch != "\n"
        elif quote_char:
            if escaped:
                escaped = False
            elif ch == "\\" and quote_char == '"':
                escaped = True
            elif ch == quote_char:
                quote_char = ""
        elif ch in "\"'":
            quote_char = ch
        elif ch == "#":
            comment = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest


def check_json_depth(text: str | bytes, path: str | Path | None = None, field: str | None = None,
                     error: type[StudioError] = StudioError) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH before it is parsed."""
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise error(f"JSON nested {depth} levels deep is over the limit of {MAX_JSON_DEPTH}", path, field)


def check_toml_depth(text: str, path: str | Path | None = None, field: str | None = None,
                     error: type[StudioError] = StudioError) -> None:
    """Refuse TOML nested deeper than MAX_TOML_DEPTH before it is parsed."""
    depth = toml_depth(text)
    if depth > MAX_TOML_DEPTH:
        raise error(f"TOML nested {depth} levels deep is over the limit of {MAX_TOML_DEPTH}", path, field)
