"""StyleGAN render speed: the app's path against a plain forward of the same NVIDIA-compatible generator.

    python tests/benchmarks/bench_stylegan.py [--arch sg2|sg3t] [--size 1024] [--repeats 5] [--warmup 1]
                                              [--device cpu|cuda] [--threads N] [--channel-base 32768]
                                              [--channel-max 512]

One generator of studio.nets.stylegan_nv is built from NVIDIA's configuration of its 1024² FFHQ models with seeded
random weights (no download, no pickle): `--arch sg2` (default) is StyleGAN2's config ("stylegan2" of the stylegan3
repository's train.py: z/w 512, channel_base 32768, channel_max 512, 8 mapping layers, num_fp16_res 4, conv_clamp
256); `--arch sg3t` is StyleGAN3-T's (the same, 2 mapping layers, conv_kernel 3, magnitude_ema_beta 0.5^(32/20000)).
Every weight ~ N(0, 1) (NVIDIA's init: the equalised learning rate scales them at run time; divided by the
mapping's lr_multiplier 0.01 there, as NVIDIA's FullyConnectedLayer starts), biases 0 (the style affines' 1), noise strengths 0.1 and noise maps ~ N(0, 1), so activations have realistic ranges (the zero-initialised
weights of a fresh module would render a constant).

Timed per frame, batch 1, interleaved repeats (a b, b a, …) after `--warmup` untimed frames of each, medians:

(a) app: what the app does for a frame of an NVIDIA generator: z from the seed as NVIDIA's gen_images.py draws it
    (`z_from_seed`, on the CPU), moved to the device, `G.mapping(z, c, truncation_psi=0.7)`, `G.synthesis(ws,
    noise_mode="const")`, inside torch.inference_mode(), the picture converted as gen_images.py converts it
    (`(img * 127.5 + 128).clamp(0, 255)` to uint8, H × W × C) and copied to the CPU as a NumPy array (the Output the
    engine hands the window): the `stylegan` family's render of a request on a LoadedModel of the same generator,
    whose manifest is the one the importer writes for these constructor arguments.
(b) plain: `G(z, None, truncation_psi=0.7, noise_mode="const")` inside torch.no_grad() with z already on the device,
    the output left where it is (a script calling NVIDIA's module).

It checks once that both give the same picture, and prints ms/frame for each and the ratio app/plain. Design budget
(issue 19): **ratio ≤ 1.05**. On CUDA, NVIDIA runs the blocks of the last `num_fp16_res` resolutions in float16; the
report says which precision the module used. It reports; it never fails on a timing (`--device cuda` without CUDA
prints a "skipped" line and exits 0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO, REPO / "tests" / "benchmarks"):  # run as a plain script from anywhere: the app, bench_common
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_common import finish_main, interleaved_medians, on_device  # noqa: E402

BUDGET = 1.05  # the app's frame at most 5 % over a plain forward
PSI = 0.7


def nvidia_1024_config(arch: str, size: int, channel_base: int, channel_max: int) -> tuple[type, dict]:
    """The class and constructor arguments of NVIDIA's 1024² FFHQ configuration (at `size`, with the channel
    budget given: 32768 / 512 are NVIDIA's)."""
    from studio.nets.stylegan_nv import StyleGAN2Generator, StyleGAN3Generator

    common = {"z_dim": 512, "w_dim": 512, "c_dim": 0, "img_resolution": size, "img_channels": 3,
              "channel_base": channel_base, "channel_max": channel_max, "num_fp16_res": 4, "conv_clamp": 256}
    if arch == "sg2":
        return StyleGAN2Generator, {**common, "mapping_kwargs": {"num_layers": 8}}
    if arch == "sg3t":
        return StyleGAN3Generator, {**common, "mapping_kwargs": {"num_layers": 2}, "conv_kernel": 3,
                                    "magnitude_ema_beta": 0.5 ** (32 / 20_000)}
    raise ValueError(f"unknown --arch {arch!r} (sg2 or sg3t)")


def build_generator(arch: str, size: int, channel_base: int, channel_max: int, seed: int = 0):
    """The generator with seeded random weights (see the module docstring), in eval mode on the CPU."""
    import torch

    from studio.nets.stylegan_nv import FullyConnectedLayer

    cls, kwargs = nvidia_1024_config(arch, size, channel_base, channel_max)
    g = cls(**kwargs).eval()
    gen = torch.Generator().manual_seed(seed)
    # NVIDIA's fully connected layers start at N(0, 1) / lr_multiplier (0.01 in the mapping: its equalised learning
    # rate scales them back at run time); N(0, 1) alone would shrink w 100-fold per mapping layer to nothing
    lr_multiplier = {f"{name}.weight": m.bias_gain for name, m in g.named_modules()
                     if isinstance(m, FullyConnectedLayer)}
    with torch.no_grad():
        for name, p in g.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("weight", "const"):
                p.copy_(torch.randn(p.shape, generator=gen) / lr_multiplier.get(name, 1.0))
            elif leaf == "noise_strength":
                p.fill_(0.1)
        for name, b in g.named_buffers():
            if name.endswith("noise_const"):
                b.copy_(torch.randn(b.shape, generator=gen))
    return g


def loaded_model(arch: str, g, kwargs: dict, device):
    """The generator as the app holds it: a `stylegan` package's manifest (as the importer writes it) around `g`."""
    import torch

    from studio.families import get_family
    from studio.families.base import LoadedModel
    from studio.families.stylegan.importer import package_manifest
    from studio.manifest import parse_manifest

    generation = "stylegan3" if arch == "sg3t" else "stylegan2"
    data = package_manifest(Path(f"bench-{arch}.pkl"), f"bench-{arch}", f"bench {arch}", generation, kwargs,
                            "G_ema", [])
    manifest = parse_manifest(data, Path("/nonexistent/bench") / "model.toml")
    return LoadedModel(manifest, get_family("stylegan"), g, "0" * 64, torch.device(device), torch.float32)


def app_frame(model, seed: int):
    """A frame as the app renders it (see (a) in the module docstring): the family's render of a request, under
    inference mode as the engine runs it; its Output's uint8 H × W × C NumPy picture."""
    import torch

    from bench_common import drive
    from studio.request import RenderRequest

    with torch.inference_mode():
        output, _ = drive(model, RenderRequest(model.id, seed=seed, params={"truncation": PSI}))
    return output.data


def plain_forward(g, z):
    import torch

    with torch.no_grad():
        return g(z, None, truncation_psi=PSI, noise_mode="const")


def measure(arch: str = "sg2", size: int = 1024, repeats: int = 5, warmup: int = 1, device: str = "cpu",
            threads: int = 0, channel_base: int = 32768, channel_max: int = 512) -> dict:
    import time

    import numpy as np
    import torch

    from studio.nets.stylegan_nv import z_from_seed

    with on_device(device, threads) as dev:
        t0 = time.perf_counter()
        g = build_generator(arch, size, channel_base, channel_max).to(dev)
        build_s = time.perf_counter() - t0
        model = loaded_model(arch, g, nvidia_1024_config(arch, size, channel_base, channel_max)[1], dev)
        sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
        zs = {s: z_from_seed(s, g.z_dim).to(dev) for s in (*range(1, 1 + warmup), *range(100, 100 + repeats))}
        same = app_frame(model, 7)
        plain = plain_forward(g, z_from_seed(7, g.z_dim).to(dev))
        plain_u8 = (plain * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).cpu().numpy()
        max_diff = int(np.abs(same.astype(np.int16) - plain_u8.astype(np.int16)).max())
        medians = interleaved_medians({"app": lambda s: app_frame(model, s), "plain": lambda s: plain_forward(g, zs[s])},
                                      warmup, repeats, sync)
        return {"arch": arch, "size": size, "device": str(dev), "threads": torch.get_num_threads(),
                "parameters": sum(p.numel() for p in g.parameters()), "num_ws": g.num_ws, "build_s": build_s,
                "app_ms": medians["app"] * 1e3, "plain_ms": medians["plain"] * 1e3,
                "ratio": medians["app"] / medians["plain"], "max_diff": max_diff, "repeats": repeats,
                "precision": precision_note(g, dev)}


def precision_note(g, dev) -> str:
    """Which precision the synthesis ran in on `dev` (studio.nets.stylegan_nv.compute_dtype: NVIDIA's rule)."""
    import torch

    from studio.nets.stylegan_nv import compute_dtype

    flagged = [m for m in g.synthesis.modules() if getattr(m, "use_fp16", False)]
    if flagged and compute_dtype(True, dev) == torch.float16:
        return f"float16 in the {len(flagged)} layers/blocks NVIDIA runs in float16, float32 elsewhere"
    return "float32 throughout (as NVIDIA's code on this device)"


def report(r: dict) -> str:
    verdict = "PASS" if r["ratio"] <= BUDGET else "OVER"
    return "\n".join([
        f"StyleGAN render speed: {r['arch']} {r['size']}x{r['size']} ({r['parameters']:,} parameters, {r['num_ws']} ws), "
        f"device {r['device']}, {r['threads']} torch thread(s), batch 1, {r['repeats']} interleaved repeats",
        f"  precision                 : {r['precision']}",
        f"  (a) app path (uint8 Output): {r['app_ms']:.1f} ms/frame",
        f"  (b) plain forward G(z)     : {r['plain_ms']:.1f} ms/frame",
        f"  ratio app/plain           : {r['ratio']:.3f} (budget <= {BUDGET}: {verdict})",
        f"  same picture              : max |dpixel| {r['max_diff']} of 255" + (" (same picture)" if r["max_diff"] <= 1
                                                                                 else " (DIFFERENT)"),
        f"  (generator built in {r['build_s']:.1f} s)",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="sg2", choices=("sg2", "sg3t"), help="sg2 (default) or sg3t")
    parser.add_argument("--size", type=int, default=1024, help="image size, a power of two (default 1024)")
    parser.add_argument("--repeats", type=int, default=5, help="timed frames of each kind (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed frames of each kind first (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    parser.add_argument("--channel-base", type=int, default=32768, help="NVIDIA's channel_base (default 32768)")
    parser.add_argument("--channel-max", type=int, default=512, help="NVIDIA's channel_max (default 512)")
    args = parser.parse_args(argv)
    return finish_main("bench_stylegan", lambda: measure(args.arch, args.size, args.repeats, args.warmup, args.device,
                                                         args.threads, args.channel_base, args.channel_max), report,
                       errors=(ValueError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
