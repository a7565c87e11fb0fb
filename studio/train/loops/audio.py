"""The sound loop (family `audio-vae`): a VAE over log-magnitude spectrograms (studio.nets.spectrogram.SpecVAE),
conditioned on the sound's class, heard through Griffin-Lim. Loss: a Laplace likelihood (L1) and a KL term weighed in
over train.beta_warmup steps; AdamW with warm-up and a cosine decay, gradients clipped at 100; bfloat16 autocast where
asked. Afterwards a Gaussian is fitted to the encoded sounds (per class where every class has enough), so prior samples
land where the training sounds lie, and the artist's sliders are its principal axes.

Two sources feed it:
- `sound-vae`, the recipe's procedural sounds (studio.train.sounds: kick, snare, hat … pad, randomised per seed):
  scored on held-out seeds (studio.train.scoring.sounds) — reconstruction by a multi-resolution STFT distance, how
  often a separately trained sound classifier hears prior samples as the asked-for class, and their spread. The
  package holds float16 weights.
- `folder-audio`, a folder of the user's one-shots (studio.train.data.folders): sub-folders (kick/, snare/ …) are the
  classes when every sound sits in one and there are two or more, else the one class "sound". With twenty sounds or
  more a tenth is held out to measure reconstruction.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from studio.errors import RecipeError
from studio.io.colormap import MAGMA
from studio.latent.directions import Directions
from studio.nets.spectrogram import SpecFormat, SpecVAE, _strides, finish_waves
from studio.train.common import RecentMean, Run, ScheduleDefaults, lr_at, positive, rand, read_schedule, set_lr
from studio.train.data.folders import MIN_FILES, data_folder, load_sound_folder, package_table
from studio.train.monitor import Monitor
from studio.train.recipe import Recipe
from studio.train.scoring.sounds import classifier_for, evaluate, heldout_reconstruction
from studio.train.sounds import KINDS, LENGTH, SAMPLE_RATE, sound_set

HOP = 256
SECONDS = (0.1, 10.0)
RATES = (8000, 96000)
PREVIEW_ITERATIONS = 32  # Griffin-Lim iterations of the sounds heard while training
GAP_SECONDS = 0.15  # silence between the sounds of a preview
GAP_GREY = 0x50  # between the tiles of a picture preview (silence is black)
SCHEDULES: dict[str, ScheduleDefaults] = {  # the [train] defaults of each source
    "sounds": dict(batch=32, lr=1e-3, warmup=200, checkpoint_every=250),
    "folder": dict(batch=16, lr=1e-3, warmup=100, checkpoint_every=100),
}
LATENT_DIM = {"sounds": 16, "folder": 8}
BFLOAT16: dict[str, bool | str] = {"sounds": True, "folder": "auto"}


def train(recipe: Recipe, out: Path, run_dir: Path, *, data: str, resume: bool = False,
          monitor: Monitor | None = None) -> Path:
    """Run a sound recipe fed by `data` ("sounds" or "folder"): the loop, then the prior, measures and package."""
    monitor = monitor or Monitor()
    r, m, t = recipe.reader(), recipe.model, recipe.train
    source = (_Procedural if data == "sounds" else _Folder)(recipe)
    n_fft = r.get(m, "n_fft", int, "model.", required=False, default=1024,
                  check=lambda v: None if v >= 16 and v % 2 == 0 else f"must be even and at least 16, got {v}")
    hop = r.get(m, "hop", int, "model.", required=False, default=HOP,
                check=lambda v: None if 0 < v <= n_fft else f"must be 1 … n_fft ({n_fft}), got {v}")
    if source.length < n_fft:
        raise RecipeError(f"a sound of {source.length} samples is shorter than one STFT window (model.n_fft = "
                          f"{n_fft})", recipe.path, "data.length")
    cfg = {
        "latent_dim": r.get(m, "latent_dim", int, "model.", required=False, default=LATENT_DIM[data], check=positive),
        "width": r.get(m, "width", int, "model.", required=False, default=16, check=positive),
        "levels": r.get(m, "levels", int, "model.", required=False, default=6, check=positive),
        "max_width": r.get(m, "max_width", int, "model.", required=False, default=128, check=positive),
        "class_dim": r.get(m, "class_dim", int, "model.", required=False, default=16, check=positive),
        "hidden": r.get(m, "hidden", int, "model.", required=False, default=256,
                        check=lambda v: None if v >= 4 else f"must be at least 4, got {v}"),
    }
    iterations = r.get(m, "griffin_lim_iterations", int, "model.", required=False, default=48, check=positive)
    fmt = SpecFormat(n_fft, hop, source.length)
    try:
        _strides(fmt.bins, fmt.frames, cfg["levels"])
    except ValueError as exc:
        raise RecipeError(f"{exc} (model.n_fft = {n_fft})", recipe.path, "model.levels") from None
    source.check(cfg["latent_dim"])
    s = read_schedule(recipe, **SCHEDULES[data])
    beta = float(r.get(t, "beta", (int, float), "train.", required=False, default=1.0))
    beta_warmup = r.get(t, "beta_warmup", int, "train.", required=False, default=500)
    scale = float(r.get(t, "recon_scale", (int, float), "train.", required=False, default=0.5, check=positive))
    run = Run(recipe, run_dir, resume, monitor, s)
    run.precision(BFLOAT16[data])
    source.load(run, fmt, cfg["latent_dim"])
    device, gen, batch, classes = run.device, run.gen, s.batch, source.classes
    pictures, labels = source.pictures, source.labels
    run.seed_weights()
    net = SpecVAE(fmt.bins, fmt.frames, num_classes=len(classes), fitted_prior=source.fitted,
                  class_prior=source.class_prior, **cfg).to(device)
    with torch.no_grad():  # start near the mean picture (mostly silence) rather than at grey
        mean = pictures.float().mean().clamp(1e-3, 1 - 1e-3)
        if net.dec_out.bias is not None:
            net.dec_out.bias.fill_(math.log(mean / (1 - mean)))
    opt = torch.optim.AdamW(net.parameters(), lr=s.lr, weight_decay=0.0)
    run.begin({"net": net}, {"net": opt}, source.about, unit="sound")
    show_labels = torch.arange(min(4, len(classes))) if len(classes) > 1 else torch.zeros(3, dtype=torch.long)
    show_w = torch.randn(len(show_labels), cfg["latent_dim"], generator=torch.Generator().manual_seed(s.seed + 1))
    recent = RecentMean()

    def preview() -> tuple:
        net.eval()
        heard = hear(net, fmt, show_w, show_labels, source.sample_rate, PREVIEW_ITERATIONS)
        net.train()
        return heard, "audio", source.sample_rate

    net.train()
    for step in run.steps(preview):
        set_lr(opt, lr_at(step, s.steps, s.lr, s.warmup))
        idx = torch.randint(0, len(pictures), (batch,), generator=gen).to(device)
        x, lab = pictures[idx].float(), labels[idx]
        with run.autocast():
            mu, logvar = net.encode(x, lab)
            # in the network's precision, as its own forward draws it; drawn on the CPU (the same on any device)
            z = mu + torch.exp(0.5 * logvar) * rand(tuple(mu.shape), gen, device).to(mu.dtype)
            logits = net.decode(z, lab)
        mu, logvar = mu.float(), logvar.float()
        nll = (torch.sigmoid(logits.float()) - x).abs().flatten(1).sum(1) / scale
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
        loss = (nll + beta * min(1.0, (step + 1) / max(1, beta_warmup)) * kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 100.0)
        opt.step()
        l1 = nll.mean().item() * scale / x[0].numel()
        recent.add(loss=loss.item(), l1=l1)
        run.report(step, batch, loss=loss.item(), l1=l1, kl=kl.mean().item())
    net.eval()
    dim = cfg["latent_dim"]
    sections = {
        "output": {"kind": "audio", "sample_rate": source.sample_rate, "channels": 1, "length": source.length},
        "latent": {"shape": [dim], "prior": "normal"},
        "conditions": {"kind": "class", "labels": list(classes), "default": source.default_class},
        "architecture": {**{k: v for k, v in cfg.items() if k != "latent_dim"}, "n_fft": fmt.n_fft, "hop": fmt.hop,
                         "db_floor": fmt.db_floor, "db_ceiling": fmt.db_ceiling, "fitted_prior": source.fitted,
                         "class_prior": source.class_prior, "griffin_lim_iterations": iterations},
    }
    training, weights = source.finish(run, net, fmt, iterations, recent)
    # The artist's coordinates are the principal axes of each class's encoded sounds, each at unit spread: direction
    # k is axis k, so the sliders move along the ways the training sounds of the class vary most.
    directions = Directions(torch.eye(dim)[:min(16, dim)], torch.ones(min(16, dim)), torch.zeros(dim))
    return run.write(out, "audio-vae", sections, training, weights, directions, specimen(net.cpu(), kinds=classes))


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
def specimen(net: SpecVAE, seeds=range(4), kinds: tuple[str, ...] = KINDS) -> np.ndarray:
    """A preview: prior-sample spectrograms, one row per seed, one column per class (low notes at the bottom),
    in the app's colours, RGB uint8."""
    rows = []
    for seed in seeds:
        w = torch.randn(1, net.latent_dim, generator=torch.Generator().manual_seed(seed)).expand(len(kinds), -1)
        classes = torch.arange(len(kinds))
        pics = torch.sigmoid(net.decode(net.from_prior(w, classes), classes))[:, 0]  # (K, bins, frames)
        pics = F.avg_pool2d(pics[:, None], (4, 1))[:, 0].flip(1)  # bins / 4, low frequencies at the bottom
        tiles = MAGMA[(pics.clamp(0, 1) * 255).round().to(torch.uint8).numpy()]  # (K, H, W, 3)
        gap = np.full((tiles.shape[1], 4, 3), GAP_GREY, np.uint8)
        rows.append(np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], 1))
    hgap = np.full((4, *rows[0].shape[1:]), GAP_GREY, np.uint8)
    return np.concatenate([part for row in rows for part in (row, hgap)][:-1], 0)


# --- the recipe's procedural sounds ---------------------------------------------------------------------------------


class _Procedural:
    classes = KINDS
    fitted = class_prior = True

    def __init__(self, recipe: Recipe):
        r, d = recipe.reader(), recipe.data
        self.recipe = recipe
        self.per_kind = r.get(d, "per_kind", int, "data.", required=False, default=400)
        at_least_2 = lambda v: None if v >= 2 else f"must be at least 2 (the spread of a class needs pairs), got {v}"  # noqa: E731
        self.held_per_kind = r.get(d, "heldout_per_kind", int, "data.", required=False, default=50, check=at_least_2)
        self.samples_per_class = r.get(recipe.evaluate, "prior_samples_per_class", int, "evaluate.", required=False,
                                       default=50, check=at_least_2)
        self.sample_rate = r.get(d, "sample_rate", int, "data.", required=False, default=SAMPLE_RATE)
        self.length = r.get(d, "length", int, "data.", required=False, default=LENGTH)
        self.default_class = recipe.package.get("default_class", "kick")

    def check(self, latent_dim: int) -> None:
        if self.per_kind < latent_dim:
            raise RecipeError(f"the prior of each class is fitted to its encoded sounds: needs at least latent_dim = "
                              f"{latent_dim} per class, got {self.per_kind}", self.recipe.path, "data.per_kind")

    def load(self, run: Run, fmt: SpecFormat, latent_dim: int) -> None:
        run.log(f"synthesising {self.per_kind} sounds of each of {len(KINDS)} classes ({', '.join(KINDS)})")
        waves, labels = sound_set(self.per_kind, 0, sample_rate=self.sample_rate, length=self.length)
        pictures = torch.cat([fmt.to_picture(torch.from_numpy(waves[i:i + 256])) for i in range(0, len(waves), 256)])
        self.pictures = pictures.to(torch.float16).to(run.device)  # half the memory; the network reads float32
        self.labels = torch.from_numpy(labels).to(run.device)
        self.about = f"on {len(waves)} sounds"

    def finish(self, run: Run, net: SpecVAE, fmt: SpecFormat, iterations: int,
               recent: RecentMean) -> tuple[dict, dict]:
        seed, ev = run.schedule.seed, self.recipe.evaluate
        net = net.cpu()  # measured on the CPU
        pictures, labels = self.pictures.cpu(), self.labels.cpu()
        with torch.inference_mode():
            mus = torch.cat([net.encode(pictures[i:i + 256].float(), labels[i:i + 256])[0]
                             for i in range(0, len(pictures), 256)])
        net.fit_prior(mus, labels)
        with torch.no_grad():  # the package holds float16 weights (half the download): measure what is shipped
            for tensor in net.state_dict().values():
                if tensor.is_floating_point():
                    tensor.copy_(tensor.half().float())
        clf = classifier_for(run.run_dir, int(ev.get("classifier_steps", 600)), int(ev.get("classifier_per_kind", 200)),
                             seed + 1, self.sample_rate, self.length, run.log)
        metrics = evaluate(net, fmt, clf, self.held_per_kind, self.samples_per_class, iterations, seed + 2,
                           self.sample_rate, self.length, run.log)
        training = {"training_sounds": len(pictures), "weights": "float16",
                    "heldout_sounds": self.held_per_kind * len(KINDS), "quality": metrics}
        weights = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
        return training, weights


# --- a folder of sounds ---------------------------------------------------------------------------------------------


class _Folder:
    def __init__(self, recipe: Recipe):
        r, d = recipe.reader(), recipe.data
        self.recipe = recipe
        self.sample_rate = r.get(d, "sample_rate", int, "data.", required=False, default=22050,
                                 check=lambda v: None if RATES[0] <= v <= RATES[1] else
                                 f"must be {RATES[0]} … {RATES[1]} Hz, got {v}")
        rate = self.sample_rate
        self.length = r.get(d, "length", int, "data.", required=False, default=length_for(1.0, rate),
                            check=lambda v: None if SECONDS[0] <= v / rate <= SECONDS[1] else
                            f"must be {SECONDS[0]:g} … {SECONDS[1]:g} seconds at {rate} Hz, got {v} samples")
        self.use_classes = r.get(d, "classes", bool, "data.", required=False, default=True)
        self.normalize = r.get(d, "normalize", bool, "data.", required=False, default=True)

    def check(self, latent_dim: int) -> None:
        pass

    def load(self, run: Run, fmt: SpecFormat, latent_dim: int) -> None:
        folder = self.folder = data_folder(self.recipe)
        sounds = load_sound_folder(folder, self.sample_rate, self.length, self.use_classes, self.normalize, run.log)
        if len(sounds.waves) < MIN_FILES["audio"]:
            raise RecipeError(f"an audio VAE needs at least {MIN_FILES['audio']} sounds to learn from; {folder} has "
                              f"{len(sounds.waves)} usable", self.recipe.path, "data.folder")
        self.classes = classes = sounds.classes
        self.default_class = classes[0]
        waves = self.waves = torch.from_numpy(sounds.waves)
        labels = self.all_labels = torch.from_numpy(sounds.labels)
        pictures = self.all_pictures = torch.cat([fmt.to_picture(waves[i:i + 128]) for i in range(0, len(waves), 128)])
        order = torch.randperm(len(waves), generator=run.gen)
        self.held = order[:len(waves) // 10] if len(waves) >= 20 else order[:0]  # a tenth held out, when enough
        keep = order[len(self.held):]
        counts = torch.bincount(labels[keep], minlength=len(classes))
        self.fitted = len(keep) >= latent_dim  # a Gaussian needs at least as many sounds as latent dimensions
        self.class_prior = len(classes) > 1 and int(counts.min()) >= latent_dim
        if not self.fitted:
            run.log(f"{len(keep)} training sounds are fewer than the {latent_dim} latent dimensions: no prior is "
                    "fitted")
        self.pictures, self.labels = pictures[keep].to(run.device), labels[keep].to(run.device)
        self.about = f"on {len(keep)} sounds"

    def finish(self, run: Run, net: SpecVAE, fmt: SpecFormat, iterations: int,
               recent: RecentMean) -> tuple[dict, dict]:
        with torch.inference_mode():
            mus = torch.cat([net.encode(self.pictures[i:i + 128], self.labels[i:i + 128])[0]
                             for i in range(0, len(self.pictures), 128)])
        if self.fitted:
            net.fit_prior(mus.float(), self.labels if self.class_prior else None)
        quality = {"training_sounds": len(self.pictures), "heldout_sounds": len(self.held), **recent.means()}
        held = self.held
        if len(held):
            quality.update(heldout_reconstruction(net, fmt, self.waves[held], self.all_pictures[held],
                                                  self.all_labels[held], iterations, self.sample_rate, run.device))
        for key, value in quality.items():
            run.log(f"  {key}: {value}")
        training = {"data": str(self.folder), "normalized": self.normalize,
                    "class_counts": {c: int((self.all_labels == i).sum()) for i, c in enumerate(self.classes)},
                    "quality": quality}
        return training, {k: v.detach().float().cpu() for k, v in net.state_dict().items()}


def length_for(seconds: float, sample_rate: int, hop: int = HOP) -> int:
    """Samples of a sound about `seconds` long whose spectrogram has a multiple of 8 frames (so the network can
    halve its time axis three times: 1.0 s at 22050 Hz is 22272 samples, 88 frames, as the shipped model)."""
    if not SECONDS[0] <= seconds <= SECONDS[1]:
        raise RecipeError(f"must be {SECONDS[0]:g} … {SECONDS[1]:g} seconds, got {seconds:g}", None, "seconds")
    frames = max(8, round((seconds * sample_rate / hop + 1) / 8) * 8)
    return (frames - 1) * hop


def folder_recipe(folder: Path, model_id: str, seconds: float = 1.0, sample_rate: int = 22050,
                  steps: int = 2000, batch: int = 16, latent_dim: int = 8, classes: bool = True,
                  normalize: bool = True, name: str = "", device: str = "cpu", seed: int = 0) -> dict:
    """The tables of the recipe `latent-studio train --family audio --data FOLDER` runs (studio.train.folder names
    the trainer and writes it to the run folder, and the package keeps it: the run reproduces)."""
    return {
        "package": package_table(model_id, name, f"A sound model trained on the sounds in {folder}.",
                                 "the sounds' own licence"),
        "data": {"folder": str(Path(folder).resolve()), "sample_rate": sample_rate,
                 "length": length_for(float(seconds), sample_rate), "classes": classes, "normalize": normalize},
        "model": {"latent_dim": latent_dim, "width": 16, "levels": 6, "max_width": 128, "class_dim": 16,
                  "hidden": 256, "n_fft": 1024, "hop": HOP, "griffin_lim_iterations": 48},
        "train": {"seed": seed, "steps": steps, "batch": batch, "lr": 1e-3, "warmup": 100, "beta": 1.0,
                  "beta_warmup": 500, "recon_scale": 0.5, "checkpoint_every": 100, "device": device,
                  "bfloat16": "auto"},
    }
