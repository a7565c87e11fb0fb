"""The user's data: a folder of pictures or of sounds (and a quick look at one before training), drawn as training
batches, and the recipe a run on a folder follows.

Pictures: PNG / JPEG / WebP / BMP of any size, fitted to a square (cropped, padded or stretched), grey or colour.
Sounds: WAV / FLAC / OGG / MP3 (anything libsndfile decodes), mixed to mono, resampled to the model's rate, started at
their onset and cut or padded to the model's length; silent or undecodable files are skipped with a note naming them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tomli_w
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from studio.errors import RecipeError, StudioError
from studio.io.images import open_picture
from studio.train.common import rand
from studio.train.recipe import Recipe

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SOUND_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")
FITS = ("crop", "pad", "stretch")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
SOUND_KINDS = "WAV, FLAC, OGG or MP3"
IMAGE_KINDS = "PNG, JPEG, WebP or BMP"
SINGLE_CLASS = "sound"  # the one class of a sound folder without sub-folders (the audio family needs a class)
ONSET_LEVEL = 0.01  # a sound starts at its first sample above −40 dB of its peak (as the audio family encodes)
ONSET_LEAD = 0.002  # … less this lead, in seconds
NORMAL_PEAK = 0.9  # sounds are brought to this peak unless data.normalize = false
SILENT_PEAK = 1e-4  # −80 dBFS: quieter than this is skipped as silent
MIN_FILES = {"vae": 1, "gan": 4, "diffusion": 4, "audio": 4}  # usable files a family needs to train at all
COLOUR_LOOKS = 8  # a folder scan decodes at most this many colour-mode pictures to tell colour from grey


# --- pictures ------------------------------------------------------------------------------------------------------


def fit_image(image: Image.Image, size: int, fit: str) -> Image.Image:
    """A square `size` picture: the centre cropped, the whole padded with its edge colour, or stretched."""
    if fit == "crop":
        return ImageOps.fit(image, (size, size), Image.Resampling.LANCZOS)
    if fit == "pad":
        edge = np.asarray(image.convert("RGB"))
        border = np.concatenate([edge[0], edge[-1], edge[:, 0], edge[:, -1]]).mean(0).round().astype(int)
        colour = tuple(int(c) for c in border) if image.mode == "RGB" else int(border.mean())
        return ImageOps.pad(image, (size, size), Image.Resampling.LANCZOS, color=colour)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise RecipeError("not a folder" if folder.exists() else "no such folder", folder, "data.folder")


def _why(exc: BaseException) -> str:
    """Why a file of the folder was skipped, short: the check's own words (a FIFO, too many pixels) or the kind of
    decoding error."""
    if isinstance(exc, StudioError):
        return exc.problem if len(exc.problem) <= 80 else exc.problem[:79] + "…"
    return type(exc).__name__


def _said(skipped: list[str], what: str) -> str:
    return f"skipped {len(skipped)} {what}: {', '.join(skipped[:5])}{' …' if len(skipped) > 5 else ''}"


def load_image_folder(folder: str | Path, size: int, fit: str = "crop",
                      log: Callable[[str], None] = print) -> np.ndarray:
    """Every readable image under `folder`, fitted to size², as float32 (N, C, size, size) in [0, 1]; C is 1 when all
    are grey, else 3. RecipeError naming the folder when nothing usable is there."""
    folder = Path(folder)
    _check_folder(folder)
    if fit not in FITS:
        raise RecipeError(f"must be one of {', '.join(FITS)}, got {fit!r}", None, "data.fit")
    files = _files(folder, IMAGE_SUFFIXES)
    images, skipped = [], []
    for path in files:
        try:
            with open_picture(path, StudioError) as opened:  # a regular file, its size checked from the header
                opened.load()
                image = ImageOps.exif_transpose(opened)
                grey = image.mode in GREY_MODES
                image = image.convert("L" if grey else "RGB")
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, StudioError) as exc:
            skipped.append(f"{path.name} ({_why(exc)})")
            continue
        images.append(fit_image(image, size, fit))
    if skipped:
        log(_said(skipped, "unreadable file(s)"))
    if not images:
        found = f"{len(files)} image file(s), none readable" if files else f"no {IMAGE_KINDS} files"
        raise RecipeError(f"no usable images: {found}", folder, "data.folder")
    colour = any(im.mode == "RGB" and not _is_grey(im) for im in images)
    arrays = [np.asarray(im.convert("RGB" if colour else "L"), dtype=np.float32) / 255.0 for im in images]
    data = np.stack(arrays)
    data = data.transpose(0, 3, 1, 2) if colour else data[:, None]
    log(f"{len(data)} images from {folder} at {size}×{size} ({'colour' if colour else 'grey'}, {fit})")
    return np.ascontiguousarray(data)


def _is_grey(image: Image.Image) -> bool:
    rgb = np.asarray(image, dtype=np.int16)
    return bool(np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 2 and np.abs(rgb[..., 1] - rgb[..., 2]).max() <= 2)


def image_sheet(images: torch.Tensor, channels: int, size: int, columns: int = 4) -> np.ndarray:
    """columns² pictures (each C·size² values in 0…1) → a uint8 sheet (H, W) grey or (H, W, 3), row by row."""
    n = columns
    sheet = (images.detach().float().cpu().reshape(n, n, channels, size, size).permute(0, 3, 1, 4, 2)
             .reshape(n * size, n * size, channels).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return sheet[..., 0] if channels == 1 else sheet


def read_images(recipe: Recipe, size: int, minimum: int, what: str, log: Callable[[str], None]) -> torch.Tensor:
    """The recipe's pictures (data.folder, data.fit) at `size`, float32 (N, C, size, size) in [0, 1]; RecipeError
    when fewer than `minimum` are usable (`what` names the model, for the message)."""
    r, d = recipe.reader(), recipe.data
    folder = data_folder(recipe)
    data = load_image_folder(folder, size, r.get(d, "fit", str, "data.", required=False, default="crop"), log)
    if len(data) < minimum:
        raise RecipeError(f"{what} needs at least {minimum} pictures to learn from; {folder} has {len(data)} usable",
                          recipe.path, "data.folder")
    return torch.from_numpy(data)


def data_folder(recipe: Recipe) -> Path:
    folder = Path(recipe.reader().get(recipe.data, "folder", str, "data."))
    return folder if folder.is_absolute() else recipe.path.parent / folder


class Pictures:
    """A folder's pictures (N, C, S, S) on the training device: a batch is pictures drawn at random, each mirrored
    left to right half the time when `flip` (mirrored pictures are pictures too). No labels."""

    classes = 0

    def __init__(self, images: torch.Tensor, flip: bool = True):
        self.images, self.flip = images, flip

    def draw(self, batch: int, gen: torch.Generator, device: torch.device) -> tuple[torch.Tensor, None]:
        x = self.images[torch.randint(0, len(self.images), (batch,), generator=gen).to(device)]
        if self.flip:
            mirror = rand((batch,), gen, device, normal=False) < 0.5
            x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
        return x, None


# --- sounds --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoundSet:
    """The usable sounds of a folder at one rate and length."""

    waves: np.ndarray  # (N, length) float32, mono
    labels: np.ndarray  # (N,) int64: the class of each (0 when there are no classes)
    classes: tuple[str, ...]  # sub-folder names, or (SINGLE_CLASS,)
    names: tuple[str, ...]  # each sound's path relative to the folder


def sound_classes(folder: Path, files: list[Path]) -> tuple[str, ...]:
    """The first-level sub-folder names when every sound sits in one and there are at least two; else ()."""
    parts = [f.relative_to(folder).parts for f in files]
    if not parts or any(len(p) < 2 for p in parts):
        return ()
    names = sorted({p[0] for p in parts})
    return tuple(names) if len(names) >= 2 else ()


def onset(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """The sound from just before its first sample above −40 dB of its peak (a recording's leading silence off)."""
    loud = np.flatnonzero(np.abs(wave) >= ONSET_LEVEL * np.abs(wave).max())
    if not len(loud):
        return wave
    return wave[max(0, int(loud[0]) - int(ONSET_LEAD * sample_rate)):]


def load_sound_folder(folder: str | Path, sample_rate: int, length: int, classes: bool = True,
                      normalize: bool = True, log: Callable[[str], None] = print) -> SoundSet:
    """Every usable sound under `folder`: decoded, mixed to mono, resampled to `sample_rate`, started at its onset,
    cut or padded with silence to `length` samples (and brought to one peak level with `normalize`). With `classes`,
    first-level sub-folders name the classes (when every sound is in one and there are two or more). Silent and
    undecodable files are skipped with a logged note naming them; RecipeError naming the folder when none is usable."""
    from studio.export.audio import read_sound

    folder = Path(folder)
    _check_folder(folder)
    files = _files(folder, SOUND_SUFFIXES)
    waves, names, kept, skipped = [], [], [], []
    for path in files:
        try:
            wave, _ = read_sound(path, sample_rate, max_seconds=length / sample_rate + 2.0)
        except (StudioError, ValueError, RuntimeError, OSError) as exc:
            skipped.append(f"{path.relative_to(folder)} ({getattr(exc, 'problem', None) or exc})")
            continue
        peak = float(np.abs(wave).max())
        if peak < SILENT_PEAK:
            skipped.append(f"{path.relative_to(folder)} (silent)")
            continue
        wave = onset(wave, sample_rate)[:length]
        if normalize:
            wave = wave * (NORMAL_PEAK / max(float(np.abs(wave).max()), SILENT_PEAK))
        waves.append(np.pad(wave, (0, length - len(wave))).astype(np.float32))
        names.append(str(path.relative_to(folder)))
        kept.append(path)
    if skipped:
        log(_said(skipped, "unusable sound file(s)"))
    if not waves:
        more = " …" if len(skipped) > 3 else ""
        found = (f"{len(files)} sound file(s), none usable ({', '.join(skipped[:3])}{more})" if files
                 else f"no {SOUND_KINDS} files")
        raise RecipeError(f"no usable sounds: {found}", folder, "data.folder")
    names_of = sound_classes(folder, kept) if classes else ()
    if names_of:
        labels = np.array([names_of.index(p.relative_to(folder).parts[0]) for p in kept], dtype=np.int64)
    else:
        labels = np.zeros(len(kept), dtype=np.int64)
        if classes and any(len(p.relative_to(folder).parts) > 1 for p in kept):
            log("the sounds are not all in sub-folders (or all in one): training without classes")
    counts = ", ".join(f"{n} {int((labels == i).sum())}" for i, n in enumerate(names_of)) if names_of else ""
    log(f"{len(waves)} sounds from {folder} at {sample_rate} Hz, {length / sample_rate:.2f} s each"
        + (f"; classes: {counts}" if counts else ""))
    return SoundSet(np.stack(waves), labels, names_of or (SINGLE_CLASS,), tuple(names))


# --- a quick look at a folder --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderSummary:
    """What a folder holds for a family, read from file headers only (quick enough for a dialog)."""

    folder: Path
    family: str
    usable: int  # files that open (pictures) or whose header reads (sounds)
    skipped: tuple[str, ...]  # "name (why)" of files that do not
    colour: bool | None  # pictures: colour (judged from the first few colour-mode files); None for sounds
    sizes: tuple[tuple[int, int], ...]  # pictures: the distinct (width, height)
    sample_rates: tuple[int, ...]  # sounds: the distinct sample rates
    seconds: float  # sounds: their total length
    classes: tuple[str, ...]  # sounds: sub-folder classes (empty: none)
    minimum: int  # how many usable files the family needs
    summary: str  # one line, e.g. "120 pictures (3 sizes, colour)"

    @property
    def enough(self) -> bool:
        return self.usable >= self.minimum


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def scan_images(folder: Path, family: str, minimum: int) -> FolderSummary:
    files = _files(folder, IMAGE_SUFFIXES)
    sizes, colour, skipped, looked = set(), False, [], 0
    for path in files:
        try:
            with open_picture(path, StudioError) as image:  # the header only: no pixels are decoded …
                size = image.size
                if not colour and image.mode not in GREY_MODES and looked < COLOUR_LOOKS:
                    # … except, until one shows colour, a small copy of the first few colour-mode files: grey
                    # pictures are often stored as RGB (a grey WebP always is)
                    looked += 1
                    image.draft("RGB", (64, 64))  # JPEG decodes at an eighth of the size
                    small = image.convert("RGB")
                    small.thumbnail((64, 64))
                    colour = not _is_grey(small)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, StudioError) as exc:
            skipped.append(f"{path.name} ({_why(exc)})")
            continue
        sizes.add(size)
    usable = len(files) - len(skipped)
    if not usable:
        found = f"{len(files)} image file(s), none readable" if files else f"no {IMAGE_KINDS} files"
        raise RecipeError(f"no usable images: {found}", folder, "data.folder")
    line = f"{_plural(usable, 'picture')} ({_plural(len(sizes), 'size')}, {'colour' if colour else 'grey'})"
    if skipped:
        line += f"; {len(skipped)} unreadable skipped"
    if usable < minimum:
        line += f"; too few: needs at least {minimum}"
    return FolderSummary(folder, family, usable, tuple(skipped), colour, tuple(sorted(sizes)), (), 0.0, (), minimum,
                         line)


def scan_sounds(folder: Path, family: str, minimum: int) -> FolderSummary:
    import soundfile as sf

    files = _files(folder, SOUND_SUFFIXES)
    rates, seconds, skipped, kept = set(), 0.0, [], []
    for path in files:
        try:
            info = sf.info(str(path))  # the header only
            if info.frames <= 0 or info.samplerate <= 0:
                raise ValueError("empty")
        except (RuntimeError, OSError, ValueError) as exc:
            skipped.append(f"{path.relative_to(folder)} ({'empty' if isinstance(exc, ValueError) else 'undecodable'})")
            continue
        rates.add(int(info.samplerate))
        seconds += info.frames / info.samplerate
        kept.append(path)
    if not kept:
        found = f"{len(files)} sound file(s), none readable" if files else f"no {SOUND_KINDS} files"
        raise RecipeError(f"no usable sounds: {found}", folder, "data.folder")
    classes = sound_classes(folder, kept)
    rates_all = tuple(sorted(rates))
    rate_text = f"{rates_all[0]} Hz" if len(rates_all) == 1 else f"{len(rates_all)} sample rates"
    line = f"{_plural(len(kept), 'sound')} ({rate_text}, {seconds:.1f} s in all"
    more = " …" if len(classes) > 6 else ""
    line += f", {len(classes)} classes: {', '.join(classes[:6])}{more})" if classes else ")"
    if skipped:
        line += f"; {len(skipped)} unreadable skipped"
    if len(kept) < minimum:
        line += f"; too few: needs at least {minimum}"
    return FolderSummary(folder, family, len(kept), tuple(skipped), None, (), rates_all, round(seconds, 3), classes,
                         minimum, line)


# --- recipes -------------------------------------------------------------------------------------------------------


def dump_recipe(path: Path, recipe: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(recipe), encoding="utf-8")
    return path


def package_table(model_id: str, name: str, description: str, license_: str) -> dict[str, str]:
    return {"id": model_id, "name": name or model_id, "version": "1.0.0", "license": license_,
            "description": description}
