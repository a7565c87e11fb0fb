"""The installed models the window offers: the packages found in the model roots and in the folders the user added.

The folders a user adds are kept in one place, `model_folders` in settings.toml (studio.settings), which the CLI
reads too: a folder opened in the window is a folder `latent-studio render --model` finds. Folders a project's
models came from are scanned while it is open, and not remembered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from studio.app.listeners import Listeners
from studio.errors import StudioError
from studio.library import PackageEntry, default_roots, is_foreign, root_problem, scan
from studio.settings import load_settings, remember_model_folders

INFO, WARNING, ERROR = "info", "warning", "error"
FOLDER_TRUST = ("A model folder can hold a program (a TorchScript or ONNX generator) that runs when it renders. Add it "
                "only if you trust where it came from; it is then one of your model folders, as if you had opened "
                "it with File → Open Model Folder.")
NO_MODEL_HELP = ("A model package is a folder with model.toml and weights.safetensors; Stable Diffusion opens as a "
                 "diffusers pipeline folder or an SD 1.x / 2.x .safetensors file.")


class ModelLibrary:
    """The packages of `roots` (default: the shipped and user models and settings.toml's folders) and of the
    folders added since (`extra_folders`). `settings_file` is where added folders are remembered (default: the user's
    settings.toml; None with remember=False keeps them for this session only).

    Listeners: `changed()` after every scan; `message(level, text, detail)` for what the user should read.
    """

    def __init__(self, roots: Iterable[str | Path] | None = None, message: Listeners | None = None,
                 settings_file: Path | None = None, remember: bool = True):
        self.roots = [Path(r) for r in roots] if roots is not None else None
        self.extra_folders: list[Path] = []
        self.entries: list[PackageEntry] = []
        self.settings_file = settings_file
        self.remember = remember
        self.changed = Listeners()
        self.message = message if message is not None else Listeners()
        self._settings_problem = ""  # the settings.toml error last reported (said once, not on every scan)

    # --- scanning ------------------------------------------------------------------------------------------------
    def root_folders(self) -> list[Path]:
        """The roots scanned before the added folders."""
        if self.roots is not None:
            return list(self.roots)
        try:
            remembered = load_settings(self.settings_file).model_folders
            self._settings_problem = ""
        except StudioError as exc:
            remembered = []  # a scan never fails over the settings file, but it says it was not used (once)
            if str(exc) != self._settings_problem:
                self._settings_problem = str(exc)
                self.message(WARNING, "The model folders in your settings could not be read", str(exc))
        return default_roots(remembered)

    def refresh(self) -> list[PackageEntry]:
        """Scan the roots and the added folders again (packages added to them since are found)."""
        self.entries = scan([*self.root_folders(), *self.extra_folders])
        self.changed()
        return self.entries

    def entry_for(self, model_id: str) -> PackageEntry | None:
        """The package of `model_id`: a usable one when there is one, else the broken one (None: not installed)."""
        found = [e for e in self.entries if e.id == model_id]
        ok = [e for e in found if e.ok]
        return ok[0] if ok else found[0] if found else None

    @property
    def usable(self) -> list[PackageEntry]:
        return [e for e in self.entries if e.ok]

    def opened_folder(self, entry: PackageEntry | None) -> str:
        """The added folder `entry` was found in (as a document records it), or "" for one of the roots."""
        if entry is None:
            return ""
        inside = any(entry.folder == f or f in entry.folder.parents for f in self.extra_folders)
        return str(entry.folder) if inside else ""

    # --- adding folders ------------------------------------------------------------------------------------------
    def add_model_folder(self, folder: str | Path) -> list[PackageEntry]:
        """Add the packages in `folder` (a package, a folder of packages, a diffusers pipeline folder or a Stable
        Diffusion .safetensors file), remember it in settings.toml, and report what was found. Returns the packages
        found there (none: the folder is not kept). A relative path is taken from the current folder, once: what a
        family reads relative to the package (a pipeline's own files) is then not joined to it twice."""
        folder = Path(folder).expanduser().absolute()
        problem = root_problem(folder)
        if problem:  # /dev/null, a FIFO, a link loop, a file that is no model: said at once, never scanned
            self.message(ERROR, f"No model in {folder}", f"{folder}: {problem}")
            return []
        usable = folder.is_dir() or (folder.is_file() and is_foreign(folder))
        new = usable and folder not in self.extra_folders
        if new:
            self.extra_folders.append(folder)
        if usable:
            self.refresh()  # also picks up packages added to a folder opened before
        key = _resolved(folder)
        added = [e for e in self.entries if key in (_resolved(e.folder), _resolved(e.folder).parent)]
        if not added:
            if new:
                self.extra_folders.remove(folder)
            self.message(ERROR, f"No model in {folder}", NO_MODEL_HELP)
            return []
        good = [e for e in added if e.ok]
        if good:
            self.message(INFO, f"Added {', '.join(e.id for e in good)} from {folder}", "")
            self._remember(folder)
        for entry in added:  # checked in full already (weights header against the file's size): named at once
            if not entry.ok:
                self.message(ERROR, f"Model {entry.id} cannot be used: {_one_line(entry.error)}", str(entry.error))
        return added

    def mark_broken(self, model_id: str, problem: str) -> PackageEntry | None:
        """Mark the package of `model_id` unusable (its weights failed to load: `problem` says why) until the next
        scan, so the list shows it as invalid with its error; returns it (None: not installed)."""
        entry = self.entry_for(model_id)
        if entry is None:
            return None
        entry.error = StudioError(problem)
        self.changed()
        return entry

    def add_folders(self, folders: Iterable[str | Path]) -> None:
        """Scan these folders too while the app runs (a project's model folders), without remembering them; call
        `refresh` after."""
        for folder in folders:
            folder = Path(folder)
            if folder.is_dir() and folder not in self.extra_folders:
                self.extra_folders.append(folder)

    def _remember(self, folder: Path) -> None:
        if not self.remember:
            return
        try:
            remember_model_folders([folder], self.settings_file)
        except StudioError as exc:
            self.message(WARNING, f"{folder.name} is open now, but the next start will not find it", str(exc))


# --- a file that names a model folder ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FolderQuestion:
    """A file (`source`: a picture, a sound or a project) asks for the model in `folder`, which is not installed:
    the user decides whether to add it to the model folders. `sha256` is the weights hash the file claims."""

    source: str
    folder: str
    sha256: str = ""

    @property
    def title(self) -> str:
        return "Load the model in this folder?"

    @property
    def text(self) -> str:
        from studio.limits import quote

        weights = f"weights sha256 {self.sha256[:16]}…" if self.sha256 else "no weights hash"
        return (f"{Path(self.source).name} asks for the model in {quote(self.folder)} ({weights}), which is not one "
                "of your model folders. Add it to your model folders?")

    @property
    def detail(self) -> str:
        return FOLDER_TRUST


# The user's answer to a FolderQuestion: True adds the folder. A window shows a dialog; the default says No.
FolderAsker = Callable[[FolderQuestion], bool]


def never(question: FolderQuestion) -> bool:
    """The answer when nobody can be asked: No (a file never adds a folder on its own)."""
    return False


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop
        return path.absolute()


def _one_line(error: object, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
