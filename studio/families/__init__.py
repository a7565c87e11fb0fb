"""Model families: one folder each (its Family class and what only it needs), found through the registry.

    family = get_family(manifest.family)      # loads that family's module on first use, and no other
    specs = family.parameters(manifest)       # what an artist can set, typed (studio.params)
    steps = family.render(model, request)     # a generator of Progress/Preview, returning an Output

A third-party family is a package with an entry point in the group `latent_studio.families`.
"""

from studio.families.base import Family, LoadedModel
from studio.families.registry import (ENTRY_POINT_GROUP, claim_path, family_names, foreign_manifest, get_family,
                                      register_family, unregister_family)
from studio.steps import Output, Preview, Progress, RenderSteps

__all__ = ["Family", "LoadedModel", "Output", "Preview", "Progress", "RenderSteps", "register_family", "unregister_family",
           "get_family", "family_names", "claim_path", "foreign_manifest", "ENTRY_POINT_GROUP"]
