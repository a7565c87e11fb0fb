"""Train a sound model (family `audio-vae`) on your own sounds and write a model package (`trainer = "folder-audio"`).

A folder of one-shots (WAV, FLAC, OGG, MP3 …): each is decoded, mixed to mono, resampled, started at its onset, cut or
padded to the model's length and (by default) brought to one peak level. When every sound sits in a sub-folder and
there are two or more, the sub-folder names are the classes the artist picks from (kick/, snare/ …); otherwise the
model has the one class "sound". The network is the shipped sound model's (`studio.nets.spectrogram.SpecVAE`): a
VAE over log-magnitude spectrograms with a Laplace likelihood (L1) and a KL term warmed up, heard through Griffin-Lim.
Afterwards a Gaussian is fitted to the encoded sounds (per class when every class has enough), so prior samples land
where the folder's sounds lie. With twenty sounds or more, a tenth is held out to measure reconstruction.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from studio import __version__
from studio.errors import RecipeError
from studio.nets.spectrogram import SpecFormat, SpecVAE, _strides, finish_waves
from studio.latent.directions import Directions
from studio.train.common import Checkpoint, lr_at, manifest_head, start_step
from studio.train.folder_common import (MIN_FILES, RecentMean, autocast, data_folder, dump_recipe,
                                        load_sound_folder, package_table, positive, rand, schedule_figures,
                                        train_device, use_bf16)
from studio.train.monitor import Monitor, check_stop
from studio.train.package import write_package
from studio.train.recipe import Recipe

TRAINER = "folder-audio"
MIN_SOUNDS = MIN_FILES["audio"]
HOP = 256
SECONDS = (0.1, 10.0)
RATES = (8000, 96000)
PREVIEW_ITERATIONS = 32  # Griffin-Lim iterations of the sounds heard while training
GAP_SECONDS = 0.15  # silence between the sounds of a preview


def length_for(seconds: float, sample_rate: int, hop: int = HOP) -> int:
    """Samples of a sound about `seconds` long whose spectrogram has a multiple of 8 frames (so the network can
    halve its time axis three times: 1.0 s at 22050 Hz is 22272 samples, 88 frames, as the shipped model)."""
    if not SECONDS[0] <= seconds <= SECONDS[1]:
        raise RecipeError(f"must be {SECONDS[0]:g} … {SECONDS[1]:g} seconds, got {seconds:g}", None, "seconds")
    frames = max(8, round((seconds * sample_rate / hop + 1) / 8) * 8)
    return (frames - 1) * hop


def write_recipe(path: Path, folder: Path, model_id: str, seconds: float = 1.0, sample_rate: int = 22050,
                 steps: int = 2000, batch: int = 16, latent_dim: int = 8, classes: bool = True, normalize: bool = True,
                 name: str = "", device: str = "cpu", seed: int = 0) -> Path:
    """The recipe `latent-studio train --family audio --data FOLDER` runs (kept in the package)."""
    return dump_recipe(path, {
        "trainer": TRAINER,
        "package": package_table(model_id, name, f"A sound model trained on the sounds in {folder}.",
                                 "the sounds' own licence"),
        "data": {"folder": str(Path(folder).resolve()), "sample_rate": sample_rate,
                 "length": length_for(float(seconds), sample_rate), "classes": classes, "normalize": normalize},
        "model": {"latent_dim": latent_dim, "width": 16, "levels": 6, "max_width": 128, "class_dim": 16,
                  "hidden": 256, "n_fft": 1024, "hop": HOP, "griffin_lim_iterations": 48},
        "train": {"seed": seed, "steps": steps, "batch": batch, "lr": 1e-3, "warmup": 100, "beta": 1.0,
                  "beta_warmup": 500, "recon_scale": 0.5, "checkpoint_every": 100, "device": device,
                  "bfloat16": "auto"},
    })


def train(recipe: Recipe, out: Path, run_dir: Path, resume: bool = False,
          log: Callable[[str], None] = print, monitor: Monitor | None = None) -> Path:
    monitor = monitor or Monitor(log)
    log = monitor.log
    r, d, m, t = recipe.reader(), recipe.data, recipe.model, recipe.train
    sample_rate = r.get(d, "sample_rate", int, "data.", required=False, default=22050,
                        check=lambda v: None if RATES[0] <= v <= RATES[1] else
                        f"must be {RATES[0]} … {RATES[1]} Hz, got {v}")
    length = r.get(d, "length", int, "data.", required=False, default=length_for(1.0, sample_rate),
                   check=lambda v: None if SECONDS[0] <= v / sample_rate <= SECONDS[1] else
                   f"must be {SECONDS[0]:g} … {SECONDS[1]:g} seconds at {sample_rate} Hz, got {v} samples")
    use_classes = r.get(d, "classes", bool, "data.", required=False, default=True)
    normalize = r.get(d, "normalize", bool, "data.", required=False, default=True)
    n_fft = r.get(m, "n_fft", int, "model.", required=False, default=1024,
                  check=lambda v: None if v >= 16 and v % 2 == 0 else f"must be even and at least 16, got {v}")
    hop = r.get(m, "hop", int, "model.", required=False, default=HOP,
                check=lambda v: None if 0 < v <= n_fft else f"must be 1 … n_fft ({n_fft}), got {v}")
    if length < n_fft:
        raise RecipeError(f"a sound of {length} samples is shorter than one STFT window (model.n_fft = {n_fft})",
                          recipe.path, "data.length")
    cfg = {
        "latent_dim": r.get(m, "latent_dim", int, "model.", required=False, default=8, check=positive),
        "width": r.get(m, "width", int, "model.", required=False, default=16, check=positive),
        "levels": r.get(m, "levels", int, "model.", required=False, default=6, check=positive),
        "max_width": r.get(m, "max_width", int, "model.", required=False, default=128, check=positive),
        "class_dim": r.get(m, "class_dim", int, "model.", required=False, default=16, check=positive),
        "hidden": r.get(m, "hidden", int, "model.", required=False, default=256,
                        check=lambda v: None if v >= 4 else f"must be at least 4, got {v}"),
    }
    iterations = r.get(m, "griffin_lim_iterations", int, "model.", required=False, default=48, check=positive)
    fmt = SpecFormat(n_fft, hop, length)
    try:
        _strides(fmt.bins, fmt.frames, cfg["levels"])
    except ValueError as exc:
        raise RecipeError(f"{exc} (model.n_fft = {n_fft})", recipe.path, "model.levels") from None
    f = schedule_figures(recipe, default_batch=16, default_lr=1e-3)
    steps, batch, lr, seed = f["steps"], f["batch"], f["lr"], f["seed"]
    beta = float(r.get(t, "beta", (int, float), "train.", required=False, default=1.0))
    beta_warmup = r.get(t, "beta_warmup", int, "train.", required=False, default=500)
    scale = float(r.get(t, "recon_scale", (int, float), "train.", required=False, default=0.5,
                        check=lambda v: None if v > 0 else f"must be positive, got {v}"))
    device = train_device(recipe)
    bf16 = use_bf16(recipe, device, log)

    folder = data_folder(recipe)
    sounds = load_sound_folder(folder, sample_rate, length, use_classes, normalize, log)
    if len(sounds.waves) < MIN_SOUNDS:
        raise RecipeError(f"an audio VAE needs at least {MIN_SOUNDS} sounds to learn from; {folder} has "
                          f"{len(sounds.waves)} usable", recipe.path, "data.folder")
    classes = sounds.classes
    waves = torch.from_numpy(sounds.waves)
    labels = torch.from_numpy(sounds.labels)
    pictures = torch.cat([fmt.to_picture(waves[i:i + 128]) for i in range(0, len(waves), 128)])
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(waves), generator=gen)
    held = order[:len(waves) // 10] if len(waves) >= 20 else order[:0]  # a tenth held out to measure, when enough
    keep = order[len(held):]
    dim = cfg["latent_dim"]
    counts = torch.bincount(labels[keep], minlength=len(classes))
    fitted = len(keep) >= dim  # a Gaussian needs at least as many sounds as latent dimensions
    class_prior = len(classes) > 1 and int(counts.min()) >= dim
    if not fitted:
        log(f"{len(keep)} training sounds are fewer than the {dim} latent dimensions: no prior is fitted")
    train_pics, train_labels = pictures[keep].to(device), labels[keep].to(device)
    torch.manual_seed(seed)
    net = SpecVAE(fmt.bins, fmt.frames, num_classes=len(classes), fitted_prior=fitted, class_prior=class_prior,
                  **cfg).to(device)
    with torch.no_grad():  # start near the mean picture (mostly silence) rather than at grey
        mean = float(train_pics.mean().clamp(1e-3, 1 - 1e-3))
        net.dec_out.bias.fill_(math.log(mean / (1 - mean)))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoint(run_dir / "checkpoint.safetensors", recipe, {"net": net}, {"net": opt}, gen)
    start = start_step(ckpt, resume, log)
    log(f"training {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters for {steps} steps of {batch} "
        f"on {len(keep)} sounds ({device}{', bfloat16' if bf16 else ''})")
    monitor.start(steps, start, "sound")
    show_labels = (torch.arange(min(4, len(classes))) if len(classes) > 1 else torch.zeros(3, dtype=torch.long))
    show_w = torch.randn(len(show_labels), dim, generator=torch.Generator().manual_seed(seed + 1))
    recent = RecentMean()
    net.train()
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, f["warmup"])
        idx = torch.randint(0, len(keep), (batch,), generator=gen).to(device)
        x, lab = train_pics[idx], train_labels[idx]
        with autocast(device, bf16):
            mu, logvar = net.encode(x, lab)
        mu, logvar = mu.float(), logvar.float()
        z = mu + torch.exp(0.5 * logvar) * rand(tuple(mu.shape), gen, device)  # drawn on the CPU: any device
        with autocast(device, bf16):
            logits = net.decode(z, lab)
        nll = (torch.sigmoid(logits.float()) - x).abs().flatten(1).sum(1) / scale
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
        loss = (nll + beta * min(1.0, (step + 1) / max(1, beta_warmup)) * kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 100.0)
        opt.step()
        l1 = nll.mean().item() * scale / x[0].numel()
        recent.add(loss=loss.item(), l1=l1)
        monitor.step(step + 1, batch, loss=loss.item(), l1=l1, kl=kl.mean().item())
        if (step + 1) % f["every"] == 0 or step + 1 == steps:
            ckpt.save(step + 1)
        if (step + 1) % f["preview_every"] == 0 or step + 1 == steps:
            net.eval()
            monitor.sample(step + 1, hear(net, fmt, show_w, show_labels, sample_rate, PREVIEW_ITERATIONS),
                           "audio", sample_rate)
            net.train()
        check_stop(monitor, step + 1, ckpt.save, ckpt.path)
    monitor.finish()
    train_seconds = ckpt.seconds
    net.eval()

    with torch.inference_mode():
        mus = torch.cat([net.encode(train_pics[i:i + 128], train_labels[i:i + 128])[0]
                         for i in range(0, len(keep), 128)])
    if fitted:
        net.fit_prior(mus.float(), train_labels if class_prior else None)
    quality = {"training_sounds": len(keep), "heldout_sounds": len(held), **recent.means()}
    if len(held):
        quality.update(heldout_reconstruction(net, fmt, waves[held], pictures[held], labels[held], iterations,
                                              sample_rate, device))
    for key, value in quality.items():
        log(f"  {key}: {value}")
    directions = Directions(torch.eye(dim)[:min(16, dim)], torch.ones(min(16, dim)), torch.zeros(dim))
    manifest = {
        **manifest_head(recipe, "audio-vae"),
        "output": {"kind": "audio", "sample_rate": sample_rate, "channels": 1, "length": length},
        "latent": {"shape": [dim], "prior": "normal"},
        "conditions": {"kind": "class", "labels": list(classes), "default": classes[0]},
        "architecture": {**{k: v for k, v in cfg.items() if k != "latent_dim"}, "n_fft": fmt.n_fft, "hop": fmt.hop,
                         "db_floor": fmt.db_floor, "db_ceiling": fmt.db_ceiling, "fitted_prior": fitted,
                         "class_prior": class_prior, "griffin_lim_iterations": iterations},
        "training": {"trainer": TRAINER, "app_version": __version__, "steps": steps, "batch": batch,
                     "seconds": round(train_seconds, 1), "data": str(folder), "normalized": normalize,
                     "class_counts": {c: int((labels == i).sum()) for i, c in enumerate(classes)},
                     "quality": quality},
    }
    from studio.train.sound_vae import specimen

    net_cpu = net.cpu()
    weights = {k: v.detach().float() for k, v in net_cpu.state_dict().items()}
    path = write_package(out, manifest, weights, directions.to_tensors(), specimen(net_cpu, kinds=classes),
                         recipe.text)
    log(f"wrote {path}")
    return path


@torch.inference_mode()
def hear(net: SpecVAE, fmt: SpecFormat, w: torch.Tensor, labels: torch.Tensor, sample_rate: int,
         iterations: int) -> np.ndarray:
    """Prior samples of the artist's latents `w` with their classes, as the app renders them, one after another
    with a short silence between: float32 (samples,)."""
    dev = next(net.parameters()).device
    lab = labels.to(dev)
    picture = torch.sigmoid(net.decode(net.from_prior(w.to(dev), lab), lab).float()).cpu()
    waves = finish_waves(fmt.to_wave(picture, iterations), sample_rate)
    gap = torch.zeros(len(waves), int(GAP_SECONDS * sample_rate))
    return torch.cat([waves, gap], 1).flatten()[:-gap.shape[1] or None].numpy().astype(np.float32)


@torch.inference_mode()
def heldout_reconstruction(net: SpecVAE, fmt: SpecFormat, waves: torch.Tensor, pictures: torch.Tensor,
                           labels: torch.Tensor, iterations: int, sample_rate: int, device: torch.device) -> dict:
    """How well sounds the network never saw come back (encode → decode → Griffin-Lim): the spectrogram error in dB,
    and a multi-resolution STFT distance beside the same distance for Griffin-Lim on the true magnitudes (what the
    phase recovery alone costs)."""
    from studio.train.sound_vae import mrstft_distance

    mu, _ = net.encode(pictures.to(device), labels.to(device))
    recon = torch.sigmoid(net.decode(mu, labels.to(device)).float()).cpu()
    db_error = float((recon - pictures).abs().mean() * (fmt.db_ceiling - fmt.db_floor))
    heard = finish_waves(fmt.to_wave(recon, iterations), sample_rate)
    floor = finish_waves(fmt.to_wave(pictures, iterations), sample_rate)
    return {"heldout_recon_db_error": round(db_error, 3),
            "heldout_recon_mrstft": round(float(mrstft_distance(waves, heard).mean()), 4),
            "heldout_griffin_lim_floor_mrstft": round(float(mrstft_distance(waves, floor).mean()), 4)}
