"""The images the modality CNN learns from and is tested on: real CT and CXR from the registered data
sets, generated negatives, and real photographs from PyPI packages.

Real images come from every CT and CXR set of the data folder, in the registry's splits (train to
fit, val to choose the epoch, test to report); negatives are generated (flat, gradients, noise of
several kinds, 1/f noise, shapes, text, checkerboards, colour pictures), each kind with its own seeds
for train, val and test. A photo-like scene generator that training never sees stands in for natural
photographs, of which the data folder has none; scikit-image's and matplotlib's bundled photographs are
the real ones (:func:`real_pictures`). :func:`covidlens.modality.train.gather` reads them all.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from covidlens.data.datasets import group_split, load_dataset
from covidlens.data.intensity import display_image, to_uint8
from covidlens.data.io import Scan, read_scan
from covidlens.modality import check as mc

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



#: The registered sets read as they are: (kind, set name).
REGISTERED_SETS = (("ct", "covid-ct"), ("ct", "medseg-infnet"), ("cxr", "covid19-radiography"),
                   ("cxr", "lung-masks-shenzhen-montgomery"), ("cxr", "sutd-3class-patient"),
                   ("cxr", "covid-chestxray"))


def real_sources(root: Path) -> list[tuple[str, str, list]]:
    """(kind, set name, samples) with each sample's split; see the module docstring for the choices."""
    sources = []
    for kind, name in REGISTERED_SETS:
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
