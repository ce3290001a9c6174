"""Is this a chest CT slice, a chest X-ray, or neither? Checked before a classifier gives a verdict.

A classifier trained on CT slices answers for any picture it is given: a flat grey square or random
noise gets a confident "COVID". :func:`check_modality` says what kind of image it is first, so that
predict can refuse with one sentence (:func:`mismatch_message`) instead of a verdict.

The check is cheap rules where they are measured to be safe on every real image of ``../shared/data``
(``benchmarks/modality.py`` prints the margins), then a tiny CNN on a 64 x 64 grey thumbnail:

1. the DICOM header's Modality, where the file has one (read through :mod:`covidlens.modality.tags`);
2. too small: under :data:`MIN_SIDE` pixels on a side;
3. near-constant: grey standard deviation under :data:`MIN_STD` (a blank, a uniform CMYK square);
4. colourful: more than :data:`MAX_COLOUR_FRACTION` of the pixels lie at least :data:`COLOUR_CHROMA`
   away from the image's tint axis (paper-figure CT slices with coloured arrows and tinted radiographs
   stay far below it);
5. otherwise the CNN's three probabilities (ct, cxr, other), weights in ``modality_cnn.safetensors``.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from covidlens.data.intensity import display_image, to_uint8
from covidlens.data.io import Scan, read_scan
from covidlens.errors import CovidlensError
from covidlens.modality.tags import modality_from_header

KINDS = ("ct", "cxr", "other")
THUMBNAIL = 64
MIN_SIDE = 32
MIN_STD = 3.0
COLOUR_CHROMA = 40
MAX_COLOUR_FRACTION = 0.10

WEIGHTS = Path(__file__).with_name("modality_cnn.safetensors")

_COLOUR_MODES = {"RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}
_NAMES = {"ct": "a chest CT slice", "cxr": "a chest X-ray"}
_MODEL_NAMES = {"ct": "a CT model", "cxr": "a chest X-ray model"}


@dataclass(frozen=True)
class ModalityCheck:
    #: ``ct``, ``cxr`` or ``other``.
    kind: str
    #: The CNN's probabilities per kind; for a decision taken by a rule, 1.0 on that kind.
    probabilities: dict[str, float] = field(default_factory=dict)
    #: What decided it, in a few words (the rule, or the CNN).
    reason: str = ""


def mismatch_message(check: ModalityCheck, model_modality: str) -> str | None:
    """One sentence refusing an image that is not what the model was trained on; None when it is."""
    if check.kind == model_modality:
        return None
    model = _MODEL_NAMES.get(model_modality, f"a {model_modality} model")
    if check.kind == "other":
        return (f"this does not look like a chest CT slice or a chest X-ray ({check.reason}), "
                f"so {model.replace('a ', 'the ', 1)} gives no verdict.")
    return f"this looks like {_NAMES[check.kind]}, but the model is {model} ({check.reason}), so it gives no verdict."


def check_modality(source: str | os.PathLike | Image.Image | Scan | np.ndarray) -> ModalityCheck:
    """The kind of image ``source`` is: an image file, a PIL image in any mode, a 2-D
    :class:`~covidlens.data.io.Scan`, or a 2-D grey array (8-bit values)."""
    if isinstance(source, Scan):
        return check_scan(source)
    if isinstance(source, Image.Image):
        return check_picture(source)
    if isinstance(source, np.ndarray):
        return check_grey(np.clip(np.asarray(source, dtype=np.float32), 0, 255).astype(np.uint8))
    return check_scan(read_scan(source))


def check_scan(scan: Scan, grey: Image.Image | None = None) -> ModalityCheck:
    """The check for a scan read by :func:`~covidlens.data.io.read_scan`; ``grey`` is its display image
    when the caller already has it. Colour is measured on the file itself (the scan keeps grey only)."""
    header = modality_from_header(scan.modality)
    if header is not None:
        return ModalityCheck(header, {header: 1.0}, f"the DICOM header says Modality {scan.modality.strip().upper()}")
    grey = display_image(scan) if grey is None else grey
    colour = None
    if scan.photometric in _COLOUR_MODES and scan.path and Path(scan.path).is_file():
        with Image.open(scan.path) as picture:
            colour = _rgb(picture)
    return _check(np.asarray(grey), colour)


def check_picture(image: Image.Image) -> ModalityCheck:
    """The check for an in-memory PIL image in any mode (16-bit and float values are stretched to 8 bits
    the way :func:`~covidlens.data.io.read_image` does)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image).astype(np.float32)
        grey = to_uint8(Scan(pixels, None, "", "raw", image.mode, "", Path(), bits=16))
        return _check(grey, None)
    colour = _rgb(image) if image.mode in _COLOUR_MODES else None
    return _check(np.asarray(image.convert("L")), colour)


def check_grey(grey: np.ndarray) -> ModalityCheck:
    """The check for an 8-bit grey array (no colour information)."""
    return _check(grey, None)


def image_measures(grey: np.ndarray, colour: np.ndarray | None) -> dict[str, float]:
    """What the rules look at: the shorter side, the grey standard deviation, the colourful fraction."""
    return {
        "min_side": float(min(grey.shape[:2])),
        "std": float(grey.astype(np.float32).std()),
        "colour_fraction": colour_fraction(colour) if colour is not None else 0.0,
    }


def colour_fraction(rgb: np.ndarray) -> float:
    """Fraction of pixels at least :data:`COLOUR_CHROMA` (in 8-bit RGB units) away from the image's own
    tint axis, the line from black through its mean colour: a tinted radiograph (several in
    covid-chestxray are purple or blue) lies on that line, coloured arrows and photographs do not."""
    return float(colour_mask(rgb).mean())


def colour_mask(rgb: np.ndarray) -> np.ndarray:
    """H x W mask of the pixels :func:`colour_fraction` counts as clearly coloured (arrows, circles and
    letters drawn in colour on a grey CT figure)."""
    pixels = rgb.reshape(-1, 3).astype(np.float32)
    axis = pixels.mean(axis=0) + 1e-3
    axis /= np.linalg.norm(axis)
    off_axis = np.linalg.norm(pixels - (pixels @ axis)[:, None] * axis, axis=1)
    return (off_axis >= COLOUR_CHROMA).reshape(rgb.shape[:2])


def thumbnail(grey: np.ndarray) -> np.ndarray:
    """The CNN's input: the whole image resized to 64 x 64, values in [0, 1]."""
    image = Image.fromarray(np.ascontiguousarray(grey, dtype=np.uint8), mode="L")
    return np.asarray(image.resize((THUMBNAIL, THUMBNAIL), Image.BILINEAR, reducing_gap=2.0), np.float32) / 255.0


class ModalityNet(nn.Module):
    """Four 3 x 3 convolution blocks (8-16-32-32 channels, stride 2) and a linear layer: about 15 k weights."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 32)):
        super().__init__()
        layers, channels = [], 1
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * channels, len(KINDS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x - 0.5)
        return self.head(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))


@functools.lru_cache(maxsize=1)
def load_modality_net() -> ModalityNet:
    """The trained CNN that ships in the package (once per process), read with safetensors only.

    ``covidlens models build modality`` trains the same network with the same code
    (:mod:`covidlens.modality.train`) into the store; the check keeps using the shipped weights."""
    if not WEIGHTS.is_file():
        raise CovidlensError(f"the modality check's weights {WEIGHTS} are missing; retrain them with "
                             "'covidlens models build modality' and copy its model.safetensors there, "
                             "or pass --no-modality-check.")
    return read_modality_net(WEIGHTS)


def read_modality_net(weights: str | os.PathLike) -> ModalityNet:
    """A :class:`ModalityNet` with the weights of a safetensors file, whose tensors must match the
    network's names and shapes exactly (one sentence when they do not)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    net = ModalityNet()
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise CovidlensError(f"{weights} is not a readable safetensors file ({exc}).") from exc
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in state.items()}
    if stored != expected:
        raise CovidlensError(f"{weights} does not hold the modality CNN's weights (its tensors differ in name or shape).")
    net.load_state_dict(state)
    return net.eval()


def weights_record() -> dict:
    """The JSON sidecar of the weights: training command, data and held-out accuracies."""
    return json.loads(WEIGHTS.with_suffix(".json").read_text())


@torch.inference_mode()
def cnn_probabilities(thumbnails: np.ndarray, net: nn.Module | None = None) -> np.ndarray:
    """N x 3 probabilities (ct, cxr, other) for N thumbnails of :func:`thumbnail`."""
    net = load_modality_net() if net is None else net
    logits = net(torch.from_numpy(np.ascontiguousarray(thumbnails, np.float32))[:, None])
    return torch.softmax(logits.float(), dim=1).numpy()


def decide_by_rules(measures: dict[str, float]) -> ModalityCheck | None:
    """The rule that decides, or None when the CNN must."""
    if measures["min_side"] < MIN_SIDE:
        side = int(measures["min_side"])
        return ModalityCheck("other", {"other": 1.0}, f"only {side} pixel{'s' if side != 1 else ''} on its shorter side")
    if measures["std"] < MIN_STD:
        return ModalityCheck("other", {"other": 1.0}, "it is nearly one flat grey level")
    if measures["colour_fraction"] > MAX_COLOUR_FRACTION:
        return ModalityCheck("other", {"other": 1.0},
                             f"{measures['colour_fraction']:.0%} of its pixels are clearly coloured")
    return None


def _check(grey: np.ndarray, colour: np.ndarray | None) -> ModalityCheck:
    ruled = decide_by_rules(image_measures(grey, colour))
    if ruled is not None:
        return ruled
    p = cnn_probabilities(thumbnail(grey)[None])[0]
    kind = KINDS[int(np.argmax(p))]
    probabilities = {k: float(v) for k, v in zip(KINDS, p)}
    words = {"ct": "a CT slice", "cxr": "a chest X-ray", "other": "neither"}[kind]
    return ModalityCheck(kind, probabilities, f"the modality CNN gives P({words}) = {p.max():.2f}")


def _rgb(image: Image.Image) -> np.ndarray:
    """RGB pixels of at most 256 px on a side (enough to measure how colourful an image is)."""
    image = image.convert("RGB")
    image.thumbnail((256, 256))
    return np.asarray(image)
