"""AUTOMATIC1111's sampler and "Schedule type" names ↔ ours, for the Stable Diffusion family.

The table itself is `studio.io.a1111_names` (torch- and Qt-free, below the families, so that the metadata writer
in studio.export and the reader in studio.io.foreign use the same one); this module is its name inside the family.
"""

from studio.io.a1111_names import (A1111_SAMPLERS, AUTOMATIC, KARRAS, TIMESTEP_SAMPLERS, UNIFORM, a1111_name,
                                   a1111_sampler, known_schedule, our_sampler)

__all__ = ["A1111_SAMPLERS", "AUTOMATIC", "KARRAS", "TIMESTEP_SAMPLERS", "UNIFORM", "a1111_name", "a1111_sampler",
           "known_schedule", "our_sampler"]
