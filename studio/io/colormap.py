"""Colour maps for pictures of sound (spectrograms in the app and in package previews)."""

from __future__ import annotations

import numpy as np

# How spectrograms look, in the app and in package previews: matplotlib's "magma" from nine stops to 256 levels
# (its luminance rises monotonically, so brighter always means louder).
_MAGMA_STOPS = np.array([(0, 0, 4), (28, 16, 68), (79, 18, 123), (129, 37, 129), (181, 54, 122), (229, 80, 100),
                         (251, 135, 97), (254, 194, 135), (252, 253, 191)], np.float64)
MAGMA = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_MAGMA_STOPS)), _MAGMA_STOPS[:, c])
                  for c in range(3)], axis=1).round().astype(np.uint8)
