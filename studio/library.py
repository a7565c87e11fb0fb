"""Find model packages and load them: manifest → family → network → safetensors weights.

Packages are discovered in the shipped `models/` folder, the user's data folder, and any extra folder given on the
command line or in settings. A folder may be a package itself or hold packages one level down.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import torch

from studio.errors import ManifestError, StudioError, WeightsError
from studio.families import claim_path, foreign_manifest, get_family
from studio.families.base import Family, LoadedModel, direction_count
from studio.latent.directions import Directions
from studio.manifest import MANIFEST_NAME, WEIGHTS_NAME, Manifest, read_manifest
from studio.params import Capability, ParamTable
from studio.paths import shipped_models_dir, user_models_dir
from studio.request import Params, RenderRequest
from studio.files import check_regular, exists_at, file_kind, is_regular
from studio.limits import quote
from studio.io.weights import (check_finite, check_weights_file, load_into, nonfinite_tensors, read_tensors,
                               read_tensors_and_hash)

if TYPE_CHECKING:
    from studio.project import Document

DEFAULT_MODEL_ID = "glyphs"
log = logging.getLogger(__name__)


@dataclass
class PackageEntry:
    """One discovered package: its manifest when valid, else the error that names what is wrong."""

    folder: Path
    manifest: Manifest | None = None
    error: StudioError | None = None
    _sha256: str | None = None
    _table: ParamTable | None = None

    @property
    def id(self) -> str:
        return self.manifest.id if self.manifest else self.folder.name

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def sha256(self) -> str | None:
        if self._sha256 is None and self.manifest is not None and self.error is None:
            try:
                self._sha256 = get_family(self.manifest.family).weights_sha256(self.manifest)
            except (OSError, StudioError):
                return None
        return self._sha256

    @property
    def direction_count(self) -> int:
        """How many principal directions the package ships (from the file's header; 0 when none or unreadable)."""
        return direction_count(self.manifest) if self.manifest is not None else 0

    @property
    def family(self) -> Family | None:
        """The package's family (None when the package is invalid or its family is not installed)."""
        if self.manifest is None or self.error is not None:
            return None
        try:
            return get_family(self.manifest.family)
        except StudioError:
            return None

    @property
    def capabilities(self) -> Capability:
        """What the package's family can do (Capability.NONE when the package is invalid)."""
        family = self.family
        return family.capabilities if family is not None else Capability.NONE

    @property
    def parameters(self) -> ParamTable:
        """What an artist can set on this model (empty when the package is invalid); computed once."""
        if self._table is None:
            family, manifest = self.family, self.manifest  # a family only when the manifest is valid
            self._table = ParamTable(family.parameters(manifest) if family is not None and manifest is not None else ())
        return self._table

    def default_request(self, seed: int = 0) -> RenderRequest:
        """What the app opens this model with: the seed and its condition written out (the glyph text, the class),
        so the request says what it draws."""
        shown = {s.name: s.default for s in self.parameters if s.name in ("prompt", "label") and s.default}
        return RenderRequest(model_id=self.id, seed=seed, params=Params(shown))

    @property
    def preview_path(self) -> Path | None:
        path = self.folder / "preview.png"
        return path if is_regular(path) else None  # (a FIFO or a link to a device is no preview)

    def to_dict(self) -> dict:
        m = self.manifest
        return {
            "id": self.id, "path": str(self.folder), "ok": self.ok,
            "name": m.name if m else None, "family": m.family if m else None,
            "output": m.output.kind if m else None, "version": m.version if m else None,
            "license": m.license if m else None, "sha256": self.sha256 if m else None,
            "quality": (m.training.get("quality") if m else None) or {},
            "error": str(self.error) if self.error else None,
        }


def default_roots(extra: Iterable[str | Path] = ()) -> list[Path]:
    return [shipped_models_dir(), user_models_dir(), *(Path(p) for p in extra)]


def _check(entry: PackageEntry) -> None:
    """Cheap checks that need no weights loading: manifest, family, weights file present and not a pickle. A
    Stable Diffusion pipeline folder or .safetensors file (no model.toml) gets a manifest made from its configs."""
    try:
        foreign = foreign_manifest(entry.folder)
        if foreign is None and exists_at(entry.folder / MANIFEST_NAME):
            # a model.toml that is a FIFO, a device or a link loop is named, never waited on
            check_regular(entry.folder / MANIFEST_NAME, ManifestError, what="manifest file")
        entry.manifest = foreign if foreign is not None else read_manifest(entry.folder)
        family = get_family(entry.manifest.family)
        family.validate(entry.manifest)
        if foreign is None and type(family).load_network is Family.load_network:
            # safetensors weights: a regular file (not a FIFO, a device, a link loop) whose header fits the file
            # (a truncated copy is named now, when the folder is added, not at the first render); directions too
            for path in (entry.manifest.weights_path, entry.manifest.directions_path):
                if exists_at(path):
                    check_weights_file(path)
        family.check_files(entry.manifest)
    except StudioError as exc:
        if exc.path is None:  # e.g. an unknown family: say which manifest named it
            exc = type(exc)(exc.problem, entry.folder / MANIFEST_NAME, exc.field)
        entry.error = exc


def is_foreign(path: Path) -> bool:
    """Whether `path` is a model some family opens without a model.toml (a diffusers pipeline folder, a checkpoint
    file), by a cheap look at it."""
    return claim_path(Path(path)) is not None



def root_problem(root: str | Path) -> str | None:
    """Why a model root cannot be scanned ("" when it is absent, and skipped without a word; None when usable):
    a FIFO, a device, a link loop, a file that is not a model. Never blocks."""
    root = Path(root)
    try:
        mode = os.stat(root).st_mode
    except FileNotFoundError:
        return "" if not exists_at(root) else "is a link to nothing"
    except OSError as exc:
        return "is a symbolic link loop" if exc.errno == errno.ELOOP else f"cannot be read: {exc.strerror or exc}"
    except ValueError as exc:
        return f"is not a usable path: {exc}"
    if stat.S_ISDIR(mode) or (stat.S_ISREG(mode) and is_foreign(root)):
        return None
    if stat.S_ISREG(mode):
        return ("is a file, not a model folder (a model folder holds packages: folders with model.toml and "
                "weights.safetensors; a file must be a Stable Diffusion .safetensors checkpoint)")
    return f"is {file_kind(mode)}, not a model folder"


def _candidates(root: Path) -> list[Path]:
    """The packages a root holds: itself (a package, a pipeline folder or a checkpoint file), else its subfolders
    that are packages or pipeline folders. A subfolder is listed when it holds anything named like a package's
    files (a FIFO or a broken link included: the package is then listed with what is wrong with it)."""
    if is_regular(root):
        return [root] if is_foreign(root) else []
    if exists_at(root / MANIFEST_NAME) or is_foreign(root):
        return [root]
    try:
        children = sorted(root.iterdir())
    except OSError as exc:
        raise ManifestError(f"cannot list the model folder: {exc.strerror or exc}", root) from None
    return [p for p in children if p.is_dir() and not p.name.startswith(".") and (
        exists_at(p / MANIFEST_NAME) or exists_at(p / WEIGHTS_NAME) or is_foreign(p))]


def scan(roots: Iterable[str | Path] | None = None) -> list[PackageEntry]:
    """All packages under `roots` (default: shipped, user, nothing else), valid or not, in a stable order.

    When two valid packages share an id, the first root wins and the later one is reported as a duplicate.
    """
    entries: list[PackageEntry] = []
    seen_folders: set[Path] = set()
    for root in (default_roots() if roots is None else [Path(r) for r in roots]):
        problem = root_problem(root)
        if problem is not None:
            # a model folder that is not one (/dev/null, a FIFO, a link loop) is listed once with what it is, and
            # skipped: the other folders' models still work
            if problem and _resolved(root) not in seen_folders:
                seen_folders.add(_resolved(root))
                entries.append(PackageEntry(root, error=ManifestError(problem, root, "model folder")))
            continue
        try:
            candidates = _candidates(root)
        except StudioError as exc:
            entries.append(PackageEntry(root, error=exc))
            continue
        for folder in candidates:
            key = _resolved(folder)
            if key in seen_folders:
                continue
            seen_folders.add(key)
            entry = PackageEntry(folder)
            _check(entry)
            entries.append(entry)
    ids: dict[str, Path] = {}
    for entry in entries:
        if entry.ok:
            if entry.id in ids:
                entry.error = ManifestError(f"duplicate model id {entry.id!r}; {ids[entry.id]} is used instead",
                                            entry.folder / MANIFEST_NAME, "id")
            else:
                ids[entry.id] = entry.folder
    return entries


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop
        return path.absolute()


def typed_as_path(model: str) -> bool:
    """Whether a model the user typed is written as a path (a separator, or a start of '.', '~' or '/'), so it is
    never taken for an id."""
    return "/" in model or "\\" in model or model.startswith((".", "~")) or Path(model).is_absolute()


def ambiguous_model(model: str, roots: Iterable[str | Path] | None = None) -> bool:
    """Whether a bare name the user typed is both an installed package's id and a file or folder in the current
    directory (`resolve` takes the installed package; ./NAME is the folder). Scans only when there is such a file."""
    if typed_as_path(model) or not exists_at(Path(model)):
        return False
    return any(e.id == model and e.ok for e in scan(roots))


def resolve(model: str, roots: Iterable[str | Path] | None = None) -> PackageEntry:
    """A package by id, or by the path of its folder (or of a model file a family opens, such as a Stable Diffusion
    .safetensors). A bare name is a path when a file or folder of that name is in the current directory and no
    installed package has that id; with both, the installed package wins (./NAME is the folder). A relative path is
    made absolute here, so that what a family reads relative to the folder is not joined twice. Raises the
    package's own error if it is invalid."""
    path = Path(model).expanduser()
    installed: list[PackageEntry] | None = None
    looks_like_path = typed_as_path(model)
    if not looks_like_path and exists_at(path):
        installed = scan(roots)
        # a file or folder name in the current directory that is not also an installed id
        looks_like_path = not any(e.id == model and e.ok for e in installed)
    if looks_like_path:
        if not exists_at(path):
            raise ManifestError("no such model folder", path)
        path = path.absolute()
        if path.is_file() and not is_foreign(path):
            raise ManifestError("expected a model package folder (with model.toml and weights.safetensors), a "
                                "diffusers pipeline folder or a Stable Diffusion .safetensors file, got another "
                                "file", path)
        entry = PackageEntry(path)
        _check(entry)
    else:
        installed = installed if installed is not None else scan(roots)
        found = [e for e in installed if e.id == model]
        ok = [e for e in found if e.ok]
        if not found:
            known = sorted({e.id for e in installed if e.ok})
            raise StudioError(f"no model with id {quote(model)} is installed "
                              f"(installed: {', '.join(known) or 'none'}), and there is no file or folder of that "
                              f"name in the current folder ({_resolved(Path.cwd())})")
        entry = ok[0] if ok else found[0]
    if entry.error:
        raise entry.error
    return entry


# --- what a file asks for --------------------------------------------------------------------------------------------
# An image, a sound or a project names its model by id (and weights hash); it never chooses a folder to load. A model
# id that is a path, or a project's models[].folder, is matched against the installed packages (the shipped and user
# models, settings.toml's folders, --models-dir); a folder that is not installed is refused (CLI) or asked about
# (window), never loaded on its own. What the user types (--model PATH, File → Open Model Folder) stays allowed.

ADD_FOLDER_HINT = "File → Open Model Folder"


def names_a_path(model_id: str) -> bool:
    """Whether a model id read from a file names a folder (or file) path rather than a package id: it has a
    separator, is absolute, starts with '.' or '~', or names an existing folder."""
    if "/" in model_id or "\\" in model_id or model_id.startswith((".", "~")) or Path(model_id).is_absolute():
        return True
    try:
        return Path(model_id).is_dir()
    except (OSError, ValueError):  # a name the file system refuses (too long, a NUL) is no folder
        return False


class UninstalledModelFolder(ManifestError):
    """A file asks for a model folder that is not installed. `folder` and `sha256` (the weights hash the file
    claims, "" when none) are what a window shows when it asks whether to add it."""

    def __init__(self, folder: str, sha256: str, source: str | Path | None = None, field: str | None = None):
        from studio.limits import quote

        self.folder, self.sha256 = folder, sha256
        weights = f"weights sha256 {sha256[:12]}…" if sha256 else "no weights hash"
        shown = quote(folder)
        super().__init__(f"the file asks for the model folder {shown} ({weights}), which is not installed; if you "
                         f"trust it, add it with --models-dir {shown} or {ADD_FOLDER_HINT}", source, field)


def _folder_key(path: Path) -> Path | None:
    try:
        return path.expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def find_installed(model_id: str, sha256: str, folder: str, installed: Iterable[PackageEntry]) -> PackageEntry | None:
    """The installed package that a file's model is, without reading anything in `folder`: the package found in
    that very folder; else one with the same id (the folder's name when `model_id` is a path) and the same weights
    hash; else one with the same weights hash; else one with the same id (a changed model: loading it reports the
    hashes). None when no installed package fits. Only the folder match may return a broken package."""
    installed = list(installed)
    usable = [e for e in installed if e.ok]
    if folder:
        key = _folder_key(Path(folder))
        for entry in installed:  # an installed package, even a broken one (its own error then says what is wrong)
            if key is not None and _folder_key(entry.folder) == key:
                return entry
    ids = {model_id}
    if names_a_path(model_id):
        name = Path(model_id.rstrip("/\\")).name
        ids = {name, Path(name).stem} - {""}
    named = [e for e in usable if e.id in ids]
    if sha256:
        for entry in named:
            if entry.sha256 == sha256:
                return entry
        for entry in usable:
            if entry.id not in ids and entry.sha256 == sha256:
                return entry
    return named[0] if named else None


def resolve_stored(model_id: str, model_hash: str = "", roots: Iterable[str | Path] | None = None,
                   source: str | Path | None = None, field: str = "model_id",
                   installed: list[PackageEntry] | None = None) -> PackageEntry:
    """The installed package a stored request (an image's, a sound's, a project's) names by `model_id` and
    `model_hash`. An id resolves as `resolve` does among the installed packages; a path is never loaded: an installed
    package that is that folder, or has its name and weights hash, or the hash, or the name, is used instead, else
    UninstalledModelFolder names the path and the hash (`source` and `field`: the file and field that asked)."""
    installed = scan(roots) if installed is None else installed
    if not names_a_path(model_id) or any(e.id == model_id and e.ok for e in installed):
        found = [e for e in installed if e.id == model_id]
        if not found:
            known = sorted({e.id for e in installed if e.ok})
            raise StudioError(f"no model with id {quote(model_id)} is installed "
                              f"(installed: {', '.join(known) or 'none'})")
        entry = next((e for e in found if e.ok), found[0])
        if entry.error:
            raise entry.error
        return entry
    match = find_installed(model_id, model_hash, model_id, installed)
    if match is None:
        raise UninstalledModelFolder(model_id, model_hash, source, field)
    if match.error:
        raise match.error
    return match


def resolve_installed(model_id: str, roots: Iterable[str | Path] | None = None) -> PackageEntry:
    """A package by id among the installed ones (the renderer's fallback for a request it was not handed a package
    for): a path is refused, never loaded."""
    installed = scan(roots)
    if names_a_path(model_id) and not any(e.id == model_id and e.ok for e in installed):
        raise UninstalledModelFolder(model_id, "", None, "model_id")
    return resolve_stored(model_id, roots=roots, installed=installed)


def document_models(document: Document, installed: list[PackageEntry], source: str | Path | None = None
                    ) -> tuple[dict[str, PackageEntry], list[UninstalledModelFolder]]:
    """What a project's models are among the `installed` packages, reading nothing in the folders it names:
    (model id as the document names it → the installed package, for every id that is a path or whose folder is
    installed; the folders it names that are not installed, each once, as the error that refuses them). A folder
    that does not exist is no claim (nothing could load from it); plain ids are left to `resolve_stored`."""
    found: dict[str, PackageEntry] = {}
    refused: dict[str, UninstalledModelFolder] = {}
    for model_id, sha256, folder, field in document.model_claims():
        claimed = folder or (model_id if names_a_path(model_id) else "")
        if not claimed:
            continue
        entry = find_installed(model_id, sha256, claimed, installed)
        if entry is not None:
            if names_a_path(model_id):
                found[model_id] = entry
        elif _exists(claimed) and claimed not in refused:
            refused[claimed] = UninstalledModelFolder(claimed, sha256, source, field)
    return found, list(refused.values())


def _exists(path: str) -> bool:
    try:
        return Path(path).expanduser().exists()
    except (OSError, ValueError):
        return False


def project_models(document: Document, roots: Iterable[str | Path] | None = None,
                   source: str | Path | None = None) -> tuple[Document, list[PackageEntry]]:
    """A project's document with every model id that is a path replaced by its installed package's id, and the
    packages its keyframes render with (the first keyframe's first); UninstalledModelFolder for a folder the
    project names that is not installed, the resolving error for a keyframe model that is not installed."""
    installed = scan(roots)
    found, refused = document_models(document, installed, source)
    if refused:
        raise refused[0]
    document = document.with_model_ids({name: e.id for name, e in found.items() if name != e.id})
    entries: dict[str, PackageEntry] = {}
    for i, key in enumerate(document.timeline.keyframes):
        request = key.request
        entry = resolve_stored(request.model_id, request.model_hash, source=source, installed=installed,
                               field=f"timeline.keyframes[{i}].request.model_id")
        entries.setdefault(entry.id, entry)
    return document, list(entries.values())

def load_model(entry: PackageEntry, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
               expected_sha256: str | None = None) -> LoadedModel:
    """Build the family's network on CPU in float32, load safetensors weights, then move it.

    The weights are checked as they load: every tensor the architecture holds as floating point stored as one, and
    every value finite (WeightsError naming the tensor otherwise; a network a family loads from its own files is
    checked for finite values the same way). Principal directions holding a NaN or an infinity are optional: they
    are dropped with a warning naming the file, and the model renders without its direction sliders' effect."""
    manifest = entry.manifest
    assert manifest is not None
    family = get_family(manifest.family)
    network = family.load_network(manifest)
    if network is not None:
        sha = family.weights_sha256(manifest)
        check_finite(network.state_dict(), manifest.weights_path)
    else:
        tensors, sha = read_tensors_and_hash(manifest.weights_path)
    entry._sha256 = sha
    if expected_sha256 and sha != expected_sha256:
        raise WeightsError(f"weights hash {sha[:12]}… differs from the requested {expected_sha256[:12]}…; the "
                           "installed model is not the one that made this request", manifest.weights_path)
    if network is None:
        try:
            network = family.build(manifest)
        except (ValueError, TypeError) as exc:
            raise ManifestError(f"cannot build the network: {exc}", manifest.path, "architecture") from None
        load_into(network, tensors, manifest.weights_path)
    network.eval()
    directions = family.directions(manifest, network, sha) if family.own_directions else _load_directions(manifest)
    model = LoadedModel(manifest, family, network, sha, torch.device("cpu"), torch.float32, directions)
    return model.to(device, dtype)


def _load_directions(manifest: Manifest) -> Directions | None:
    """The package's principal directions (None when it ships none, or when they hold NaN/Inf: warned, dropped)."""
    path = manifest.directions_path
    if not exists_at(path):
        return None
    tensors = read_tensors(path)
    bad = nonfinite_tensors(tensors)
    if bad:
        log.warning("%s: tensor %r holds NaN or infinite values; the principal directions are not used (the "
                    "model renders without them)", path, bad[0])
        return None
    ints = [name for name, t in tensors.items() if not t.is_floating_point()]
    if ints:
        raise WeightsError(f"tensor {ints[0]!r} is stored as {str(tensors[ints[0]].dtype).replace('torch.', '')} "
                           "but directions are floating point", path)
    try:
        directions = Directions.from_tensors(tensors)
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"not a valid directions file: {exc}", path) from None
    if directions.vectors.shape[1] != manifest.latent.size:
        raise WeightsError(f"directions have {directions.vectors.shape[1]} dimensions but the latent has "
                           f"{manifest.latent.size}", path)
    return directions
