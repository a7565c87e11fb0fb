"""Write the example projects in resources/examples/ from the shipped models (run it again after retraining them):

    .venv/bin/python packaging/make_examples.py

- glyph-walk.lstudio: a looping walk through four styles of the glyph model, eased, slerped.
- beat-reactive.lstudio: the glyph model moved by a drum loop that the sound model made (beat.wav): hits push the
  first style direction, the low band speeds the walk up.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from studio.engine import Engine  # noqa: E402
from studio.library import resolve  # noqa: E402
from studio.project import Document, save_document  # noqa: E402
from studio.project.document import ModelRef  # noqa: E402
from studio.project.timeline import AudioMapping, Keyframe, Timeline  # noqa: E402
from studio.request import RenderRequest  # noqa: E402

OUT = REPO / "resources" / "examples"
BPM = 120
PATTERN = ["kick", "hat", "snare", "hat", "kick", "kick", "snare", "hat"]  # eighth notes, one bar, played twice


def keyframes(engine: Engine, prompt: str, seeds: list[int], duration: float) -> tuple[Keyframe, ...]:
    keys = []
    for seed in seeds:
        request = RenderRequest("glyphs", seed=seed, params={"prompt": prompt})
        values = engine.latent(request).wait().data.reshape(-1)
        keys.append(Keyframe(request.with_(latent=tuple(float(v) for v in values)), duration=duration,
                             name=f"seed {seed}"))
    return tuple(keys)


def drum_loop(engine: Engine) -> tuple[np.ndarray, int]:
    """Two bars of the PATTERN, each hit rendered by the sound model (its default seed per class)."""
    hits = {kind: engine.render(RenderRequest("one-shots", seed=2, params={"label": kind})) for kind in set(PATTERN)}
    rate = int(next(iter(hits.values())).info["sample_rate"])
    step = int(rate * 60 / BPM / 2)
    loop = np.zeros(step * len(PATTERN) * 2 + rate, np.float32)
    for i, kind in enumerate(PATTERN * 2):
        sound = hits[kind].data[:, 0]
        loop[i * step:i * step + len(sound)] += sound * (0.6 if kind == "hat" else 0.9)
    return loop / max(1.0, float(np.abs(loop).max()) / 0.95), rate


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    glyphs = resolve("glyphs")
    with Engine(device="cpu") as engine:
        walk = keyframes(engine, "Latent", [1, 7, 12, 3], 1.5)
        doc = Document(request=walk[0].request, models=[ModelRef("glyphs", glyphs.sha256, glyphs.manifest.name)],
                       timeline=Timeline(walk, fps=24, loop=True))
        save_document(doc, OUT / "glyph-walk.lstudio")
        wave, rate = drum_loop(engine)
        sf.write(str(OUT / "beat.wav"), wave, rate, subtype="PCM_16")
        beat = keyframes(engine, "Beat", [5, 9], round(len(wave) / rate, 2))
        mappings = (AudioMapping("onsets", "d0", gain=2.5, attack=0.0, release=0.15),
                    AudioMapping("low", "speed", gain=1.0, attack=0.02, release=0.2))
        doc = Document(request=beat[0].request, models=[ModelRef("glyphs", glyphs.sha256, glyphs.manifest.name)],
                       timeline=Timeline(beat, fps=24, audio="beat.wav", mappings=mappings))
        save_document(doc, OUT / "beat-reactive.lstudio")
    for path in sorted(OUT.iterdir()):
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
