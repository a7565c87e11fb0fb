"""The per-character style spread beside the Fréchet distance (studio.train.scoring.glyphs.style_spread): zero when
every seed draws a character the same way, larger as the seeds vary more, counted per character."""

from __future__ import annotations

import pytest
import torch

from studio.train.scoring.glyphs import GlyphClassifier, score, style_spread


def test_identical_samples_of_each_character_have_no_spread():
    base = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))  # one feature row per character
    labels = torch.arange(3).repeat(5)  # five seeds per character, each drawn identically
    assert style_spread(base[labels], labels) == pytest.approx(0.0, abs=1e-9)


def test_more_varied_samples_spread_more_and_characters_count_alike():
    gen = torch.Generator().manual_seed(1)
    centres = torch.randn(4, 16, generator=gen) * 10
    labels = torch.arange(4).repeat(20)
    noise = torch.randn(len(labels), 16, generator=gen)
    small, large = style_spread(centres[labels] + 0.1 * noise, labels), style_spread(centres[labels] + noise, labels)
    assert 0 < small < large
    assert large == pytest.approx(10 * small, rel=1e-6)  # a distance: scales with the features
    # far-apart characters do not count as spread: only distances within a character do
    assert style_spread(centres[labels] * 100 + noise, labels) == pytest.approx(large, rel=1e-6)


def test_spread_is_the_mean_pairwise_distance_averaged_over_characters():
    feats = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [1.0, 1.0], [1.0, 3.0], [9.0, 9.0]])
    labels = torch.tensor([0, 0, 1, 1, 1, 2])  # character 2 has one sample: no pairs, left out
    # character 0: one pair at 5; character 1: pairs at 0, 2, 2 → 4/3
    assert style_spread(feats, labels) == pytest.approx((5 + 4 / 3) / 2)
    with pytest.raises(ValueError, match="at least two samples"):
        style_spread(feats[:1], labels[:1])


def test_score_reports_spread_beside_the_frechet_distance():
    torch.manual_seed(0)
    clf = GlyphClassifier().eval()
    want = torch.arange(62).repeat(2)
    same = torch.rand(62, 1, 32, 32, generator=torch.Generator().manual_seed(2))[want]
    varied = torch.rand(len(want), 1, 32, 32, generator=torch.Generator().manual_seed(3))
    held = torch.rand(20, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    flat = score(clf, same, want, held, prefix="s_")
    assert set(flat) == {"s_accuracy", "s_accuracy_lenient", "s_frechet_distance", "s_style_spread"}
    assert flat["s_style_spread"] == pytest.approx(0.0, abs=1e-3)
    assert score(clf, varied, want, held)["style_spread"] > 0.01


def test_score_leaves_the_spread_out_when_no_character_is_drawn_twice():
    torch.manual_seed(0)
    clf = GlyphClassifier().eval()
    want = torch.arange(10)
    ink = torch.rand(10, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    assert "style_spread" not in score(clf, ink, want, ink)
