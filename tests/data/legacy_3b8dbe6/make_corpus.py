"""Made the files in this folder with the app at commit 3b8dbe6 (request format 1), before requests carried `params`.

It ran once, on that commit, with the shipped models (`python tests/data/legacy_3b8dbe6/make_corpus.py`); it does not
run on later commits (it uses the old request fields on purpose). What it wrote:

- `*.png`, `*.jpg`, `*.webp`, `*.wav`, `*.flac`, `*.ogg`, `*.mp3`: exports of the shipped models with the old request
  inside (seeds, edits as floats, sampler settings, an init image, explicit latents);
- `project.lstudio`: a project with a current request, saved latents, render history and a timeline (with a sound
  mapping), and `project-frames/`: that timeline exported as PNG frames;
- `renders.json`: for every export, the sha256 of the exact output the old app rendered (uint8 pixels or float32
  samples, C order) and of every timeline frame, so tests can check that today's app renders the same.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from studio.engine import EXPORT, Engine  # noqa: E402
from studio.engine.animate import export_animation  # noqa: E402
from studio.export import save_audio, save_image  # noqa: E402
from studio.families.diffusion import encode_init_image, init_image_for  # noqa: E402
from studio.project import Document, HistoryEntry, SavedLatent, save_document  # noqa: E402
from studio.project.timeline import AudioMapping, Keyframe, Timeline, frames_of, sound_of  # noqa: E402
from studio.request import RenderRequest as R  # noqa: E402


def digest(data: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()


def init_picture() -> np.ndarray:
    """A grey picture with a bar and a disc (what an artist might start image-to-image from)."""
    y, x = np.mgrid[0:48, 0:80]
    img = np.full((48, 80), 230, np.uint8)
    img[(x - 24) ** 2 + (y - 24) ** 2 < 200] = 30
    img[10:38, 50:58] = 40
    return img


def main() -> None:
    rng = np.random.default_rng(3)
    init = encode_init_image(init_image_for(32, "Ab", init_picture()))
    images = {
        "glyphs-seed7.png": R("glyphs", seed=7, prompt="Latent"),
        "glyphs-edits.png": R("glyphs", seed=12345, prompt="Hi 42",
                              edits=(("d0", 1.5), ("d3", -0.8), ("truncation", 0.7))),
        "glyphs-mix.png": R("glyphs", seed=2, prompt="Mix", width=200,
                            edits=(("mix_seed", 99.0), ("mix_strength", 0.3), ("variation_seed", 5.0),
                                   ("variation_strength", 0.4), ("z2", 0.5))),
        "glyphs-latent.png": R("glyphs", prompt="Za",
                               latent=tuple(float(v) for v in rng.standard_normal(32).round(4))),
        "glyphs-bigseed.png": R("glyphs", seed=2**62 + 17, prompt="Big"),
        "gan-seed3.png": R("glyph-gan", seed=3, prompt="Latent"),
        "gan-style.png": R("glyph-gan", seed=8, prompt="Style",
                           edits=(("truncation", 0.6), ("mix_seed", 77.0), ("mix_layer", 4.0), ("d1", 2.0),
                                  ("layer_start", 2.0), ("layer_end", 6.0), ("noise", 0.5))),
        "gan-nonoise.png": R("glyph-gan", seed=21, prompt="Quiet",
                             edits=(("noise", 0.0), ("variation_seed", 11.0), ("variation_strength", 0.5),
                                    ("z5", 0.3))),
        "gan-wplus.png": R("glyph-gan", seed=4, prompt="W",
                           latent=tuple(float(v) for v in (rng.standard_normal(8 * 128) * 0.5).round(4))),
        "diffusion-default.png": R("glyph-diffusion", seed=1, prompt="Ab"),
        "diffusion-dpmpp.png": R("glyph-diffusion", seed=6, prompt="Cd", sampler="dpmpp", steps=10, guidance=3.0,
                                 edits=(("mix_seed", 4.0), ("mix_strength", 0.25))),
        "diffusion-euler.png": R("glyph-diffusion", seed=9, prompt="Ef", sampler="euler", steps=8,
                                 edits=(("variation_seed", 9.0), ("variation_strength", 0.3))),
        "diffusion-img2img.png": R("glyph-diffusion", seed=10, prompt="Ab", sampler="ddim", steps=12, eta=0.0,
                                   init_image=init, strength=0.5),
        "diffusion-ddpm.jpg": R("glyph-diffusion", seed=11, prompt="Gh", sampler="ddpm", steps=6),
        "glyphs-edits.webp": R("glyphs", seed=31, prompt="Web", edits=(("d1", -1.0),)),
    }
    sounds = {
        "kick-seed0.wav": (R("one-shots", seed=0, label="kick"), "FLOAT"),
        "snare-edits.flac": (R("one-shots", seed=5, label="snare", edits=(("d0", 1.0), ("truncation", 0.8))), None),
        "pad-mix.wav": (R("one-shots", seed=12, label="pad",
                          edits=(("mix_seed", 3.0), ("mix_strength", 0.5), ("z1", -0.4))), None),
        "hat.ogg": (R("one-shots", seed=2, label="hat"), None),
        "kick.mp3": (R("one-shots", seed=44, label="kick", edits=(("variation_seed", 2.0),
                                                                 ("variation_strength", 0.2))), None),
    }
    record: dict = {"commit": "3b8dbe6", "files": {}, "frames": []}
    with Engine(device="cpu") as engine:
        for name, request in images.items():
            job = engine.submit(request, EXPORT)
            out = job.wait()
            save_image(HERE / name, out.data, request, model_name=job.info["model_name"],
                       model_sha256=job.info["model_sha256"])
            record["files"][name] = {"sha256": digest(out.data), "shape": list(out.data.shape), "dtype": "uint8"}
        for name, (request, subtype) in sounds.items():
            job = engine.submit(request, EXPORT)
            out = job.wait()
            save_audio(HERE / name, out.data, int(out.info["sample_rate"]), request,
                       model_name=job.info["model_name"], model_sha256=job.info["model_sha256"], subtype=subtype)
            record["files"][name] = {"sha256": digest(out.data.astype(np.float32)), "shape": list(out.data.shape),
                                     "dtype": "float32"}

        # a project: request, latents, history, and a timeline with a sound mapping
        def latent_of(request: R) -> tuple[float, ...]:
            return tuple(float(v) for v in engine.latent(request).wait().data)

        key_latent = latent_of(R("glyphs", seed=100, prompt="Key", edits=(("d0", 1.0),)))
        keys = (
            Keyframe(R("glyphs", seed=0, prompt="Key", latent=key_latent), name="one", duration=0.5),
            Keyframe(R("glyphs", seed=200, prompt="Key",
                       latent=latent_of(R("glyphs", seed=200, edits=(("d2", -1.0), ("truncation", 0.9))))),
                     name="two", duration=0.5, easing="linear"),
            Keyframe(R("glyphs", seed=300, prompt="Key", latent=latent_of(R("glyphs", seed=300))), name="three",
                     duration=0.5, interpolation="lerp"),
        )
        timeline = Timeline(keyframes=keys, fps=6.0, audio="kick-seed0.wav",
                            mappings=(AudioMapping("onsets", "d0", gain=1.5),))
        doc = Document(request=R("glyph-gan", seed=5, prompt="Doc", edits=(("mix_seed", 6.0), ("mix_layer", 3.0))))
        doc.latents.append(SavedLatent("key latent", "glyphs", "", key_latent))
        doc.add_history(HistoryEntry(R("glyphs", seed=9, prompt="Old", edits=(("d0", 0.5),)), 0.01,
                                     "2026-12-01T10:00:00+00:00"))
        doc.timeline = timeline
        save_document(doc, HERE / "project.lstudio")
        sound = sound_of(timeline, HERE)
        frames = frames_of(timeline, HERE, sound)
        job = export_animation(engine, frames, HERE / "project-frames", timeline.fps, metadata=doc.to_json())
        job.wait()
        for frame in frames:
            out = engine.submit(frame, EXPORT).wait()
            record["frames"].append(digest(out.data))
    (HERE / "renders.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(record['files'])} files and {len(record['frames'])} frames")


if __name__ == "__main__":
    main()
