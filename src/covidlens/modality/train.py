"""Training the modality CNN (:class:`~covidlens.modality.check.ModalityNet`): gather, fit, score, save.

:func:`gather` reads the images of :mod:`covidlens.modality.samples` (real CT and CXR in the registry's
splits, generated negatives, real photographs), :func:`fit` trains the tiny CNN on balanced batches and
keeps the epoch with the best mean validation accuracy over sets and negative kinds, :func:`score`
measures the CNN alone and the whole check (DICOM header, rules, then the CNN) on every held-out test
group with bootstrap intervals. :func:`save_model` writes a store checkpoint folder (``model.safetensors``
and a ``model.json`` that passes the checkpoint's strict checks). ``covidlens models build modality``
runs all four from ``configs/store/modality.yaml``; ``benchmarks/modality.py`` measures what they give.

The weights that ship in the package (``modality_cnn.safetensors``) were trained by this code with the
recipe's ``full`` settings; the check keeps using them (a store build does not replace them).
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from covidlens.data.io import Scan
from covidlens.errors import CovidlensError
from covidlens.modality import check as mc
from covidlens.modality import samples as ms

KIND_INDEX = {k: i for i, k in enumerate(mc.KINDS)}
TRAIN_SIZE = 96  # training thumbnails are cropped at random and resized to 64
#: The registry-free name recorded in the store's model.json (the CNN is not a registry architecture).
ARCHITECTURE = "modality_cnn"


@dataclass
class ModalitySettings:
    """Every knob of a modality build; the defaults are the run that gave the shipped weights."""

    #: At most this many training images per real set, and val/test images per real set.
    train_per_set: int = 500
    eval_per_set: int = 400
    #: Generated images per negative kind for training, and for val and test.
    negatives: int = 300
    negatives_eval: int = 100
    epochs: int = 30
    #: Batches per epoch.
    steps: int = 40
    batch_size: int = 96
    lr: float = 3e-3
    seed: int = 0

    @classmethod
    def from_overrides(cls, overrides: list[str]) -> "ModalitySettings":
        """Settings from ``key=value`` strings (a recipe's list, ``--set``); one sentence on a bad one."""
        values: dict[str, int | float] = {}
        known = {f.name: f.type for f in dataclasses.fields(cls)}
        for item in overrides:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in known:
                raise CovidlensError(f"the modality recipe takes key=value with a key among {', '.join(known)}, "
                                     f"not {item!r}.")
            try:
                values[key] = float(raw) if known[key] == "float" else int(raw)
            except ValueError:
                raise CovidlensError(f"modality setting {key} must be a number, got {raw!r}.") from None
        settings = cls(**values)
        if min(settings.train_per_set, settings.eval_per_set, settings.negatives, settings.negatives_eval,
               settings.epochs, settings.steps) < 1 or settings.batch_size < 3 or settings.lr <= 0:
            raise CovidlensError("modality settings must be at least 1 (batch_size at least 3, one per kind) "
                                 "and lr above 0.")
        return settings


@dataclass
class ModalityData:
    """What :func:`gather` read: 96 px training thumbnails and labels, 64 px val/test thumbnails with
    their labels and groups, the full test images for the whole check, and what was read from where."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    evals: dict[str, tuple[np.ndarray, np.ndarray, list[str]]]
    test_full: dict[str, list[tuple]]
    counts: dict[str, dict[str, int]]
    measures: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    rule_hits: list[str] = field(default_factory=list)
    photos: list[str] = field(default_factory=list)
    held_out_pictures: list[str] = field(default_factory=list)


def resized(grey: np.ndarray, size: int) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(grey), mode="L")
    return np.asarray(image.resize((size, size), Image.BILINEAR, reducing_gap=2.0), np.float32) / 255.0


def gather(root: Path, settings: ModalitySettings, log: Callable[[str], None] = print) -> ModalityData:
    """Read every real set (at most the settings' counts per split), generate the negatives, and take the
    real photographs; also measure the rules on every real image read."""
    started = time.time()
    train_x, train_y = [], []
    evals: dict[str, tuple[list, list, list]] = {"val": ([], [], []), "test": ([], [], [])}
    rule_hits, measures = [], defaultdict(list)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    test_full = defaultdict(list)
    for kind, name, found in ms.real_sources(root):
        by_split = defaultdict(list)
        for s in found:
            by_split[s.split].append(s)
        chosen = {"train": ms.subsample(by_split["train"], settings.train_per_set, settings.seed),
                  "val": ms.subsample(by_split["val"], settings.eval_per_set, settings.seed),
                  "test": ms.subsample(by_split["test"], settings.eval_per_set, settings.seed)}
        for split, items in chosen.items():
            for s in items:
                grey, colour, dicom = ms.load_real(s)
                m = mc.image_measures(grey, colour)
                for key, value in m.items():
                    measures[(kind, key)].append(value)
                ruled = mc.decide_by_rules(m)
                if ruled is not None:
                    rule_hits.append(f"{s.path} ({ruled.reason})")
                counts[name][split] += 1
                if split == "train":
                    train_x.append(resized(grey, TRAIN_SIZE))
                    train_y.append(KIND_INDEX[kind])
                else:
                    evals[split][0].append(mc.thumbnail(grey))
                    evals[split][1].append(KIND_INDEX[kind])
                    evals[split][2].append(f"{kind}: {name}")
                if split == "test":
                    test_full[f"{kind}: {name}"].append((grey, colour, dicom, kind))
        log(f"read {name}: {dict(counts[name])} ({time.time() - started:.0f} s)")

    for kind in ms.NEGATIVE_KINDS:
        for grey, _ in ms.negatives(kind, settings.negatives, ms.SEEDS["train"] + settings.seed):
            train_x.append(resized(grey, TRAIN_SIZE))
            train_y.append(KIND_INDEX["other"])
        for split in ("val", "test"):
            for grey, colour in ms.negatives(kind, settings.negatives_eval, ms.SEEDS[split] + settings.seed):
                evals[split][0].append(mc.thumbnail(grey))
                evals[split][1].append(KIND_INDEX["other"])
                evals[split][2].append(f"other: {kind}")
                if split == "test":
                    test_full[f"other: {kind}"].append((grey, colour, "", "other"))
    for kind in ("scene", "scene-grey"):
        for grey, colour in ms.negatives(kind, settings.negatives_eval, ms.SEEDS["test"] + settings.seed):
            evals["test"][0].append(mc.thumbnail(grey))
            evals["test"][1].append(KIND_INDEX["other"])
            evals["test"][2].append(f"other: {kind} (held-out generator)")
            test_full[f"other: {kind} (held-out generator)"].append((grey, colour, "", "other"))
    rng = np.random.default_rng(ms.SEEDS["train"] + settings.seed)
    photos = ms.real_pictures("train")
    for _, grey, _ in photos:
        for crop in ms.photo_crops(grey, rng, ms.CROPS_PER_PHOTO):
            train_x.append(resized(crop, TRAIN_SIZE))
            train_y.append(KIND_INDEX["other"])
    held_out = ms.real_pictures("test")
    for name, grey, colour in held_out:
        evals["test"][0].append(mc.thumbnail(grey))
        evals["test"][1].append(KIND_INDEX["other"])
        evals["test"][2].append("other: real pictures (held out)")
        test_full["other: real pictures (held out)"].append((grey, colour, "", "other"))
    log(f"generated negatives, {len(photos)} real photographs x {ms.CROPS_PER_PHOTO} crops "
        f"({time.time() - started:.0f} s)")
    if not all(KIND_INDEX[k] in train_y for k in mc.KINDS):
        raise CovidlensError(f"the data folder {root} gave no training image of some kind (ct, cxr, other); "
                             "the modality CNN needs all three.")
    return ModalityData(
        torch.from_numpy(np.stack(train_x))[:, None], torch.tensor(train_y),
        {split: (np.stack(v[0]), np.array(v[1]), v[2]) for split, v in evals.items()}, dict(test_full),
        {n: dict(c) for n, c in counts.items()}, dict(measures), rule_hits,
        [name for name, _, _ in photos], [name for name, _, _ in held_out],
    )


def augment(batch: torch.Tensor, kinds: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop (60-100 % of the side) resized to 64, flips, 90-degree turns for CT (Inf-Net ships
    turned slices), contrast and gamma jitter. Works on 96 x 96 thumbnails."""
    n = batch.shape[0]
    out = torch.empty(n, 1, mc.THUMBNAIL, mc.THUMBNAIL)
    for i in range(n):
        image = batch[i : i + 1]
        if torch.rand(1, generator=gen) < 0.7:
            side = int(TRAIN_SIZE * (0.6 + 0.4 * torch.rand(1, generator=gen)))
            y0, x0 = (int(torch.randint(0, TRAIN_SIZE - side + 1, (1,), generator=gen)) for _ in range(2))
            image = image[:, :, y0 : y0 + side, x0 : x0 + side]
        image = F.interpolate(image, size=(mc.THUMBNAIL, mc.THUMBNAIL), mode="bilinear", antialias=True,
                              align_corners=False)
        if torch.rand(1, generator=gen) < 0.5:
            image = image.flip(3)
        if kinds[i] == KIND_INDEX["ct"] and torch.rand(1, generator=gen) < 0.3:
            image = torch.rot90(image, int(torch.randint(1, 4, (1,), generator=gen)), dims=(2, 3))
        gamma = float(torch.exp(0.3 * torch.randn(1, generator=gen)))
        contrast = float(1 + 0.2 * torch.randn(1, generator=gen))
        image = ((image.clamp(0, 1) ** gamma - 0.5) * contrast + 0.5).clamp(0, 1)
        out[i] = image[0]
    return out


def accuracy_by_group(net, thumbs: np.ndarray, labels: np.ndarray, groups: list[str]) -> dict[str, float]:
    p = mc.cnn_probabilities(thumbs, net).argmax(1)
    by = defaultdict(list)
    for g, ok in zip(groups, p == labels):
        by[g].append(ok)
    return {g: float(np.mean(v)) for g, v in by.items()}


@dataclass
class Fitted:
    net: mc.ModalityNet
    best_epoch: int
    val_mean_accuracy: float
    seconds: float


def fit(data: ModalityData, settings: ModalitySettings, log: Callable[[str], None] = print) -> Fitted:
    """Train on balanced batches (a third of each kind), one line per epoch; keep the best validation epoch."""
    torch.manual_seed(settings.seed)
    started = time.time()
    x, y = data.train_x, data.train_y
    val = data.evals["val"]
    by_kind = [torch.nonzero(y == k).flatten() for k in range(len(mc.KINDS))]
    net = mc.ModalityNet()
    optimiser = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, settings.lr, total_steps=settings.epochs * settings.steps)
    gen = torch.Generator().manual_seed(settings.seed)
    best, best_state, best_epoch = -1.0, None, -1
    for epoch in range(settings.epochs):
        net.train()
        losses = []
        for _ in range(settings.steps):
            idx = torch.cat([k[torch.randint(0, len(k), (settings.batch_size // 3,), generator=gen)] for k in by_kind])
            batch = augment(x[idx], y[idx], gen)
            loss = F.cross_entropy(net(batch), y[idx], label_smoothing=0.05)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
        net.eval()
        groups = accuracy_by_group(net, *val)
        score_ = float(np.mean(list(groups.values())))  # mean over sets and negative kinds
        worst = min(groups, key=groups.get)
        log(f"epoch {epoch + 1}/{settings.epochs}  loss {np.mean(losses):.3f}  val mean accuracy {score_:.3f}  "
            f"worst {worst} {groups[worst]:.3f}  {time.time() - started:.0f} s")
        if score_ >= best:
            best, best_epoch = score_, epoch + 1
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    return Fitted(net.eval(), best_epoch, best, time.time() - started)


def full_check(net, grey, colour, dicom) -> mc.ModalityCheck:
    """The whole check with ``net`` as its CNN: DICOM header, rules, then the CNN."""
    if dicom:
        return mc.check_scan(Scan(np.zeros((1, 1), np.float32), None, dicom, "raw", "", "dicom", Path()))
    ruled = mc.decide_by_rules(mc.image_measures(grey, colour))
    if ruled is not None:
        return ruled
    return mc.ModalityCheck(mc.KINDS[int(mc.cnn_probabilities(mc.thumbnail(grey)[None], net).argmax())])


def _interval(hits: np.ndarray, rng: np.random.Generator, n_boot: int) -> tuple[float, float]:
    """95 % percentile bootstrap interval of an accuracy over its images."""
    if len(hits) == 0:
        return float("nan"), float("nan")
    draws = rng.integers(0, len(hits), (n_boot, len(hits)))
    means = hits[draws].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def score(net, data: ModalityData, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Per held-out test group: images, the CNN alone and the whole check, each with a 95 % bootstrap
    interval over the group's images."""
    thumbs, labels, groups = data.evals["test"]
    predicted = mc.cnn_probabilities(thumbs, net).argmax(1)
    cnn_hits = defaultdict(list)
    for g, ok in zip(groups, predicted == labels):
        cnn_hits[g].append(float(ok))
    rng = np.random.default_rng(seed)
    rows = []
    for group, items in data.test_full.items():
        check = np.array([float(full_check(net, grey, colour, dicom).kind == kind)
                          for grey, colour, dicom, kind in items])
        cnn = np.array(cnn_hits[group])
        rows.append({"group": group, "n": len(items),
                     "cnn_accuracy": round(float(cnn.mean()), 4), "cnn_ci95": _interval(cnn, rng, n_boot),
                     "check_accuracy": round(float(check.mean()), 4), "check_ci95": _interval(check, rng, n_boot)})
    return rows


def save_model(net: mc.ModalityNet, folder: Path, dataset: str = "modality") -> Path:
    """Write ``net`` as a checkpoint folder the store verifies (:func:`covidlens.store.store.verify_model`)."""
    from covidlens.checkpoint import ModelInfo, save_checkpoint

    info = ModelInfo(model=ARCHITECTURE, classes=list(mc.KINDS), input_size=mc.THUMBNAIL, mean=[0.0], std=[1.0],
                     task="classification", modality="ct", positive_class=None, num_outputs=len(mc.KINDS),
                     in_channels=1, dataset=dataset)
    return save_checkpoint(net, info, folder)
