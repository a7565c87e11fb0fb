"""Latent math: seeds, priors, interpolation, directions, mixing, edits. No Qt, CPU float32 by default."""

from studio.latent.directions import Directions, principal_directions
from studio.latent.edits import EDIT_PATTERNS, apply_edits, parse_edit_name
from studio.latent.interp import lerp, slerp
from studio.latent.seeds import MAX_SEED, mix, sample_prior, variation

__all__ = [
    "Directions", "principal_directions", "EDIT_PATTERNS", "apply_edits", "parse_edit_name", "lerp", "slerp",
    "MAX_SEED", "mix", "sample_prior", "variation",
]
