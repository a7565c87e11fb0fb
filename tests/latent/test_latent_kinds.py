"""Latent kinds (studio.latent.kinds): a model's forms of latent and which convert into which (a GAN's w → w+ by
repetition, exact: the same picture)."""

from __future__ import annotations

import pytest
import torch

from studio.latent.kinds import LatentKind, common_kind, convert, find_kind, pair

from conftest import finish, make_tiny_gan_package


def test_kinds_pair_by_widening():
    kinds = (LatentKind("w", 4), LatentKind("w+", 12, widens="w"))
    assert common_kind(kinds, 4, 12) == kinds[1] and common_kind(kinds, 4, 4) == kinds[0]
    assert common_kind(kinds, 4, 5) is None
    assert convert((1, 2, 3, 4), kinds, kinds[1]) == (1.0, 2.0, 3.0, 4.0) * 3
    a, b = pair(kinds, (1, 2, 3, 4), range(12))
    assert len(a) == len(b) == 12
    with pytest.raises(ValueError, match="do not pair"):
        pair((LatentKind("z", 4), LatentKind("y", 8)), (0,) * 4, (0,) * 8)
    assert kinds[1].describe(kinds) == "w+ (3 × 4 values)"



def test_a_gan_declares_w_and_w_plus_and_a_repeated_w_draws_the_same_picture(tmp_path):
    from studio.library import load_model, scan
    from studio.request import RenderRequest

    entry = next(e for e in scan([make_tiny_gan_package(tmp_path / "gan").parent]) if e.id == "tiny-gan")
    kinds = entry.family.latent_kinds(entry.manifest)
    assert [(k.name, k.size, k.widens) for k in kinds] == [("w", 8, ""), ("w+", 32, "w")]
    model = load_model(entry)
    w = tuple(torch.randn(8, generator=torch.Generator().manual_seed(3)).tolist())
    one = finish(entry.family.render(model, RenderRequest("tiny-gan", seed=1, latent=w, params={"prompt": "Ab"})))[0]
    wide = convert(w, kinds, find_kind(kinds, name="w+"))
    two = finish(entry.family.render(model, RenderRequest("tiny-gan", seed=1, latent=wide,
                                                          params={"prompt": "Ab"})))[0]
    assert len(wide) == 32 and (one.data == two.data).all()


def test_the_shipped_glyph_gan_has_a_w_of_128_and_a_w_plus_of_8_layers(repo_root):
    from studio.library import scan

    entry = next(e for e in scan([repo_root / "models"]) if e.id == "glyph-gan")
    kinds = entry.family.latent_kinds(entry.manifest)
    assert [k.describe(kinds) for k in kinds] == ["w (128 values)", "w+ (8 × 128 values)"]
    with pytest.raises(ValueError, match="does not convert"):
        convert((0.0,) * 1024, kinds, kinds[0])  # w+ → w would throw styles away
