"""Project documents (.lstudio) and autosave/crash recovery. No Qt."""

from studio.project.autosave import Autosave, Recoverable, adopt, autosave_dir, discard, find_recoverable
from studio.project.document import (FORMAT, FORMAT_VERSION, HISTORY_LIMIT, SUFFIX, Document, HistoryEntry, ModelRef,
                                     SavedLatent, load_document, save_document, utc_now)

__all__ = [
    "FORMAT", "FORMAT_VERSION", "HISTORY_LIMIT", "SUFFIX", "Document", "HistoryEntry", "ModelRef", "SavedLatent",
    "load_document", "save_document", "utc_now",
    "Autosave", "Recoverable", "adopt", "autosave_dir", "discard", "find_recoverable",
]
