"""The `stylegan` family: NVIDIA network pickles (built here the way NVIDIA's persistence writes them, from the fixtures'
G_ema and from random-weight configs) converted to packages, rendered through the family and the engine, and compared
with NVIDIA's own outputs; the controls (truncation and cutoff, mixing, noise mode, StyleGAN3's input transform,
classes, w / w+ latents, directions); and hostile input (a pickle with a system call, a package with wrong
constructor arguments)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import finish
from sg_pickles import FIX, SystemCall, fixture_snapshot, random_snapshot
from studio.engine.engine import Engine
from studio.errors import ManifestError, RequestError, WeightsError
from studio.families import get_family
from studio.families.registry import importing_family
from studio.io.weights import write_tensors
from studio.latent.directions import principal_directions
from studio.library import load_model, resolve, scan
from studio.manifest import read_manifest
from studio.nets.stylegan_nv import build_nvidia_generator, z_from_seed
from studio.request import RenderRequest

SEEDS, PSIS = (0, 1, 2), (1.0, 0.7)
ADA_KWARGS = {"z_dim": 16, "c_dim": 3, "w_dim": 16, "img_resolution": 8, "img_channels": 3,
              "mapping_kwargs": {"num_layers": 2, "embed_features": None},
              "synthesis_kwargs": {"channel_base": 128, "channel_max": 16, "num_fp16_res": 0, "conv_clamp": None,
                                   "architecture": "skip"}}


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, Path]:
    """The two fixture generators and a conditional stylegan2-ada-style one, imported from network pickles."""
    root = tmp_path_factory.mktemp("stylegan")
    out = {}
    for name in ("sg2_uncond", "sg3t"):
        pkl = fixture_snapshot(name, root / f"{name}.pkl")
        out[name] = get_family("stylegan").import_file(pkl, root / "models" / name)
        assert not (root / f"{name}.pkl.SOURCE_WAS_EXECUTED").exists()
    pkl = random_snapshot(root / "ada-cond.pkl", "stylegan2", ADA_KWARGS, seed=3)
    out["ada"] = get_family("stylegan").import_file(pkl, root / "models" / "ada-cond")
    out["ada_pkl"] = pkl
    return out


@pytest.fixture(scope="module")
def models(packages):
    return {name: load_model(resolve(str(packages[name]))) for name in ("sg2_uncond", "sg3t", "ada")}


def nvidia_uint8(img: np.ndarray | torch.Tensor) -> np.ndarray:
    """gen_images.py's conversion: (img * 127.5 + 128).clamp(0, 255) as uint8, HWC."""
    t = torch.as_tensor(img)
    return (t * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()


def render(model, **kw) -> np.ndarray:
    core = {k: kw.pop(k) for k in ("seed", "latent") if k in kw}
    return finish(model.family.render(model, RenderRequest(model.id, params=kw, **core)))[0].data


def ws(model, **kw) -> torch.Tensor:
    core = {k: kw.pop(k) for k in ("seed", "latent") if k in kw}
    return model.family.latent_ws(model, RenderRequest(model.id, params=kw, **core))


# --- the package format -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sg2_uncond", "sg3t"])
def test_an_imported_fixture_renders_nvidias_images_for_nvidias_seeds(models, name):
    model, ref = models[name], np.load(FIX / f"{name}.reference.npz")
    assert model.manifest.family == "stylegan" and model.manifest.latent.shape == (64,)
    assert model.manifest.output.fields == {"width": 32, "height": 32, "channels": 3}
    for seed in SEEDS:
        for psi in PSIS:
            key = f"seed{seed}_psi{psi:.1f}"
            w = ws(model, seed=seed, truncation=psi)
            assert np.abs(w.numpy() - ref[f"w_{key}"][0]).max() <= 1e-4 * np.abs(ref[f"w_{key}"]).max(), key
            ours, theirs = render(model, seed=seed, truncation=psi), nvidia_uint8(ref[f"img_{key}"])
            assert ours.shape == (32, 32, 3) and ours.dtype == np.uint8
            assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1, key


def test_the_package_keeps_the_constructor_arguments_exactly(packages):
    for name in ("sg2_uncond", "sg3t"):
        m = read_manifest(packages[name])
        expected = json.loads((FIX / f"{name}.init_kwargs.json").read_text())
        assert m.architecture["class_name"] == expected["class"]
        assert json.loads(m.architecture["init_kwargs"]) == expected["init_kwargs"]
        assert m.training == {"imported_from": f"{name}.pkl", "network": "G_ema"}
    # stylegan2-ada-pytorch: nested mapping/synthesis kwargs with None values, conditional
    m = read_manifest(packages["ada"])
    assert json.loads(m.architecture["init_kwargs"]) == ADA_KWARGS
    assert m.architecture["class_name"] == "training.networks_stylegan2.Generator"
    assert m.conditions.kind == "class" and m.conditions.labels == ("0", "1", "2")
    assert m.output.fields == {"width": 8, "height": 8, "channels": 3} and m.latent.shape == (16,)


def test_a_conditional_model_draws_the_chosen_class_as_nvidia(models, packages):
    from studio.io.nv_pickle import extract_network

    model = models["ada"]
    assert model.table.get("label").choices == (("0", "0"), ("1", "1"), ("2", "2"))
    net = extract_network(packages["ada_pkl"])
    g = build_nvidia_generator(net.class_name, net.init_args, net.init_kwargs, net.tensors)
    images = []
    for label in ("0", "2"):
        c = torch.zeros([1, 3])
        c[0, int(label)] = 1
        with torch.no_grad():
            theirs = nvidia_uint8(g(z_from_seed(7, 16), c, truncation_psi=0.7, noise_mode="const"))
        ours = render(model, seed=7, truncation=0.7, label=label)
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
        images.append(ours)
    assert not np.array_equal(*images)


def test_seeds_follow_numpy_randomstate_and_large_seeds_are_deterministic(models):
    np.testing.assert_array_equal(z_from_seed(5, 8).numpy(), np.random.RandomState(5).randn(1, 8).astype(np.float32))
    big = 2**40 + 5
    z = z_from_seed(big, 8).numpy()
    np.testing.assert_array_equal(z, np.random.RandomState([5, 2**8]).randn(1, 8).astype(np.float32))
    assert not np.array_equal(z, z_from_seed(5, 8).numpy())
    model = models["sg2_uncond"]
    a, b = render(model, seed=2**64 - 1), render(model, seed=2**64 - 1)
    assert np.array_equal(a, b) and not np.array_equal(a, render(model, seed=2**64 - 2))


# --- controls -----------------------------------------------------------------------------------------------------


def test_the_controls_are_declared_from_the_manifest(models):
    sg2, sg3 = models["sg2_uncond"].table, models["sg3t"].table
    for table, n in ((sg2, 8), (sg3, 16)):
        assert {"truncation", "truncation_cutoff", "mix_seed", "mix_layer"} <= {s.name for s in table}
        assert table.get("truncation_cutoff").range == (0, n) and table.default("truncation_cutoff") == n
        assert table.get("mix_layer").range == (0, n)
    assert sg2.get("noise_mode").choices == (("const", "Const"), ("random", "Random"), ("none", "None"))
    assert sg2.default("noise_mode") == "const" and sg2.get("translate_x") is None
    assert {"translate_x", "translate_y", "rotate"} <= {s.name for s in sg3} and sg3.get("noise_mode") is None
    # the import wrote GANSpace's directions: their sliders and the layer range they act on
    for table, n in ((sg2, 8), (sg3, 16)):
        assert table.get("d").count == 16 and table.get("layer_end").range == (0, n)  # 16 sliders, not 80
    assert [k.name for k in models["sg3t"].family.latent_kinds(models["sg3t"].manifest)] == ["w", "w+"]


def test_truncation_cutoff_acts_on_the_layers_before_it_as_nvidias_mapping(models):
    model = models["sg2_uncond"]
    g = model.network
    with torch.no_grad():
        theirs = g.mapping(z_from_seed(3, 64), None, truncation_psi=0.5, truncation_cutoff=3)[0]
    ours = ws(model, seed=3, truncation=0.5, truncation_cutoff=3)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    plain = ws(model, seed=3)
    assert torch.equal(ours[3:], plain[3:]) and not torch.equal(ours[:3], plain[:3])


def test_style_mixing_takes_the_mix_seeds_w_from_the_layer_on(models):
    model = models["sg3t"]
    mixed, a, b = ws(model, seed=0, mix_seed=1, mix_layer=5), ws(model, seed=0), ws(model, seed=1)
    assert torch.equal(mixed[:5], a[:5]) and torch.equal(mixed[5:], b[5:])
    half = ws(model, seed=0, mix_seed=1, mix_layer=5, mix_strength=0.5)
    torch.testing.assert_close(half[5:], (a[5:] + b[5:]) / 2)
    assert not np.array_equal(render(model, seed=0, mix_seed=1, mix_layer=5), render(model, seed=0))


def test_noise_modes(models):
    model, ref = models["sg2_uncond"], np.load(FIX / "sg2_uncond.reference.npz")
    const = render(model, seed=1)
    assert np.array_equal(const, render(model, seed=1, noise_mode="const"))
    assert np.abs(const.astype(int) - nvidia_uint8(ref["img_seed1_psi1.0"]).astype(int)).max() <= 1
    random_a, random_b = render(model, seed=1, noise_mode="random"), render(model, seed=1, noise_mode="random")
    assert np.array_equal(random_a, random_b)  # drawn from the request's seed: reproducible
    assert not np.array_equal(random_a, const)
    # the same w with another seed's noise: only the noise differs
    w = ws(model, seed=1)
    other = finish(model.family.render(model, RenderRequest(model.id, seed=2, latent=tuple(w[0].tolist()),
                                                            params={"noise_mode": "random"})))[0].data
    assert not np.array_equal(other, random_a)
    assert not np.array_equal(render(model, seed=1, noise_mode="none"), const)


def test_stylegan3_input_transform_moves_the_picture_and_is_reset(models):
    model, ref = models["sg3t"], np.load(FIX / "sg3t.reference.npz")
    plain = nvidia_uint8(ref["img_seed0_psi1.0"])
    moved = render(model, seed=0, translate_x=0.25)
    turned = render(model, seed=0, rotate=30.0)
    assert not np.array_equal(moved, plain) and not np.array_equal(turned, plain)
    g = model.network
    g.set_input_transform((0.25, -0.1), 12.0)
    with torch.no_grad():
        theirs = nvidia_uint8(g(z_from_seed(0, 64), None))
    ours = render(model, seed=0, translate_x=0.25, translate_y=-0.1, rotate=12.0)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    # the next default render has the identity transform again (the network is shared)
    assert np.abs(render(model, seed=0).astype(int) - plain.astype(int)).max() <= 1


def test_explicit_w_and_w_plus_latents_render(models):
    model = models["sg2_uncond"]
    seeded = render(model, seed=4, truncation=0.6)
    w = model.family.latent(model, RenderRequest(model.id, seed=4, params={"truncation": 0.6}))
    assert w.shape == (64,)
    assert np.array_equal(render(model, latent=tuple(w.tolist())), seeded)
    w_plus = model.family.latent(model, RenderRequest(model.id, seed=4, params={"mix_seed": 9}))
    assert w_plus.shape == (8, 64)
    assert np.array_equal(render(model, latent=tuple(w_plus.reshape(-1).tolist())), render(model, seed=4, mix_seed=9))
    with pytest.raises(RequestError, match="64 values or one w per layer"):
        render(model, latent=(0.0,) * 10)


def test_directions_apply_over_the_layer_range_when_the_package_has_them(packages, tmp_path):
    folder = tmp_path / "with-directions"
    shutil.copytree(packages["sg3t"], folder)
    d = principal_directions(torch.randn(256, 64, generator=torch.Generator().manual_seed(0)), k=4)
    write_tensors(d.to_tensors(), folder / "directions.safetensors")
    model = load_model(resolve(str(folder)))
    assert model.table.get("d").count == 4
    assert model.table.get("layer_start").range == model.table.get("layer_end").range == (0, 16)
    base, edited = ws(model, seed=0), ws(model, seed=0, d1=2.0, layer_start=3, layer_end=7)
    assert torch.equal(edited[:3], base[:3]) and torch.equal(edited[7:], base[7:])
    torch.testing.assert_close(edited[3:7] - base[3:7], d.offset(1, 2.0).expand(4, -1))
    assert not np.array_equal(render(model, seed=0, d1=2.0), render(model, seed=0))


# --- the engine ---------------------------------------------------------------------------------------------------


def test_the_engine_renders_nvidias_image(packages):
    ref = np.load(FIX / "sg2_uncond.reference.npz")
    with Engine(device="cpu", roots=[packages["sg2_uncond"].parent], threads=1) as engine:
        out = engine.submit(RenderRequest("sg2_uncond", seed=2, params={"truncation": 0.7})).wait(120)
    assert np.abs(out.data.astype(int) - nvidia_uint8(ref["img_seed2_psi0.7"]).astype(int)).max() <= 1


# --- import: recognising, fallbacks, refusals ----------------------------------------------------------------------


def test_network_pickles_are_recognised_by_content(packages, tmp_path):
    assert importing_family(packages["ada_pkl"]) is get_family("stylegan")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "plain.pkl")
    (tmp_path / "other.pkl").write_bytes(__import__("pickle").dumps({"a": 1}))
    for path in (tmp_path / "plain.pkl", tmp_path / "other.pkl", tmp_path / "missing.pkl"):
        assert importing_family(path) is None


def test_a_snapshot_without_g_ema_imports_g_and_says_so(tmp_path):
    pkl = fixture_snapshot("sg2_uncond", tmp_path / "early.pkl", g_ema=False)
    folder = get_family("stylegan").import_file(pkl, tmp_path / "early")
    m = read_manifest(folder)
    assert m.training["network"] == "G" and "no G_ema" in m.training["import_note"]


def test_an_existing_package_is_replaced_only_with_force(packages, tmp_path):
    family = get_family("stylegan")
    folder = family.import_file(packages["ada_pkl"], tmp_path / "again")
    with pytest.raises(WeightsError, match="already there"):
        family.import_file(packages["ada_pkl"], folder)
    assert family.import_file(packages["ada_pkl"], folder, force=True) == folder
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's folder")
    with pytest.raises(WeightsError, match="not a model package"):
        family.import_file(packages["ada_pkl"], tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "a user's folder"


def test_a_pickle_with_a_system_call_is_refused_naming_it_and_nothing_is_written(tmp_path):
    marker = tmp_path / "PWNED"
    pkl = fixture_snapshot("sg2_uncond", tmp_path / "evil.pkl", extra={"hook": SystemCall(f"touch {marker}")})
    assert importing_family(pkl) is get_family("stylegan")  # it looks like one: the reader decides
    out = tmp_path / "models" / "evil"
    with pytest.raises(WeightsError) as caught:
        get_family("stylegan").import_file(pkl, out)
    qualname = f"{os.system.__module__}.system"  # posix.system on Linux
    assert qualname in str(caught.value) and "evil.pkl" in str(caught.value)
    assert not marker.exists() and not out.exists() and not (tmp_path / "models").exists()
    assert not (tmp_path / "evil.pkl.SOURCE_WAS_EXECUTED").exists()


def _rewrite(folder: Path, **architecture) -> None:
    import tomli_w

    from studio.manifest import read_toml

    data = read_toml(folder / "model.toml")
    data["architecture"].update(architecture)
    (folder / "model.toml").write_text(tomli_w.dumps(data))


@pytest.mark.parametrize("change, field", [
    ({"bogus_argument": 3}, "architecture.init_kwargs.bogus_argument"),
    ({"channel_base": "wide"}, "architecture.init_kwargs.channel_base"),
    ({"channel_max": -4}, "architecture.init_kwargs.channel_max"),
    ({"mapping_kwargs": {"num_layers": 0}}, "architecture.init_kwargs.mapping_kwargs.num_layers"),
    ({"img_resolution": 64}, "output.width"),
    ({"img_resolution": 24}, "architecture.init_kwargs.img_resolution"),
    ({"w_dim": 32}, "latent.shape"),
    ({"c_dim": 4}, "conditions.kind"),
    ({"z_dim": None}, "architecture.init_kwargs.z_dim"),
])
def test_a_package_with_wrong_constructor_arguments_names_the_field(packages, tmp_path, change, field):
    folder = tmp_path / "broken"
    shutil.copytree(packages["sg2_uncond"], folder)
    kwargs = json.loads(read_manifest(folder).architecture["init_kwargs"])
    kwargs.update(change)
    _rewrite(folder, init_kwargs=json.dumps(kwargs))
    with pytest.raises(ManifestError) as caught:
        load_model(resolve(str(folder)))
    assert caught.value.field == field and "model.toml" in str(caught.value)
    entry = next(e for e in scan([tmp_path]) if e.folder == folder)
    assert not entry.ok and entry.error.field == field


@pytest.mark.parametrize("architecture, field", [
    ({"class_name": "training.networks.Discriminator"}, "architecture.class_name"),
    ({"init_kwargs": "{not json"}, "architecture.init_kwargs"),
    ({"init_kwargs": "[1, 2]"}, "architecture.init_kwargs"),
    ({"init_kwargs": 5}, "architecture.init_kwargs"),
])
def test_a_package_with_a_wrong_architecture_names_the_field(packages, tmp_path, architecture, field):
    folder = tmp_path / "broken"
    shutil.copytree(packages["sg3t"], folder)
    _rewrite(folder, **architecture)
    with pytest.raises(ManifestError) as caught:
        get_family("stylegan").validate(read_manifest(folder))
    assert caught.value.field == field


def test_the_reader_does_not_need_nvidias_modules():
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["sg2_uncond", "sg3t"])
def test_the_accelerator_renders_nvidias_images_too(packages, name):
    """CUDA or MPS, float32: NVIDIA's picture within 2 levels (other kernels); float16 weights render finite pictures;
    random noise drawn on the CPU is the same noise on the device."""
    device = "cuda" if torch.cuda.is_available() else "mps"
    ref = np.load(FIX / f"{name}.reference.npz")
    model = load_model(resolve(str(packages[name])), device)
    for seed in SEEDS:
        ours = render(model, seed=seed, truncation=0.7)
        assert np.abs(ours.astype(int) - nvidia_uint8(ref[f"img_seed{seed}_psi0.7"]).astype(int)).max() <= 2
    cpu = load_model(resolve(str(packages[name])), "cpu")
    if name == "sg2_uncond":
        a, b = render(model, seed=3, noise_mode="random"), render(cpu, seed=3, noise_mode="random")
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2
    else:
        a, b = render(model, seed=3, rotate=20.0), render(cpu, seed=3, rotate=20.0)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2
    half = load_model(resolve(str(packages[name])), device, torch.float16)
    assert render(half, seed=1).shape == (32, 32, 3)


# --- GANSpace directions and projection ------------------------------------------------------------------------------


def test_the_import_writes_ganspace_directions_for_these_weights(packages, models):
    from studio.io.safetensors import read_header
    from studio.io.weights import sha256_file
    from studio.latent.ganspace import compute_directions

    model, folder = models["sg2_uncond"], packages["sg2_uncond"]
    meta = read_header(folder / "directions.safetensors").metadata
    assert meta["weights_sha256"] == sha256_file(folder / "weights.safetensors") == model.sha256
    fresh = compute_directions(model.network, count=int(meta["count"]), seed=int(meta["seed"]), k=int(meta["k"]))
    torch.testing.assert_close(model.directions.vectors, fresh.vectors)
    # a direction moves the picture, along the principal axis of the mapped w's
    assert not np.array_equal(render(model, seed=4, d0=3.0), render(model, seed=4))


def test_directions_missing_or_damaged_at_load_are_computed_again(packages, tmp_path, caplog):
    folder = tmp_path / "pkg"
    shutil.copytree(packages["sg2_uncond"], folder)
    reference = load_model(resolve(str(folder))).directions
    (folder / "directions.safetensors").unlink()
    again = load_model(resolve(str(folder)))
    torch.testing.assert_close(again.directions.vectors, reference.vectors)
    assert (folder / "directions.safetensors").is_file()  # cached again beside the package
    data = bytearray((folder / "directions.safetensors").read_bytes())
    data[-64:] = b"\xff" * 64  # NaN-like garbage in the tensor data
    (folder / "directions.safetensors").write_bytes(bytes(data))
    damaged = load_model(resolve(str(folder)))  # the model still opens
    torch.testing.assert_close(damaged.directions.vectors, reference.vectors)


def test_direction_sliders_are_offered_before_the_directions_are_cached(packages, tmp_path, monkeypatch):
    """A package without its directions file (removed, or a read-only folder whose directions live in the user
    cache) still declares the 16 sliders the load provides, and they act."""
    from studio.families.stylegan.importer import DIRECTION_SLIDERS

    monkeypatch.setenv("LATENT_STUDIO_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "pkg"
    shutil.copytree(packages["sg2_uncond"], folder)
    (folder / "directions.safetensors").unlink()
    entry = resolve(str(folder))
    assert entry.parameters.get("d").count == DIRECTION_SLIDERS
    model = load_model(entry)
    assert model.directions is not None and len(model.directions) == DIRECTION_SLIDERS
    assert not np.array_equal(render(model, seed=4, d15=3.0), render(model, seed=4))


def test_a_picture_projects_into_w_plus_through_the_engine_work(models):
    """Encode = projection: a picture the model drew from a known seed comes back as a w+ whose rendering is much
    closer to it than the mean style's; the work reports progress on every step."""
    from studio.engine import work

    model = models["sg2_uncond"]
    target = render(model, seed=7)
    out, seen = finish(work.encode_image(model, RenderRequest(model.id, seed=0), images=target[None]))
    assert out.kind == "latent" and out.data.shape == (model.family.latent_kinds(model.manifest)[1].size,)
    assert len([p for p in seen if p.total == 300]) >= 300
    projected = render(model, latent=out.data.tolist())
    mean = render(model, seed=7, truncation=0.0)
    err = lambda a: float(np.abs(a.astype(np.float32) - target.astype(np.float32)).mean())  # noqa: E731
    assert err(projected) < 0.5 * err(mean), (err(projected), err(mean))


def test_a_conditional_model_projects_as_the_chosen_class(models, tmp_path):
    from PIL import Image

    from studio.engine import work

    model = models["ada"]
    target = render(model, seed=2, label="1")
    w_plus, seen = finish(model.family.encode(model, target[None], ["1"], steps=5))
    assert w_plus.shape == (model.family.latent_kinds(model.manifest)[1].size // 16, 16) and len(seen) == 6
    with pytest.raises(RequestError, match="not '7'"):
        finish(model.family.encode(model, target[None], ["7"], steps=5))
    # the work takes the request's class when the caller names none
    out, _ = finish(work.encode_image(model, RenderRequest(model.id, seed=0, params={"label": "2"}),
                                      images=target[None]))
    assert out.data.size == w_plus.numel()
    # a picture model encodes the whole picture in colour: no cells, no characters asked
    Image.fromarray(target).save(tmp_path / "picture.png")
    images, labels = work.glyph_strip(model.manifest, tmp_path / "picture.png", "")
    assert images.shape == (1, *target.shape) and labels is None
