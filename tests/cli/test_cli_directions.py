"""`latent-studio directions list|export|import`: named directions shared without the window, checked against the
installed model; and `render --set NAME=…` by a direction's name draws what `--set d<k>=…` draws."""

from __future__ import annotations

import json

import numpy as np

from studio.app.direction_sets import PACKAGE_FILE, user_sets_dir
from studio.export import read_request
from studio.latent.direction_sets import FORMAT, read_set

from test_cli import _no_shipped_models, out_dir, pixels, render, run  # noqa: F401  (fixtures)


def _shared(path, model_id="tiny", **entry) -> str:
    doc = {"format": FORMAT, "version": 1, "name": "Shapes", "model": {"id": model_id},
           "directions": [{"index": 1, "name": "Round", **entry}]}
    path.write_text(json.dumps(doc), "utf-8")
    return str(path)


def test_import_list_export_and_render_by_name(capsys, models_dir, out_dir):
    shared = _shared(out_dir / "shapes.lsdirs")
    code, stdout, err = run(capsys, "directions", "import", shared, "--models-dir", models_dir)
    assert code == 0, err
    assert "imported 'Shapes' for tiny: 1 of 1 names shown" in stdout
    assert (user_sets_dir("tiny") / "Shapes.lsdirs").is_file()

    code, stdout, err = run(capsys, "directions", "list", "--models-dir", models_dir)
    assert code == 0, err
    assert "tiny (4 directions):" in stdout and "* Shapes: Round (d1)" in stdout

    out = out_dir / "again.lsdirs"
    code, stdout, err = run(capsys, "directions", "export", "--model", "tiny", "--out", out, "--models-dir",
                            models_dir)
    assert code == 0, err
    again = read_set(out)
    assert again.find("Round").index == 1 and again.find("Round").vector is not None  # the vector travels with it

    by_name, by_index = out_dir / "name.png", out_dir / "index.png"
    assert render(capsys, models_dir, by_name, "--model", "tiny", "--set", "round=2")[0] == 0
    assert render(capsys, models_dir, by_index, "--model", "tiny", "--set", "d1=2")[0] == 0
    assert read_request(by_name).params.to_dict() == read_request(by_index).params.to_dict()
    assert np.array_equal(pixels(by_name), pixels(by_index))  # a name is a label: the same picture


def test_import_refuses_a_model_that_is_not_installed_and_bad_files(capsys, models_dir, out_dir):
    code, _, err = run(capsys, "directions", "import", _shared(out_dir / "x.lsdirs", "nope"), "--models-dir",
                       models_dir)
    assert code == 1 and "x.lsdirs [model.id]: is made for model 'nope', which is not installed" in err
    code, _, err = run(capsys, "directions", "import", _shared(out_dir / "n.lsdirs", vector=[1, 0, 0]),
                       "--models-dir", models_dir)
    assert code == 1 and "n.lsdirs [model.dimension]: holds directions of 3 values, but tiny's have 8" in err
    bad = out_dir / "bad.lsdirs"
    bad.write_text('{"format": "latent-studio-directions", "version": 1, "name": "S", "model": {"id": "tiny"}, '
                   '"directions": [{"index": 0, "name": "A", "vector": [Infinity, 0, 0, 0, 0, 0, 0, 0]}]}')
    code, _, err = run(capsys, "directions", "import", bad, "--models-dir", models_dir)
    assert code == 1 and "bad.lsdirs: not usable JSON: Infinity is not a number" in err
    assert not user_sets_dir("tiny").exists() or not list(user_sets_dir("tiny").glob("*.lsdirs"))


def test_import_warns_when_a_vector_no_longer_matches(capsys, models_dir, out_dir):
    off = [0.0] * 8
    off[7] = 1.0
    shared = _shared(out_dir / "off.lsdirs", vector=off)
    code, stdout, err = run(capsys, "directions", "import", shared, "--models-dir", models_dir)
    assert code == 0, err
    assert "0 of 1 names shown" in stdout
    assert "warning: Direction set 'Shapes' no longer fits tiny" in err and "'Round' (d1) no longer matches" in err


def test_import_as_default_writes_beside_the_package(capsys, models_dir, out_dir):
    code, stdout, err = run(capsys, "directions", "import", _shared(out_dir / "d.lsdirs"), "--default",
                            "--models-dir", models_dir)
    assert code == 0, err
    assert (models_dir / "tiny" / PACKAGE_FILE).is_file() and "saved beside the package" in stdout
