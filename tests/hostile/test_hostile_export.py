"""Export never fails on big metadata: a JPEG or WebP of a request too big for EXIF (an explicit latent of 20 000
numbers, ~200 kB of JSON) still exports, with AUTOMATIC1111's `parameters` where readers look for it (the Exif IFD's
UserComment, 0x9286 under 0x8769)."""

from __future__ import annotations

import json

import pytest

from harness import Cases, Spec, corpus, run_case, runner  # noqa: F401 (fixtures)

cases = Cases()


def _user_comment(ctx, result, path):
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        exif = image.getexif()
        comment = exif.get_ifd(0x8769).get(0x9286)
    assert comment, f"{path.name}: no UserComment in the Exif IFD (A1111 and exiftool read `parameters` there)"


def _big_request(suffix):
    def build(ctx):
        ctx.pkg(ctx.corpus.big_latent)
        latent = ctx.work / "big.json"
        latent.write_text(json.dumps({"latent": [((i * 37) % 200 - 100) / 50 for i in range(20_000)]}))
        out = ctx.out(f"out{suffix}")
        return Spec(["render", "--models-dir", ctx.models, "--model", "big-latent", "--latent", latent,
                     "--prompt", "Ab", "--out", out], rc=0, outputs=(out,),
                    check=lambda ctx, result: _user_comment(ctx, result, out))
    return build


def _small_request(suffix):
    def build(ctx):
        ctx.pkg()
        out = ctx.out(f"out{suffix}")
        return Spec(["render", "--models-dir", ctx.models, "--model", "tiny", "--out", out], rc=0, outputs=(out,),
                    check=lambda ctx, result: _user_comment(ctx, result, out))
    return build


for _suffix in (".jpg", ".jpeg", ".webp"):
    cases.add(f"big-request-as-{_suffix[1:]}", _big_request(_suffix))
for _suffix in (".jpg", ".webp"):
    cases.add(f"small-request-as-{_suffix[1:]}-parameters-in-exif-ifd", _small_request(_suffix))


@pytest.mark.parametrize("name, build", cases.params)
def test_export_fits_metadata(name, build, tmp_path, corpus, runner):
    run_case(name, build, tmp_path, corpus, runner)
