"""The forms a model's latent takes as flat values, and converting between them (NumPy only: the library panel and
the document pair saved latents on the GUI thread, without torch).

A family declares its latent kinds for a manifest (`Family.latent_kinds`): most have one (z, the manifest's latent);
a style-based GAN has two, one w (w_dim values, the same style for every layer) and w+ (one w per layer, what a
projection finds). A kind that `widens` another is that kind repeated: a w is exactly the w+ whose layers all hold
it, so two saved latents of one model pair up as the wider kind (w → w+ by repetition). Kinds that do not widen one
another do not pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True)
class LatentKind:
    """One form of a model's latent: `size` flat values. `widens`: the name of the kind that becomes this one by
    repeating its values (`size` must be a whole multiple of that kind's)."""

    name: str
    size: int
    widens: str = ""
    help: str = ""

    def describe(self, kinds: Sequence["LatentKind"] = ()) -> str:
        """"w+ (8 × 128 values)", "z (32 values)"."""
        base = find_kind(kinds, name=self.widens) if self.widens else None
        if base is not None and base.size and self.size % base.size == 0:
            return f"{self.name} ({self.size // base.size} × {base.size} values)"
        return f"{self.name} ({self.size} values)"


def find_kind(kinds: Iterable[LatentKind], size: int | None = None, name: str | None = None) -> LatentKind | None:
    """The kind of `size` values (or named `name`) among `kinds`; None when there is none."""
    for kind in kinds:
        if (size is None or kind.size == size) and (name is None or kind.name == name):
            return kind
    return None


def widens_to(kinds: Sequence[LatentKind], source: LatentKind, target: LatentKind) -> bool:
    """Whether a latent of kind `source` becomes one of kind `target` by repetition (directly or in steps)."""
    seen = set()
    kind: LatentKind | None = target
    while kind is not None and kind.widens and kind.name not in seen:
        seen.add(kind.name)
        if kind.widens == source.name:
            return target.size % source.size == 0
        kind = find_kind(kinds, name=kind.widens)
    return False


def common_kind(kinds: Sequence[LatentKind], a: int, b: int) -> LatentKind | None:
    """The kind two latents of `a` and `b` values can both take (the wider of the two when one widens to the other);
    None when they do not pair (a size this model has no kind of, or two kinds neither of which widens)."""
    ka, kb = find_kind(kinds, size=a), find_kind(kinds, size=b)
    if ka is None or kb is None:
        return None
    if ka == kb:
        return ka
    if widens_to(kinds, ka, kb):
        return kb
    if widens_to(kinds, kb, ka):
        return ka
    return None


def convert(values: Sequence[float], kinds: Sequence[LatentKind], target: LatentKind) -> tuple[float, ...]:
    """`values` as a latent of kind `target` (unchanged when already of that size; repeated when their kind widens to
    it). ValueError naming both kinds when they do not convert."""
    values = tuple(float(v) for v in values)
    if len(values) == target.size:
        return values
    source = find_kind(kinds, size=len(values))
    if source is None:
        raise ValueError(f"a latent of {len(values)} values is no kind of this model (it takes "
                         f"{', '.join(k.describe(kinds) for k in kinds)})")
    if not widens_to(kinds, source, target):
        raise ValueError(f"a {source.describe(kinds)} latent does not convert to {target.describe(kinds)}")
    return values * (target.size // source.size)


def pair(kinds: Sequence[LatentKind], a: Sequence[float], b: Sequence[float]) -> tuple[tuple[float, ...],
                                                                                      tuple[float, ...]]:
    """Two latents as the same kind, ready to interpolate (w and w+ → both w+). ValueError saying why not."""
    kind = common_kind(kinds, len(a), len(b))
    if kind is None:
        ka, kb = find_kind(kinds, size=len(a)), find_kind(kinds, size=len(b))
        shown = [k.describe(kinds) if k is not None else f"{n} values" for k, n in ((ka, len(a)), (kb, len(b)))]
        raise ValueError(f"a {shown[0]} latent and a {shown[1]} latent do not pair: neither converts to the other")
    return convert(a, kinds, kind), convert(b, kinds, kind)
