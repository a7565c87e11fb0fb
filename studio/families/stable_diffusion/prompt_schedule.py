"""AUTOMATIC1111's prompt editing and alternation, written from its published rules (modules/prompt_parser.py
`get_learned_conditioning_prompt_schedules` and its grammar, `reconstruct_cond_batch`, sd_samplers_cfg_denoiser.py):

- `[from:to:when]` draws `from` until step `when`, then `to`; `[to:when]` adds `to` at `when`, `[from::when]` takes
  `from` away; they nest (`a[b:[c:d:2]:1]e`). `when` written with a "." is a fraction of the steps
  (`[a:b:0.25]` at 20 steps is step 5; `1.0` is the last step), without one it is a step number; either is cut to
  the step count, and a `when` under 1 never draws `from` (A1111's current rule; its "old prompt editing timelines"
  read any number under 1 as a fraction: `old=True`);
- `[a|b|c]` alternates every step (a, b, c, a, …); an empty option is the empty text (`[fe|]male`);
- `(text)`, `(text:1.2)` and `[text]` are kept as they are, for the weights (prompts.py) to read afterwards;
  brackets that are none of these stay text; a prompt this grammar cannot read at all (a `|` outside `[…]`, a
  lone backslash at the end) is used as it is for every step, as A1111 does.

The result is a schedule: (last step, text) pairs whose steps count from 1, as A1111's are. While sampling, A1111
counts the denoiser's calls from 0 and takes the first pair whose last step is at least that count; so
"a [fantasy:cyberpunk:16] landscape" at 30 steps draws "fantasy" for the calls 0 … 16 (17 steps) and "cyberpunk"
for the other 13 — reproduced as it is (`Timeline.at`). The negative prompt has its own schedule.

A render encodes each distinct (prompt, negative) pair once, before it samples (`step_conditions`), SDXL's
included (its pooled text and size conditions follow the step's prompt too). No torch at import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Generic, TypeVar, Union

if TYPE_CHECKING:
    import torch

    from studio.families.stable_diffusion.prompts import Parsed

# A1111's terminals: plain text (anything but \ [ ] ( ) : | unless escaped; `.` does not take a line break, as in
# its regular expression), and lark's SIGNED_NUMBER with the optional spaces around it.
_PLAIN = re.compile(r"(?:[^\\\[\]():|]|\\.)+")
_WHEN = re.compile(r"\s*([+-]?(?:\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?))\s*\]")
_CONSTRUCT = re.compile(r"[\[|]")  # a prompt without "[" or "|" has nothing to schedule
MAX_DEPTH = 32  # constructs nested deeper than this are text (no prompt is that deep; it bounds the work)


@dataclass(frozen=True)
class _Scheduled:
    before: tuple["_Node", ...] | None
    after: tuple["_Node", ...]
    when: str  # the number as written: whether it holds a "." decides how it is read


@dataclass(frozen=True)
class _Alternate:
    options: tuple[tuple["_Node", ...], ...]


_Node = Union[str, _Scheduled, _Alternate]


class _NoParse(Exception):
    """The text does not fit the grammar here."""


class _Parser:
    """A recursive-descent reading of A1111's grammar:

        start:       (prompt | /[][():]/+)*
        prompt:      (emphasized | scheduled | alternate | plain | WHITESPACE)*
        emphasized:  "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"     (kept as text)
        scheduled:   "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
        alternate:   "[" prompt ("|" [prompt])+ "]"

    Where a bracket can be read as a construct or as stray text, the construct wins (as A1111's parser picks in its
    published examples), but for the case `_top_group` describes; brackets stray only at the top level."""

    def __init__(self, text: str):
        self.text = text

    def start(self) -> list[_Node]:
        text, n = self.text, len(self.text)
        groups: dict[int, tuple[list[_Node], int] | None] = {}
        for i in range(n - 1, -1, -1):  # right to left: whether a group is read depends on what follows it
            if text[i] in "[(":
                groups[i] = self._top_group(i, groups)
        out: list[_Node] = []
        i = 0
        while i < n:
            c = text[i]
            group = groups.get(i)
            if group is not None:
                out.extend(group[0])
                i = group[1]
            elif c in "[]():":
                out.append(c)  # a stray bracket or colon is text
                i += 1
            else:
                m = _PLAIN.match(text, i)
                if m is None:  # a "|" outside brackets, or a backslash with nothing (or a line break) after it
                    raise _NoParse
                out.append(m.group(0))
                i = m.end()
        return out

    def _top_group(self, i: int, groups: dict[int, tuple[list[_Node], int] | None]
                   ) -> tuple[list[_Node], int] | None:
        """The group at `i` as the top level reads it, or None when its brackets are stray text there. A1111's
        parser reads a `[…:…:n]` or `(…)` / `[…]` group followed at once by an even number (2, 4, …) of stray
        brackets and colons as stray text itself (`[a:b:5]))` does not switch; `[a:b:5])` and `[a:b:5]) )` do);
        `[a|b]` is always an alternation."""
        try:
            nodes, end = self._group(i, 0)
        except _NoParse:
            return None
        if len(nodes) == 1 and isinstance(nodes[0], _Alternate):
            return nodes, end
        run, j = 0, end
        while j < len(self.text) and self.text[j] in "[]():" and groups.get(j) is None:
            run, j = run + 1, j + 1
        return None if run and run % 2 == 0 else (nodes, end)

    def _prompt(self, i: int, depth: int) -> tuple[list[_Node], int]:
        out: list[_Node] = []
        while i < len(self.text):
            c = self.text[i]
            if c in "[(":
                node, i = self._group(i, depth)
                out.extend(node)
                continue
            m = _PLAIN.match(self.text, i)
            if m is None:
                break
            out.append(m.group(0))
            i = m.end()
        return out, i

    def _at(self, i: int) -> str:
        return self.text[i] if i < len(self.text) else ""

    def _group(self, i: int, depth: int) -> tuple[list[_Node], int]:
        """The construct opening at `i` ("[" or "("): its nodes and where it ends; _NoParse when there is none."""
        if depth >= MAX_DEPTH:
            raise _NoParse
        depth += 1
        if self.text[i] == "(":
            first, j = self._prompt(i + 1, depth)
            if self._at(j) == ")":
                return ["(", *first, ")"], j + 1
            if self._at(j) == ":":
                second, k = self._prompt(j + 1, depth)
                if self._at(k) == ")":
                    return ["(", *first, ":", *second, ")"], k + 1
            raise _NoParse
        first, j = self._prompt(i + 1, depth)
        c = self._at(j)
        if c == "]":
            return ["[", *first, "]"], j + 1
        if c == "|":
            options = [tuple(first)]
            while self._at(j) == "|":
                option, j = self._prompt(j + 1, depth)
                options.append(tuple(option))
            if self._at(j) != "]":
                raise _NoParse
            return [_Alternate(tuple(options))], j + 1
        if c == ":":
            m = _WHEN.match(self.text, j + 1)
            if m is not None:  # [to:when]
                return [_Scheduled(None, tuple(first), m.group(1))], m.end()
            second, k = self._prompt(j + 1, depth)
            if self._at(k) == ":" and (m := _WHEN.match(self.text, k + 1)) is not None:  # [from:to:when]
                return [_Scheduled(tuple(first), tuple(second), m.group(1))], m.end()
        raise _NoParse


def _step_of(when: str, steps: int, old: bool) -> int:
    """A `when` as the step it names, cut to `steps` (A1111's `min(steps, int(v))`)."""
    v = float(when)
    if old:
        v = v * steps if v < 1 else v
    elif "." in when:
        v = v * steps
    if v >= steps:
        return steps
    return int(v) if v > -steps - 1 else -1  # int() of a huge negative (or -inf) would fail; any v < 1 never switches


def _walk(nodes: tuple[_Node, ...] | list[_Node], steps: int, old: bool, found: set[int]) -> bool:
    """Collect the steps where something changes into `found`; True when an alternation is there."""
    alternates = False
    for node in nodes:
        if isinstance(node, _Scheduled):
            when = _step_of(node.when, steps, old)
            if when >= 1:
                found.add(when)
            alternates |= _walk(node.before or (), steps, old, found)
            alternates |= _walk(node.after, steps, old, found)
        elif isinstance(node, _Alternate):
            alternates = True
            for option in node.options:
                _walk(option, steps, old, found)
    return alternates


def _text_at(nodes: tuple[_Node, ...] | list[_Node], step: int, steps: int, old: bool) -> str:
    parts = []
    for node in nodes:
        if isinstance(node, str):
            parts.append(node)
        elif isinstance(node, _Scheduled):
            chosen = (node.before or ()) if step <= _step_of(node.when, steps, old) else node.after
            parts.append(_text_at(chosen, step, steps, old))
        else:
            parts.append(_text_at(node.options[(step - 1) % len(node.options)], step, steps, old))
    return "".join(parts)


def prompt_schedule(prompt: str, steps: int, old: bool = False) -> list[tuple[int, str]]:
    """A1111's schedule of `prompt` over `steps` steps: [(last step, text)], steps counted from 1, the last pair's
    step is `steps`. A prompt without prompt editing or alternation is [(steps, prompt)]."""
    steps = max(1, int(steps))
    if not _CONSTRUCT.search(prompt):
        return [(steps, prompt)]
    try:
        tree = _Parser(prompt).start()
    except (_NoParse, RecursionError):
        return [(steps, prompt)]
    found = {steps}
    if _walk(tree, steps, old, found):
        found.update(range(1, steps + 1))
    return [(t, _text_at(tree, t, steps, old)) for t in sorted(found)]


def _at(schedule: tuple[tuple[int, str], ...], count: int) -> str:
    """A1111's `reconstruct_cond_batch`: the first entry whose last step is at least `count` (the denoiser's calls
    counted from 0); past the end, the first entry."""
    for end, text in schedule:
        if count <= end:
            return text
    return schedule[0][1]


@dataclass(frozen=True)
class Timeline:
    """The prompt's and the negative prompt's schedules for one render."""

    prompt: tuple[tuple[int, str], ...]
    negative: tuple[tuple[int, str], ...]

    @property
    def changes(self) -> bool:
        """Whether any step uses another text than the first."""
        return len({t for _, t in self.prompt}) > 1 or len({t for _, t in self.negative}) > 1

    @property
    def steps(self) -> int:
        return max(self.prompt[-1][0], self.negative[-1][0])

    def at(self, count: int) -> tuple[str, str]:
        """(prompt, negative) for the walk's step `count` (from 0)."""
        return _at(self.prompt, count), _at(self.negative, count)


def prompt_timeline(prompt: str, negative: str, steps: int) -> Timeline:
    return Timeline(tuple(prompt_schedule(prompt, steps)), tuple(prompt_schedule(negative, steps)))


_C = TypeVar("_C")


class StepConditions(Generic[_C]):
    """Each step's conditioning: `build(prompt, negative)` once per distinct pair, kept for the render."""

    def __init__(self, timeline: Timeline, build: Callable[[str, str], _C]):
        self.timeline, self._build = timeline, build
        self.built: dict[tuple[str, str], _C] = {}

    def at(self, count: int) -> _C:
        key = self.timeline.at(count)
        if key not in self.built:
            self.built[key] = self._build(*key)
        return self.built[key]


@dataclass(frozen=True)
class Conditioning:
    """What the UNet takes for one (prompt, negative) pair: the context ([prompt, negative] when guided), SDXL's
    added conditions, and the parsed texts (for the embeddings the render reports)."""

    context: "torch.Tensor"
    added: dict | None
    parsed: tuple["Parsed | None", ...]


class SDStepConditions(StepConditions[Conditioning]):
    def unet_inputs(self, count: int) -> tuple["torch.Tensor", dict | None]:
        """(context, added conditions) for the walk's step `count` (from 0)."""
        step = self.at(count)
        return step.context, step.added

    def parsed(self) -> list["Parsed | None"]:
        """Every text parsed so far (the embeddings they use go into the output's info)."""
        return [p for c in self.built.values() for p in c.parsed]


def step_conditions(timeline: Timeline, net, request, clip_skip: int, guided: bool,
                    size: tuple[int, int]) -> SDStepConditions | None:
    """The conditioning of every step of a render whose prompt or negative changes while it samples, built as the
    render builds its single one (family.py): CLIP's states of both texts, padded to the same number of chunks; on
    SDXL, its own conditions of the step's texts (sdxl.py). Every pair is encoded here, before the walk, so that a
    low-VRAM offload (gpu.py) moves the text encoders in once, not between UNet steps. None when nothing changes
    (the render's own single conditioning holds)."""
    if not timeline.changes:
        return None
    from studio.families.stable_diffusion.prompts import pair

    def build(prompt: str, negative: str) -> Conditioning:
        import torch

        cond, parsed = net.text_embeddings(prompt, clip_skip)
        if net.xl is not None:  # the prompt and negative already paired, with the pooled text and size conditions
            texts = request.with_params({"prompt": prompt, "negative_prompt": negative})
            context, added = net.xl.request_conditions(net, texts, guided, size, prompt)
            parsed_negative = net.text_embeddings(negative)[1] if guided else None
            return Conditioning(context, added, (parsed, parsed_negative))
        if not guided:
            return Conditioning(cond, None, (parsed,))
        uncond, parsed_negative = net.text_embeddings(negative, clip_skip)
        return Conditioning(torch.cat(pair(cond, uncond, net.text_embeddings("", clip_skip)[0])), None,
                            (parsed, parsed_negative))

    conditions = SDStepConditions(timeline, build)
    for count in range(timeline.steps):
        conditions.at(count)
    return conditions
