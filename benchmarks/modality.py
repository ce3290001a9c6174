"""Train and measure the modality check: chest CT slice, chest X-ray, or neither.

    COVIDLENS_DATA=../shared/data python benchmarks/modality.py --out runs/modality

Real images come from every CT and CXR set of the data folder, in the registry's splits (train to
fit, val to choose the epoch, test to report); negatives are generated (flat, gradients, noise of
several kinds, 1/f noise, shapes, text, checkerboards, colour pictures), each kind with its own seeds
for train, val and test. A photo-like scene generator that training never sees stands in for natural
photographs, of which the data folder has none. The script measures the rules' margins on every real
image, trains the tiny CNN on one core (about a minute), writes ``results.md`` and ``results.json`` to
``--out`` and, unless ``--no-save``, the weights and their JSON sidecar into ``covidlens/modality/``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from covidlens.data.datasets import default_data_root, group_split, load_dataset
from covidlens.data.intensity import display_image, to_uint8
from covidlens.data.io import Scan, read_scan
from covidlens.modality import check as mc

KIND_INDEX = {k: i for i, k in enumerate(mc.KINDS)}
TRAIN_SIZE = 96  # training thumbnails are cropped at random and resized to 64
NEGATIVE_KINDS = ("flat", "gradient", "gauss", "uniform", "noise16", "pink", "saltpepper", "shapes", "text",
                  "checker", "colour")
SEEDS = {"train": 0, "val": 1_000_000, "test": 2_000_000}
#: Real pictures that are neither, from packages on PyPI (the data folder has none): scikit-image's
#: bundled photographs train, except those held out for the test with matplotlib's sample photographs
#: and its MR slice of a head (a medical image that is neither chest CT nor chest X-ray).
PHOTOS_TRAIN = ("brick", "grass", "gravel", "coins", "clock_motion", "text", "page", "horse", "rocket",
                "hubble_deep_field", "coffee", "chelsea", "ihc", "cell", "motorcycle_left", "color", "logo")
PHOTOS_TEST = ("astronaut", "camera", "moon", "retina")
#: Random crops taken from each training photograph (a few photographs, many views of them).
CROPS_PER_PHOTO = 24


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=None, help="data folder (default $COVIDLENS_DATA)")
    p.add_argument("--out", type=Path, required=True, help="folder for results.md and results.json")
    p.add_argument("--train-per-set", type=int, default=500, help="at most this many training images per real set")
    p.add_argument("--eval-per-set", type=int, default=400, help="at most this many val/test images per real set")
    p.add_argument("--negatives", type=int, default=300, help="generated images per negative kind for training")
    p.add_argument("--negatives-eval", type=int, default=100, help="generated images per kind for val and test")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps", type=int, default=40, help="batches per epoch")
    p.add_argument("--batch-size", type=int, default=96)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-save", action="store_true", help="do not overwrite the package's weights")
    return p


# --- real images ---------------------------------------------------------------------------------


def real_sources(root: Path) -> list[tuple[str, str, list]]:
    """(kind, set name, samples) with each sample's split; see the module docstring for the choices."""
    sources = []
    for kind, name in (("ct", "covid-ct"), ("ct", "medseg-infnet"), ("cxr", "covid19-radiography"),
                       ("cxr", "lung-masks-shenzhen-montgomery"), ("cxr", "sutd-3class-patient"),
                       ("cxr", "covid-chestxray")):
        sources.append((kind, name, load_dataset(name, root).samples))
    # COVID-CT-MD's registry puts its 3 patients in test; one patient each for train, val and test
    # gives the CNN real HU-windowed CT slices (every second slice).
    split_of = {"cap001": "train", "normal001": "val", "P001": "test"}
    md = [s for s in load_dataset("covid-ct-md", root).samples if s.slice_index % 2 == 0]
    sources.append(("ct", "covid-ct-md (volumes)", [_with_split(s, split_of[s.group]) for s in md]))
    sources.append(("ct", "covid-ct-md-dicom (P001)", load_dataset("covid-ct-md-dicom", root).samples))
    sources.append(("ct", "ny-sbu-dicom", load_dataset("ny-sbu-dicom", root).samples))
    sources.append(("ct", "covid-chestxray CT figures", chestxray_ct_figures(root)))
    return sources


def _with_split(sample, split: str):
    import dataclasses

    return dataclasses.replace(sample, split=split)


def chestxray_ct_figures(root: Path) -> list:
    """The CT rows of covid-chestxray (the registry keeps its X-rays), split by patient 70/10/20."""
    from covidlens.data.datasets import Sample

    folder = root / "cxr" / "covid-chestxray"
    rows = [r for r in csv.DictReader(open(folder / "metadata.csv", newline=""))
            if r.get("modality") == "CT" and (folder / "images" / r["filename"]).is_file()]
    splits = group_split([r["patientid"] for r in rows])
    return [Sample(folder / "images" / r["filename"], -1, split, r["patientid"]) for r, split in zip(rows, splits)]


def load_real(sample) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Grey display image, colour pixels where the file is colour, and the DICOM modality."""
    if sample.slice_index is not None or sample.rot90:
        return np.asarray(sample.image()), None, ""
    scan = read_scan(sample.path)
    colour = None
    if scan.photometric in mc._COLOUR_MODES:
        with Image.open(sample.path) as picture:
            colour = mc._rgb(picture)
    return np.asarray(display_image(scan)), colour, scan.modality


def subsample(samples: list, n: int, seed: int) -> list:
    if len(samples) <= n:
        return samples
    keys = sorted(samples, key=lambda s: hashlib.sha256(f"{seed}{s.path}{s.slice_index}".encode()).hexdigest())
    return keys[:n]


# --- generated negatives -------------------------------------------------------------------------


def generate(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """One generated image: (8-bit grey as predict would see it, RGB pixels or None)."""
    h, w = (int(v) for v in rng.integers(48, 320, size=2))
    if kind == "flat":
        grey = np.full((h, w), rng.integers(0, 256), np.float32) + rng.normal(0, rng.uniform(0, 6), (h, w))
        return _u8(grey), None
    if kind == "gradient":
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        if rng.random() < 0.5:
            a = rng.uniform(0, 2 * np.pi)
            t = np.cos(a) * x + np.sin(a) * y
        else:
            t = np.hypot(x - rng.random(), y - rng.random())
        t = (t - t.min()) / (np.ptp(t) + 1e-6)
        lo, hi = sorted(rng.uniform(0, 255, 2))
        return _u8(lo + (hi - lo) * t ** rng.uniform(0.3, 3)), None
    if kind == "gauss":
        return _u8(rng.normal(rng.uniform(30, 220), rng.uniform(5, 80), (h, w))), None
    if kind == "uniform":
        lo = rng.uniform(0, 200)
        return _u8(rng.uniform(lo, rng.uniform(lo + 20, 255), (h, w))), None
    if kind == "noise16":
        pixels = rng.integers(0, 65536, (h, w)).astype(np.float32)
        return to_uint8(Scan(pixels, None, "", "raw", "I;16", "png", Path(), bits=16)), None
    if kind == "pink":
        return _u8(_power_law(h, w, rng.uniform(0.5, 3.0), rng)), None
    if kind == "saltpepper":
        grey = np.full((h, w), rng.uniform(0, 255))
        mask = rng.random((h, w))
        p = rng.uniform(0.02, 0.3)
        grey[mask < p / 2], grey[mask > 1 - p / 2] = 0, 255
        return _u8(grey), None
    if kind == "shapes":
        image = _shapes(h, w, rng, colour=False)
        return np.asarray(image), None
    if kind == "text":
        return np.asarray(_text(h, w, rng)), None
    if kind == "checker":
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        a = rng.uniform(0, np.pi)
        u, v = np.cos(a) * x + np.sin(a) * y, -np.sin(a) * x + np.cos(a) * y
        period = rng.uniform(4, 48)
        if rng.random() < 0.5:
            pattern = (np.floor(u / period) + np.floor(v / period)) % 2
        else:
            pattern = (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
        lo, hi = sorted(rng.uniform(0, 255, 2))
        return _u8(lo + (hi - lo) * pattern), None
    if kind == "colour":
        image = _shapes(h, w, rng, colour=True)
        if rng.random() < 0.5:
            image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 4)))
        return np.asarray(image.convert("L")), mc._rgb(image)
    if kind in ("scene", "scene-grey"):
        rgb = _scene(h, w, rng)
        grey = np.asarray(Image.fromarray(rgb).convert("L"))
        return grey, (mc._rgb(Image.fromarray(rgb)) if kind == "scene" else None)
    raise ValueError(kind)


def _u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def _power_law(h: int, w: int, beta: float, rng) -> np.ndarray:
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** (beta / 2)
    field_ = np.fft.irfft2(spectrum, s=(h, w))
    field_ = (field_ - field_.mean()) / (field_.std() + 1e-9)
    return rng.uniform(60, 200) + rng.uniform(15, 60) * field_


def _shapes(h: int, w: int, rng, colour: bool) -> Image.Image:
    mode = "RGB" if colour else "L"

    def fill():
        return tuple(int(v) for v in rng.integers(0, 256, 3)) if colour else int(rng.integers(0, 256))

    image = Image.new(mode, (w, h), fill())
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 12))):
        x0, x1 = sorted(rng.integers(-w // 4, w + w // 4, 2))
        y0, y1 = sorted(rng.integers(-h // 4, h + h // 4, 2))
        box = [int(x0), int(y0), int(x1) + 1, int(y1) + 1]
        shape = rng.integers(0, 4)
        if shape == 0:
            draw.ellipse(box, fill=fill())
        elif shape == 1:
            draw.rectangle(box, fill=fill())
        elif shape == 2:
            points = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(points, fill=fill())
        else:
            draw.line(box, fill=fill(), width=int(rng.integers(1, 8)))
    return image


def _text(h: int, w: int, rng) -> Image.Image:
    background, ink = (255, 0) if rng.random() < 0.7 else (0, 255)
    image = Image.new("L", (w, h), int(background + rng.integers(-30, 1) * np.sign(background - 1)))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=int(rng.integers(8, 28)))
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789.,;:()%"))
    y = int(rng.integers(0, 10))
    while y < h:
        line = "".join(rng.choice(letters, int(rng.integers(5, 60))))
        draw.text((int(rng.integers(0, 10)), y), line, fill=ink, font=font)
        y += int(rng.integers(10, 36))
    return image


def _scene(h: int, w: int, rng) -> np.ndarray:
    """A photo-like outdoor scene: graded sky, textured ground, shaded spheres with shadows, blur and
    sensor noise. Never used for training: it stands in for the natural photographs the data lacks."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    horizon = rng.uniform(0.3, 0.7) * h
    sky_top, sky_low = rng.uniform([20, 60, 150], [90, 140, 255]), rng.uniform([150, 180, 200], [230, 230, 255])
    t = np.clip(y / horizon, 0, 1)[..., None]
    image = sky_top * (1 - t) + sky_low * t
    ground_colour = rng.uniform([40, 60, 10], [140, 160, 80])
    depth = np.clip((y - horizon) / (h - horizon + 1), 0, 1)[..., None]
    texture = _power_law(h, w, 1.8, rng)[..., None] / 128.0
    stripes = 0.15 * np.sin(x / rng.uniform(3, 12) + 5 * np.sin(y / 17.0))[..., None]
    ground = ground_colour * (0.6 + 0.5 * depth) * (0.8 + 0.3 * texture + stripes * depth)
    image = np.where((y > horizon)[..., None], ground, image)
    light = rng.normal(size=3)
    light[2] = abs(light[2]) + 0.5
    light /= np.linalg.norm(light)
    for _ in range(int(rng.integers(1, 5))):
        cx, r = rng.uniform(0.1, 0.9) * w, rng.uniform(0.05, 0.2) * min(h, w)
        cy = horizon + rng.uniform(0.1, 0.9) * (h - horizon) - r
        colour = rng.uniform(30, 255, 3)
        shadow = ((x - cx - 0.6 * r) / (1.4 * r)) ** 2 + ((y - cy - r) / (0.3 * r)) ** 2 < 1
        image = np.where(shadow[..., None], image * 0.55, image)
        dx, dy = (x - cx) / r, (y - cy) / r
        inside = dx ** 2 + dy ** 2 < 1
        dz = np.sqrt(np.clip(1 - dx ** 2 - dy ** 2, 0, 1))
        shade = np.clip(dx * light[0] + dy * light[1] + dz * light[2], 0.05, 1)[..., None]
        highlight = (shade ** 30) * 255
        image = np.where(inside[..., None], colour * shade + highlight, image)
    image = Image.fromarray(_u8(image)).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    return _u8(np.asarray(image, np.float32) + rng.normal(0, rng.uniform(1, 6), (h, w, 3)))


def real_pictures(split: str) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(name, grey, RGB or None) of the real pictures of ``split`` (``train`` or ``test``); empty, with a
    line saying so, when scikit-image is not installed (``pip install scikit-image``)."""
    import gzip

    import matplotlib.cbook

    pictures = []
    try:
        import skimage.data
    except ImportError:
        print("scikit-image is not installed: no real photographs in training or test", flush=True)
        names = ()
    else:
        names = PHOTOS_TRAIN if split == "train" else PHOTOS_TEST
        folder = Path(skimage.data.__file__).parent
    for name in names:
        path = next(folder.glob(f"{name}.*"))
        with Image.open(path) as picture:
            picture.load()
            pictures.append((f"scikit-image {name}", picture))
    if split == "test":
        for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png"):
            with Image.open(matplotlib.cbook.get_sample_data(name, asfileobj=False)) as picture:
                picture.load()
                pictures.append((f"matplotlib {name}", picture))
        with gzip.open(matplotlib.cbook.get_sample_data("s1045.ima.gz", asfileobj=False)) as handle:
            head = np.frombuffer(handle.read(), "<u2").reshape(256, 256).astype(np.float32)
        pictures.append(("matplotlib s1045 (MR of a head)", Image.fromarray(_u8(head / head.max() * 255))))
    out = []
    for name, picture in pictures:
        if picture.mode in ("1", "I;16", "I"):
            picture = Image.fromarray(_u8(np.asarray(picture, np.float32) * (255.0 / max(np.asarray(picture).max(), 1))))
        colour = mc._rgb(picture) if picture.mode in mc._COLOUR_MODES else None
        out.append((name, np.asarray(picture.convert("L")), colour))
    return out


def photo_crops(grey: np.ndarray, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """``n`` random square-ish crops of 30-100 % of a photograph's sides."""
    h, w = grey.shape
    crops = []
    for _ in range(n):
        ch, cw = (max(32, int(side * rng.uniform(0.3, 1.0))) for side in (h, w))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crops.append(grey[y0 : y0 + ch, x0 : x0 + cw])
    return crops


def negatives(kind: str, n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    rng = np.random.default_rng([seed, NEGATIVE_KINDS.index(kind) if kind in NEGATIVE_KINDS else 99])
    return [generate(kind, rng) for _ in range(n)]


# --- training ------------------------------------------------------------------------------------


def resized(grey: np.ndarray, size: int) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(grey), mode="L")
    return np.asarray(image.resize((size, size), Image.BILINEAR, reducing_gap=2.0), np.float32) / 255.0


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


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    root = args.data_root or default_data_root()
    started = time.time()

    # Real images: thumbnails, and the rules' measures on every one of them.
    train_x, train_y = [], []
    evals = {"val": ([], [], []), "test": ([], [], [])}  # thumbs, labels, groups
    rule_hits, measures, counts = [], defaultdict(list), defaultdict(lambda: defaultdict(int))
    test_full = defaultdict(list)
    for kind, name, samples in real_sources(root):
        by_split = defaultdict(list)
        for s in samples:
            by_split[s.split].append(s)
        chosen = {"train": subsample(by_split["train"], args.train_per_set, args.seed),
                  "val": subsample(by_split["val"], args.eval_per_set, args.seed),
                  "test": subsample(by_split["test"], args.eval_per_set, args.seed)}
        for split, items in chosen.items():
            for s in items:
                grey, colour, dicom = load_real(s)
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
        print(f"read {name}: {dict(counts[name])} ({time.time() - started:.0f} s)", flush=True)

    for kind in NEGATIVE_KINDS:
        for grey, _ in negatives(kind, args.negatives, SEEDS["train"] + args.seed):
            train_x.append(resized(grey, TRAIN_SIZE))
            train_y.append(KIND_INDEX["other"])
        for split in ("val", "test"):
            for grey, colour in negatives(kind, args.negatives_eval, SEEDS[split] + args.seed):
                evals[split][0].append(mc.thumbnail(grey))
                evals[split][1].append(KIND_INDEX["other"])
                evals[split][2].append(f"other: {kind}")
                if split == "test":
                    test_full[f"other: {kind}"].append((grey, colour, "", "other"))
    for kind in ("scene", "scene-grey"):
        for grey, colour in negatives(kind, args.negatives_eval, SEEDS["test"] + args.seed):
            evals["test"][0].append(mc.thumbnail(grey))
            evals["test"][1].append(KIND_INDEX["other"])
            evals["test"][2].append(f"other: {kind} (held-out generator)")
            test_full[f"other: {kind} (held-out generator)"].append((grey, colour, "", "other"))
    rng = np.random.default_rng(SEEDS["train"] + args.seed)
    photos = real_pictures("train")
    for _, grey, _ in photos:
        for crop in photo_crops(grey, rng, CROPS_PER_PHOTO):
            train_x.append(resized(crop, TRAIN_SIZE))
            train_y.append(KIND_INDEX["other"])
    for name, grey, colour in real_pictures("test"):
        evals["test"][0].append(mc.thumbnail(grey))
        evals["test"][1].append(KIND_INDEX["other"])
        evals["test"][2].append("other: real pictures (held out)")
        test_full["other: real pictures (held out)"].append((grey, colour, "", "other"))
    print(f"generated negatives, {len(photos)} real photographs x {CROPS_PER_PHOTO} crops ({time.time() - started:.0f} s)",
          flush=True)

    x = torch.from_numpy(np.stack(train_x))[:, None]
    y = torch.tensor(train_y)
    val = [np.stack(evals["val"][0]), np.array(evals["val"][1]), evals["val"][2]]
    by_kind = [torch.nonzero(y == k).flatten() for k in range(len(mc.KINDS))]

    net = mc.ModalityNet()
    optimiser = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, args.lr, total_steps=args.epochs * args.steps)
    gen = torch.Generator().manual_seed(args.seed)
    best, best_state, best_epoch = -1.0, None, -1
    for epoch in range(args.epochs):
        net.train()
        losses = []
        for _ in range(args.steps):
            # Balanced batches: a third of each kind, whatever the set sizes.
            idx = torch.cat([k[torch.randint(0, len(k), (args.batch_size // 3,), generator=gen)] for k in by_kind])
            batch = augment(x[idx], y[idx], gen)
            loss = F.cross_entropy(net(batch), y[idx], label_smoothing=0.05)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
        net.eval()
        groups = accuracy_by_group(net, *val)
        score = float(np.mean(list(groups.values())))  # mean over sets and negative kinds
        worst = min(groups, key=groups.get)
        print(f"epoch {epoch + 1:2d}  loss {np.mean(losses):.3f}  val mean accuracy {score:.3f}  "
              f"worst {worst} {groups[worst]:.3f}  ({time.time() - started:.0f} s)", flush=True)
        if score >= best:
            best, best_epoch = score, epoch + 1
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    net.eval()

    # Test: the CNN alone and the whole check (DICOM header, rules, then the CNN).
    cnn = accuracy_by_group(net, np.stack(evals["test"][0]), np.array(evals["test"][1]), evals["test"][2])
    rows = []
    for group, items in test_full.items():
        ok = []
        for grey, colour, dicom, kind in items:
            ok.append(_full_check(net, grey, colour, dicom).kind == kind)
        rows.append({"group": group, "n": len(items), "cnn_accuracy": round(cnn[group], 4),
                     "check_accuracy": round(float(np.mean(ok)), 4)})
    margins = {
        "min_side_real": min(min(measures[(k, "min_side")]) for k in ("ct", "cxr")),
        "min_std_real": round(min(min(measures[(k, "std")]) for k in ("ct", "cxr")), 2),
        "max_colour_fraction_real": round(max(max(measures[(k, "colour_fraction")]) for k in ("ct", "cxr")), 4),
        "rules": {"MIN_SIDE": mc.MIN_SIDE, "MIN_STD": mc.MIN_STD, "COLOUR_CHROMA": mc.COLOUR_CHROMA,
                  "MAX_COLOUR_FRACTION": mc.MAX_COLOUR_FRACTION},
        "real_images_refused_by_rules": rule_hits,
    }
    command = "COVIDLENS_DATA=../shared/data python benchmarks/modality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {
        "command": command,
        "best_epoch": best_epoch,
        "val_mean_accuracy": round(best, 4),
        "train_images": {"real": {n: c["train"] for n, c in counts.items()},
                         "generated_per_kind": args.negatives, "generated_kinds": list(NEGATIVE_KINDS),
                         "real_photographs": [name for name, _, _ in photos], "crops_per_photograph": CROPS_PER_PHOTO},
        "held_out_real_pictures": [name for name, _, _ in real_pictures("test")],
        "images_read": {n: dict(c) for n, c in counts.items()},
        "test": rows,
        "rule_margins": margins,
        "notes": [
            "The data folder has no natural photograph: real ones come from scikit-image (training: its bundled "
            "photographs but four; test: those four) and matplotlib (test: two photographs and an MR slice of a "
            "head). 'scene' is a synthetic photo-like generator that training never saw (colour: the whole "
            "check; scene-grey: its grey version, the CNN alone).",
            "Generated test images use seeds disjoint from training and validation.",
            "COVID-CT-MD: cap001 trains, normal001 validates, P001 tests (the registry keeps all three in test).",
            "covid-chestxray CT figures: its CT rows, split by patient 70/10/20 with group_split.",
            "DICOM sets are decided by their header's Modality in the whole check; cnn_accuracy is the CNN "
            "on their lung-windowed image alone.",
        ],
        "seconds": round(time.time() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / "results.md").write_text(table)
    print(table)
    if not args.no_save:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(mc.WEIGHTS))
        mc.WEIGHTS.with_suffix(".json").write_text(json.dumps(
            {k: result[k] for k in ("command", "best_epoch", "val_mean_accuracy", "train_images", "held_out_real_pictures", "test",
                                    "rule_margins", "notes")}, indent=2) + "\n")
        print(f"saved {mc.WEIGHTS} ({mc.WEIGHTS.stat().st_size} bytes)")
    return 0


def _full_check(net, grey, colour, dicom) -> mc.ModalityCheck:
    if dicom:
        return mc.check_scan(Scan(np.zeros((1, 1), np.float32), None, dicom, "raw", "", "dicom", Path()))
    ruled = mc.decide_by_rules(mc.image_measures(grey, colour))
    if ruled is not None:
        return ruled
    return mc.ModalityCheck(mc.KINDS[int(mc.cnn_probabilities(mc.thumbnail(grey)[None], net).argmax())])


def markdown(result: dict) -> str:
    lines = ["| held-out test group | images | CNN alone | whole check |", "|---|---:|---:|---:|"]
    for row in result["test"]:
        lines.append(f"| {row['group']} | {row['n']} | {row['cnn_accuracy']:.3f} | {row['check_accuracy']:.3f} |")
    m = result["rule_margins"]
    lines += ["", f"Rules measured on every real image read: shorter side >= {m['min_side_real']:.0f} px "
                  f"(rule: < {m['rules']['MIN_SIDE']}), grey std >= {m['min_std_real']} (rule: < {m['rules']['MIN_STD']}), "
                  f"coloured fraction <= {m['max_colour_fraction_real']} (rule: > {m['rules']['MAX_COLOUR_FRACTION']}); "
                  f"real images refused by a rule: {len(m['real_images_refused_by_rules'])}.",
              f"Best epoch {result['best_epoch']} (val mean accuracy {result['val_mean_accuracy']}).", ""]
    lines += [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
