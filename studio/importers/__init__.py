"""Importers: turn weights from outside the studio into model packages, without ever running their code."""

from studio.importers.checkpoint import import_checkpoint
from studio.io.checkpoints import read_checkpoint

__all__ = ["import_checkpoint", "read_checkpoint"]
