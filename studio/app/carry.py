"""What a request keeps when its model changes, or when an encoded latent replaces its seed — and a line saying what
was dropped — so that no setting is lost without a word.

Switching model (`switch_request`) keeps the seed; the prompt when the new model takes text (only the characters it
can draw, naming those dropped); every param the new model declares with a value it accepts; the output size when
the new model draws at any size; and explicit latent values and latent edits (principal directions, raw dimensions)
only where the latent space is the same (the same family and weights). Encoding or projecting an image
(`encoded_params`) keeps every edit that still acts on explicit values (mixing, directions, truncation, noise …) and
drops those that act only on a seed's draw.

No Qt, no torch: the specs (studio.params) decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studio.errors import RequestError
from studio.library import PackageEntry
from studio.params import DIRECTIONS, RAW, Capability, Kind, ParamSpec, ParamTable
from studio.request import RenderRequest

LATENT_GROUPS = (DIRECTIONS, RAW)  # edits along one model's own axes: meaningless in another latent space
NOT_USED = "not used by this model"
MAX_NAMED = 8  # names listed per reason in the one-line summary (the detail lists all)


@dataclass(frozen=True)
class Carried:
    """A request carried over, what it kept (names) and what it dropped ((name, why) pairs)."""

    request: RenderRequest
    kept: tuple[str, ...] = ()
    dropped: tuple[tuple[str, str], ...] = ()

    def summary(self) -> str:
        """"kept prompt, seed; dropped sampler, steps (not used by this model)"."""
        parts = []
        if self.kept:
            parts.append("kept " + _names(self.kept))
        if self.dropped:
            reasons: dict[str, list[str]] = {}
            for name, why in self.dropped:
                reasons.setdefault(why, []).append(name)
            parts.append("dropped " + "; ".join(f"{_names(names)} ({why})" for why, names in reasons.items()))
        return "; ".join(parts)

    def detail(self) -> str:
        """One line per setting dropped, with why."""
        return "\n".join(f"{name}: {why}" for name, why in self.dropped)


def _names(names: tuple[str, ...] | list[str]) -> str:
    shown = list(names[:MAX_NAMED])
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def same_latent_space(a: PackageEntry | None, b: PackageEntry | None) -> bool:
    """Whether two packages share one latent space: the same family over the same weights (one model installed
    twice, or under two ids)."""
    if a is None or b is None or a.manifest is None or b.manifest is None:
        return False
    if a.manifest.family != b.manifest.family or a.manifest.latent.shape != b.manifest.latent.shape:
        return False
    return a.id == b.id or (bool(a.sha256) and a.sha256 == b.sha256)


def fitted_text(spec: ParamSpec, text: str) -> tuple[str, str]:
    """A text param's value with only the characters `spec` can draw (and spaces): (kept text, the characters
    dropped, each once, in order)."""
    if not spec.charset:
        return text, ""
    allowed = set(spec.charset)
    kept = "".join(c for c in text if c in allowed or c.isspace())
    dropped = "".join(dict.fromkeys(c for c in text if c not in allowed and not c.isspace()))
    return kept, dropped


def _charset_text(charset: str) -> str:
    """"A–Z, a–z, 0–9" for a charset of runs, else the characters themselves (shortened)."""
    runs = []
    for lo, hi in (("A", "Z"), ("a", "z"), ("0", "9")):
        span = "".join(chr(c) for c in range(ord(lo), ord(hi) + 1))
        if span in charset:
            runs.append(f"{lo}–{hi}")
            charset = charset.replace(span, "")
    rest = charset if len(charset) <= 20 else charset[:20] + "…"
    return ", ".join(runs + ([rest] if rest else []))


def switch_request(old: RenderRequest, old_entry: PackageEntry | None, entry: PackageEntry,
                   default: RenderRequest) -> Carried:
    """`old` carried over to `entry`'s model, starting from `default` (what that model opens with at the old seed)."""
    table = entry.parameters
    name = entry.manifest.name if entry.manifest is not None else entry.id
    old_name = old_entry.manifest.name if old_entry is not None and old_entry.manifest is not None else old.model_id
    same_space = same_latent_space(old_entry, entry)
    kept: list[str] = ["seed"]
    dropped: list[tuple[str, str]] = []
    request = default.with_(seed=old.seed, dtype=old.dtype)
    if old.latent is not None:
        if same_space:
            request = request.with_(latent=old.latent)
            kept.append("latent")
        else:
            dropped.append(("latent values", f"they belong to {old_name}'s latent space"))
    if old.width is not None or old.height is not None:
        if Capability.ANY_SIZE in entry.capabilities and _size_fits(table, old):
            request = request.with_(width=old.width, height=old.height)
            kept.append("size")
        else:
            dropped.append(("size", f"{name} draws at its own size"))
    params: dict[str, Any] = {}
    first = {name: i for i, name in enumerate(("prompt", "label"))}  # the condition leads the lists
    for key, value in sorted(old.params.items(), key=lambda item: (first.get(item[0], 9), item[0])):
        spec = table.find(key)
        if spec is None or spec.is_core:
            dropped.append((key, NOT_USED))
            continue
        if spec.group in LATENT_GROUPS and not same_space:
            dropped.append((key, f"an edit of {old_name}'s latent space"))
            continue
        if spec.kind is Kind.TEXT and isinstance(value, str):
            value, lost = fitted_text(spec, value)
            if not value.strip():
                dropped.append((key, f"{name} draws none of its characters ({_charset_text(spec.charset)})"))
                continue
            if lost:
                dropped.append((f"{lost!r} from the {key}", f"{name} draws {_charset_text(spec.charset)} and "
                                                           "spaces"))
        try:
            params[key] = spec.check(value, key)
        except RequestError as exc:
            dropped.append((key, exc.problem))
            continue
        kept.append(key)
    request = request.with_params(params)
    try:
        request = table.check(request)
    except RequestError:  # kept values that disagree with each other (a layer range): keep the condition only
        condition = {k: v for k, v in params.items() if (s := table.find(k)) is not None and s.kind is Kind.TEXT
                     or k == "label"}
        dropped.extend((k, "does not fit with the other settings") for k in params if k not in condition)
        kept = [k for k in kept if k not in params or k in condition]
        request = default.with_(seed=old.seed).with_params(condition)
    return Carried(request, tuple(kept), tuple(dropped))


def _size_fits(table: ParamTable, request: RenderRequest) -> bool:
    for core in ("width", "height"):
        spec, value = table.get(core), getattr(request, core)
        if spec is not None and value is not None:
            try:
                spec.check(value, core)
            except RequestError:
                return False
    return True


def encoded_params(request: RenderRequest, table: ParamTable) -> Carried:
    """The params of `request` kept when an encoded (or projected) latent replaces its seed: every edit that still
    acts on explicit values (the encoding holds none of them), not those that act only on a seed's draw. The
    Carried's request is `request` with those params (its latent is set by the caller)."""
    kept: list[str] = []
    dropped: list[tuple[str, str]] = []
    params: dict[str, Any] = {}
    for key, value in request.params.items():
        spec = table.find(key)
        if spec is not None and spec.seeded_only:
            dropped.append((key, "acts only on a latent drawn from the seed"))
            continue
        params[key] = value
        if spec is not None and not spec.render_only:
            kept.append(key)  # the condition and sampler settings go without saying
    return Carried(request.with_(params=params), tuple(kept), tuple(dropped))
