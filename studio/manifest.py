"""`model.toml`: the manifest of a model package, read and validated.

A package is a folder holding `model.toml` + `weights.safetensors` (+ optional `directions.safetensors`,
`preview.png`, `recipe.toml`). Every validation error names the file and the dotted field.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    # tomli is typed but installed only on 3.10, and mypy (python_version 3.10) may run from a newer Python
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

from studio.errors import ManifestError, StudioError
from studio.files import read_toml_text
from studio.limits import (MAX_LABELS, MAX_LATENT_SIZE, MAX_PIXELS, MAX_SAMPLE_RATE, MAX_SIDE, MAX_SOUND_SECONDS,
                           MAX_WIDTH, check, quote)

FORMAT_VERSION = 1
MANIFEST_NAME = "model.toml"
WEIGHTS_NAME = "weights.safetensors"
DIRECTIONS_NAME = "directions.safetensors"
PREVIEW_NAME = "preview.png"
RECIPE_NAME = "recipe.toml"

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
PRIORS = ("normal",)
CONDITION_KINDS = ("none", "class", "text")


@dataclass(frozen=True)
class OutputSpec:
    kind: str
    fields: dict[str, int]

    def __getitem__(self, key: str) -> int:
        return self.fields[key]


# Output kinds are an open registry: a kind names the integer fields its manifests must give.
OUTPUT_KINDS: dict[str, tuple[str, ...]] = {
    "image": ("width", "height", "channels"),
    "audio": ("sample_rate", "channels", "length"),
}


def register_output_kind(kind: str, required_fields: tuple[str, ...]) -> None:
    OUTPUT_KINDS[kind] = tuple(required_fields)


@dataclass(frozen=True)
class LatentSpec:
    shape: tuple[int, ...]
    prior: str = "normal"

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class ConditionSpec:
    kind: str = "none"
    labels: tuple[str, ...] = ()  # class names, or for "text" the characters it can draw
    default: str = ""


@dataclass(frozen=True)
class Manifest:
    path: Path  # the manifest file itself
    format: int
    id: str
    name: str
    family: str
    version: str
    license: str
    description: str
    output: OutputSpec
    latent: LatentSpec
    conditions: ConditionSpec
    architecture: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)
    weights_file: str = WEIGHTS_NAME  # safetensors; a TorchScript package names its module file (e.g. generator.pt)

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def weights_path(self) -> Path:
        return self.folder / self.weights_file

    @property
    def directions_path(self) -> Path:
        return self.folder / DIRECTIONS_NAME

    @property
    def preview_path(self) -> Path:
        return self.folder / PREVIEW_NAME


def package_id_from(text: str, default: str) -> str:
    """A valid package id made from a name (a folder's, a file's): lower case, runs of other characters as "-",
    at most 64 characters; `default` when nothing is left."""
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:64] or default


class TomlReader:
    """Typed access to a TOML table with errors that name file and dotted field."""

    def __init__(self, path: Path, error: type[StudioError] = ManifestError):
        self.path = path
        self.error = error

    def fail(self, field_name: str, problem: str) -> StudioError:
        return self.error(problem, self.path, field_name)

    def get(self, table: dict, key: str, kind: type | tuple, prefix: str = "", required: bool = True,
            default: Any = None, check: Callable[[Any], str | None] | None = None) -> Any:
        dotted = f"{prefix}{key}"
        if key not in table:
            if required:
                raise self.fail(dotted, "required field is missing")
            return default
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            names = " or ".join(_type_name(k) for k in kinds)
            raise self.fail(dotted, f"expected {names}, got {_type_name(type(value))} {quote(value)}")
        if check is not None:
            problem = check(value)
            if problem:
                raise self.fail(dotted, problem)
        return value

    def table(self, data: dict, key: str, required: bool = True) -> dict:
        value = self.get(data, key, dict, required=required, default={})
        return value


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false", dict: "a table",
            list: "an array"}.get(kind, kind.__name__)


def _positive(value: int) -> str | None:
    return None if value > 0 else f"must be positive, got {value}"


def parse_manifest(data: dict, path: Path) -> Manifest:
    """Validate parsed TOML `data` from `path` into a Manifest (raises ManifestError)."""
    r = TomlReader(path)
    fmt = r.get(data, "format", int)
    if fmt > FORMAT_VERSION or fmt < 1:
        raise r.fail("format", f"format version {fmt} is not supported (this app reads 1..{FORMAT_VERSION})")
    model_id = r.get(data, "id", str, check=lambda v: None if _ID_RE.fullmatch(v) else
                     "must be 1-64 lowercase letters, digits, '.', '_' or '-'")
    name = r.get(data, "name", str)
    family = r.get(data, "family", str, check=lambda v: None if v.strip() else "must not be empty")
    version = r.get(data, "version", str)
    license_ = r.get(data, "license", str)
    description = r.get(data, "description", str, required=False, default="")

    out = r.table(data, "output")
    kind = r.get(out, "kind", str, "output.", check=lambda v: None if v in OUTPUT_KINDS else
                 f"unknown output kind {v!r} (known: {', '.join(sorted(OUTPUT_KINDS))})")
    out_fields = {k: r.get(out, k, int, "output.", check=_positive) for k in OUTPUT_KINDS[kind]}
    _check_output(out_fields, path)
    output = OutputSpec(kind, out_fields)

    lat = r.table(data, "latent")
    shape = r.get(lat, "shape", list, "latent.")
    if not shape or len(shape) > 8 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                             for s in shape):
        raise r.fail("latent.shape", f"must be an array of 1 to 8 positive integers, got {quote(shape)}")
    size = 1
    for s in shape:
        size *= min(s, MAX_LATENT_SIZE + 1)  # a product of huge numbers stays small enough to compare
    check(size, MAX_LATENT_SIZE, f"a latent of {'×'.join(str(s)[:20] for s in shape)} =", path, "latent.shape",
          ManifestError, " numbers")
    prior = r.get(lat, "prior", str, "latent.", required=False, default="normal",
                  check=lambda v: None if v in PRIORS else f"unknown prior {v!r} (known: {', '.join(PRIORS)})")
    latent = LatentSpec(tuple(shape), prior)

    cond = r.table(data, "conditions", required=False)
    ckind = r.get(cond, "kind", str, "conditions.", required=False, default="none",
                  check=lambda v: None if v in CONDITION_KINDS else
                  f"unknown condition kind {v!r} (known: {', '.join(CONDITION_KINDS)})")
    labels: tuple[str, ...] = ()
    if ckind == "class":
        raw = r.get(cond, "labels", list, "conditions.")
        if not raw or not all(isinstance(x, str) for x in raw):
            raise r.fail("conditions.labels", "must be a non-empty array of strings")
        check(len(raw), MAX_LABELS, "the number of labels", path, "conditions.labels", ManifestError)
        labels = tuple(raw)
    elif ckind == "text":
        alphabet = r.get(cond, "alphabet", str, "conditions.", required=False, default="")
        check(len(alphabet), MAX_LABELS, "the number of characters", path, "conditions.alphabet", ManifestError)
        labels = tuple(alphabet)
    default = r.get(cond, "default", str, "conditions.", required=False, default="")
    conditions = ConditionSpec(ckind, labels, default)

    architecture = r.table(data, "architecture")
    training = r.table(data, "training", required=False)
    weights_file = r.get(data, "weights", str, required=False, default=WEIGHTS_NAME,
                         check=lambda v: None if v and Path(v).name == v and not v.startswith(".") else
                         "must be a file name inside the package folder")
    return Manifest(path=path, format=fmt, id=model_id, name=name, family=family, version=version,
                    license=license_, description=description, output=output, latent=latent,
                    conditions=conditions, architecture=dict(architecture), training=dict(training),
                    weights_file=weights_file)


def _check_output(fields: dict[str, int], path: Path) -> None:
    """Refuse an output no desktop can hold: a side over MAX_SIDE, more than MAX_PIXELS pixels, a sound longer than
    MAX_SOUND_SECONDS or faster than MAX_SAMPLE_RATE, more channels than MAX_WIDTH."""
    for name in ("width", "height"):
        if name in fields:
            check(fields[name], MAX_SIDE, f"the {name}", path, f"output.{name}", ManifestError, " px")
    if "width" in fields and "height" in fields:
        check(fields["width"] * fields["height"], MAX_PIXELS, f"{fields['width']}×{fields['height']} =", path,
              "output.height", ManifestError, " pixels")
    if "channels" in fields:
        check(fields["channels"], MAX_WIDTH, "the channel count", path, "output.channels", ManifestError)
    if "sample_rate" in fields:
        check(fields["sample_rate"], MAX_SAMPLE_RATE, "the sample rate", path, "output.sample_rate", ManifestError,
              " Hz")
        if "length" in fields:
            check(fields["length"], MAX_SOUND_SECONDS * fields["sample_rate"], "the length", path, "output.length",
                  ManifestError, " samples")
    for name, value in fields.items():  # a kind registered by a plugin: no field may ask for more than a picture
        check(value, MAX_PIXELS, f"the {name}", path, f"output.{name}", ManifestError)


def read_toml(path: Path, error: type[StudioError] = ManifestError) -> dict:
    """Parse a TOML file: a regular file of at most MAX_MANIFEST_BYTES, nested at most MAX_TOML_DEPTH deep (checked
    before tomllib, which recurses); every failure is an `error` naming the file."""
    text = read_toml_text(path, error)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"not valid TOML: {quote(str(exc))}", path) from None
    except (RecursionError, MemoryError, ValueError) as exc:  # the depth scan is an upper bound, but never crash
        raise error(f"not usable TOML: {type(exc).__name__}", path) from None


def read_manifest(folder_or_file: str | Path) -> Manifest:
    """Read `model.toml` from a package folder (or the file itself)."""
    path = Path(folder_or_file)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.exists() and not path.is_symlink():
        raise ManifestError(f"no {MANIFEST_NAME} here: a model package is a folder with {MANIFEST_NAME} and "
                            f"{WEIGHTS_NAME}", path)
    return parse_manifest(read_toml(path), path)
