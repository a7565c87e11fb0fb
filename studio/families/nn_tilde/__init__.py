"""nn~ TorchScript models (RAVE v1/v2, nn_tilde modules) as sound models: see family.py."""

from studio.families.nn_tilde.family import NnTildeFamily

__all__ = ["NnTildeFamily"]
