"""Labelled grids (studio.export.grid): cells land where they belong, labels are drawn beside them, bad layouts are
refused with what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from studio.export.grid import GAP, labelled_grid


def cell(value: int, h: int = 20, w: int = 30) -> np.ndarray:
    return np.full((h, w), value, np.uint8)


def test_cells_are_placed_in_order_with_labels_around_them():
    colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 0, 250)]  # text is grey: never one of these
    blocks = [np.full((20, 30, 3), c, np.uint8) for c in colours]
    grid = labelled_grid([blocks[:2], blocks[2:]], ["seed 1", "seed 2"], ["d0 = -2", "d0 = +2"], title="seeds × d0")
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    # find the cells by their colours: each one is a solid 20 × 30 block in the right order
    found = []
    for colour in colours:
        ys, xs = np.nonzero((grid == colour).all(axis=2))
        assert ys.size == 20 * 30, colour
        found.append((ys.min(), xs.min()))
    assert found[0][0] == found[1][0] < found[2][0] == found[3][0]
    assert found[0][1] == found[2][1] < found[1][1] == found[3][1]
    assert found[1][1] - found[0][1] == 30 + GAP
    left_band = grid[found[0][0]:found[0][0] + 20, :found[0][1]]
    top_band = grid[:found[0][0], found[0][1]:]
    assert (left_band < 128).any() and (top_band < 128).any()  # row labels on the left, column labels and title on top


def test_colour_and_grey_cells_mix():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200
    grid = labelled_grid([[cell(50), rgb]], ["a"], ["x", "y"])
    assert ((grid == [200, 0, 0]).all(axis=2)).sum() == 20 * 30


@pytest.mark.parametrize("cells, rows, cols, match", [
    ([], [], [], "at least one row"),
    ([[cell(1)], [cell(1), cell(2)]], ["a", "b"], ["x"], "same number of cells"),
    ([[cell(1), cell(2, h=10)]], ["a"], ["x", "y"], "same size"),
    ([[cell(1)]], ["a", "b"], ["x"], "needs 1 row labels"),
    ([[np.zeros((4, 4), np.float32)]], ["a"], ["x"], "uint8"),
])
def test_bad_layouts_are_refused(cells, rows, cols, match):
    with pytest.raises(ValueError, match=match):
        labelled_grid(cells, rows, cols)


def test_axes_parse_and_apply():
    from studio.errors import RequestError
    from studio.export.grid import axis_labels, grid_request, parse_axis
    from studio.params import Kind, ParamSpec, ParamTable
    from studio.request import RenderRequest

    table = ParamTable([ParamSpec("guidance", Kind.FLOAT, range=(0.0, 20.0)), ParamSpec("mix_seed", Kind.SEED),
                        ParamSpec("d", Kind.FLOAT, count=4)])
    assert parse_axis("seed=1,2,3") == ("seed", ["1", "2", "3"])  # as typed: the model's specs read the values
    assert parse_axis(" d0 = -2, 0 ,2") == ("d0", ["-2", "0", "2"])
    seeds = [table.parse_setting("seed", v) for v in parse_axis("seed=1,2,3")[1]]
    assert seeds == [("seed", 1), ("seed", 2), ("seed", 3)] and all(type(v) is int for _, v in seeds)
    offsets = [table.parse_setting("d0", v)[1] for v in parse_axis(" d0 = -2, 0 ,2")[1]]
    assert offsets == [-2.0, 0.0, 2.0] and all(type(v) is float for v in offsets)
    assert table.parse_setting("mix_seed", "12") == ("mix_seed", 12)
    base = RenderRequest("m", seed=9)
    cell = grid_request(base, ("seed", 2), ("d0", -2.0), ("guidance", 3.5))
    assert (cell.seed, dict(cell.params)) == (2, {"d0": -2.0, "guidance": 3.5})
    assert base == RenderRequest("m", seed=9) and table.check(cell) == cell
    assert axis_labels("d0", offsets) == ["d0 = -2", "d0 = 0", "d0 = 2"]
    assert axis_labels("seed", [1, 2]) == ["seed = 1", "seed = 2"]
    with pytest.raises(ValueError, match="NAME=V1"):
        parse_axis("seed")
    for name, value, match in (("seed", "1.5", "whole number"), ("mix_seed", "1.5", "whole number"),
                               ("wobble", "1", "no parameter 'wobble'.*guidance, mix_seed, d0…d3"),
                               ("d0", "x", "needs a number"), ("d4", "1", "no parameter 'd4'"),
                               ("guidance", "21", "between 0 and 20")):
        with pytest.raises(RequestError, match=match):
            table.parse_setting(name, value)
