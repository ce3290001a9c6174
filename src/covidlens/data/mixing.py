"""Batch-level mixing augmentations (MixUp, CutMix, Mosaic) and per-image Gaussian noise.

Seed 000 (sections 2.4.1, 2.4.2 and 3.2) trains with MixUp and describes CutMix and Mosaic; it
also lists Gaussian noise among the single-image augmentations. MixUp and CutMix are
``torchvision.transforms.v2.MixUp`` / ``CutMix``; Mosaic (which torchvision lacks) and the noise are
ours. All three mixers take a batch of images ``x`` (``B x C x H x W``, floating point) and soft
targets ``y`` (``B x K``, rows summing to 1 for one-hot or already-mixed labels), never modify their
inputs and return ``(mixed_x, mixed_y)`` whose label weights are the pixel weights actually applied.

torchvision draws its parameters from torch's global generator; :func:`mixup` and :func:`cutmix`
given an integer ``seed`` run it inside ``torch.random.fork_rng`` seeded with it, so the result is
reproducible and the caller's global random stream is left where it was.

:class:`MixingCollate` wraps ``torch.utils.data.default_collate`` so that a ``DataLoader`` yields
``(images, soft_targets)`` with one method applied to a batch with a given probability.

Targets are soft ``B x K`` class distributions. A binary model with one logit (``num_classes=1``)
can train on them with ``binary_cross_entropy_with_logits(logit, y[:, positive_index])``; a
K-logit model with ``cross_entropy(logits, y)`` (soft-label form).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate, get_worker_info
from torchvision.transforms import v2

from covidlens.errors import CovidlensError

__all__ = ["mixup", "cutmix", "mosaic", "MixingCollate", "GaussianNoise", "MIXING_METHODS"]


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 4 or not torch.is_floating_point(x):
        raise ValueError(f"images must be a floating-point B x C x H x W batch, got {x.dtype} {tuple(x.shape)}")
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"targets must be B x K with B = {x.shape[0]}, got shape {tuple(y.shape)}")
    if not torch.is_floating_point(y):
        raise ValueError("targets must be soft (floating point) B x K; use F.one_hot(labels, K).float()")


def _check_alpha(alpha: float) -> None:
    if not alpha > 0:
        raise CovidlensError(
            f"the mixing alpha (Beta parameter) must be positive, got {alpha}; "
            "to train without mixing set the method to none."
        )


@contextlib.contextmanager
def _torch_seeded(seed: int | None) -> Iterator[None]:
    """Run torchvision's draws from a private global-generator state when ``seed`` is given."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, seed: int | None = None):
    """MixUp (Zhang et al. 2018) by ``torchvision.transforms.v2.MixUp``: one ``lam ~ Beta(alpha, alpha)``
    per batch, ``x'_i = lam x_i + (1 - lam) x_j`` and ``y'_i = lam y_i + (1 - lam) y_j``.

    torchvision pairs samples by their order in the batch (today each with its neighbour,
    ``j = i - 1`` cyclically), so the pairs are random only when the batch comes shuffled, as the
    training loader's batches do.
    ``seed`` makes the draw reproducible (see the module docstring); ``None`` draws from the global
    generator as torchvision does.
    """
    _check(x, y)
    _check_alpha(alpha)
    with _torch_seeded(seed):
        return v2.MixUp(alpha=alpha)(x, y)


def cutmix(x: torch.Tensor, y: torch.Tensor, alpha: float, seed: int | None = None):
    """CutMix (Yun et al. 2019) by ``torchvision.transforms.v2.CutMix``: one box per batch, sized from
    ``lam ~ Beta(alpha, alpha)`` and centred at a uniform pixel, clipped to the image; that region of
    image ``i`` is replaced by the same region of its partner ``j`` (paired by batch order as in
    :func:`mixup`, so shuffle the batch). The label weight of the pasted image is the exact pasted area fraction after
    clipping, ``y'_i = (1 - area) y_i + area y_j``, as seed 000 section 2.4.2 asks. ``seed`` as for
    :func:`mixup`.
    """
    _check(x, y)
    _check_alpha(alpha)
    with _torch_seeded(seed):
        return v2.CutMix(alpha=alpha)(x, y)


def mosaic(
    x: torch.Tensor,
    y: torch.Tensor,
    rng: np.random.Generator | int | None = None,
    centre_range: tuple[float, float] = (0.25, 0.75),
    return_info: bool = False,
):
    """Mosaic (YOLOv4): each output image is a 2 x 2 grid of four images split at a random centre.

    For output ``i`` the four tiles (top-left, top-right, bottom-left, bottom-right) come from image
    ``i`` and from images ``p1[i]``, ``p2[i]``, ``p3[i]`` of three independent random permutations.
    The centre ``(cy, cx)`` is drawn per output image, uniformly over integer pixels within
    ``centre_range`` of the height and width (at least one pixel from each border, so all four tiles
    are non-empty). Each source image is resized whole (bilinear, antialiased) into its tile rather
    than cropped, so a lesion anywhere in a slice stays in the mosaic and the area weight is
    honest. Labels: ``y'_i = sum_t (tile area_t / (H W)) y[source_t]``, which sums to 1 for
    distributions. Randomness comes from ``rng`` (a ``numpy.random.Generator`` or an integer seed).
    With ``return_info=True`` it also returns ``sources`` (``B x 4`` indices), ``centres``
    (``B x 2``) and ``weights`` (``B x B``, the share of image ``j`` in output ``i``).
    """
    _check(x, y)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    b, _, h, w = x.shape
    if h < 2 or w < 2:
        raise ValueError("mosaic needs images of at least 2 x 2 pixels")
    lo, hi = centre_range
    sources = np.stack([np.arange(b)] + [gen.permutation(b) for _ in range(3)], axis=1)
    cys = gen.integers(max(1, int(math.floor(h * lo))), min(h - 1, int(math.ceil(h * hi))) + 1, size=b)
    cxs = gen.integers(max(1, int(math.floor(w * lo))), min(w - 1, int(math.ceil(w * hi))) + 1, size=b)
    mixed_x = torch.empty_like(x)
    weights = torch.zeros(b, b, dtype=y.dtype, device=y.device)
    for i in range(b):
        cy, cx = int(cys[i]), int(cxs[i])
        tiles = ((0, cy, 0, cx), (0, cy, cx, w), (cy, h, 0, cx), (cy, h, cx, w))
        for src, (t0, t1, l0, l1) in zip(sources[i], tiles):
            src = int(src)
            tile = F.interpolate(
                x[src : src + 1], size=(t1 - t0, l1 - l0), mode="bilinear", align_corners=False, antialias=True
            )
            mixed_x[i, :, t0:t1, l0:l1] = tile[0]
            weights[i, src] += (t1 - t0) * (l1 - l0) / float(h * w)
    mixed_y = weights @ y
    if return_info:
        centres = torch.from_numpy(np.stack([cys, cxs], axis=1))
        return mixed_x, mixed_y, {"sources": torch.from_numpy(sources), "centres": centres, "weights": weights}
    return mixed_x, mixed_y


#: Names accepted by :class:`MixingCollate`.
MIXING_METHODS = ("mixup", "cutmix", "mosaic")


class MixingCollate:
    """``DataLoader`` ``collate_fn`` that batches with ``default_collate``, turns integer labels into
    one-hot soft targets (``B x num_classes``, float) and, with probability ``prob``, applies one
    mixing ``method`` (``"mixup"``, ``"cutmix"`` or ``"mosaic"``; ``alpha`` is the Beta parameter of the
    first two).

    Samples must be ``(image, label)`` pairs; labels may be integers (0-d tensors or ints) or
    already-soft ``K``-vectors. Randomness comes from ``numpy.random.default_rng(seed)``, which per
    batch decides whether to mix and draws the seed of that batch's mix (the torch state torchvision
    draws from is forked and seeded with it, so training's own global stream is untouched). Inside a
    ``DataLoader`` worker the generator is re-seeded once per worker from ``(seed, worker seed)``, so
    workers (and epochs, whose worker seeds differ) draw different mixes while staying reproducible
    under a fixed torch seed.
    """

    def __init__(
        self,
        num_classes: int,
        method: str = "mixup",
        prob: float = 0.5,
        alpha: float = 1.0,
        seed: int | None = None,
    ):
        if method not in MIXING_METHODS:
            raise CovidlensError(f"unknown mixing method {method!r}; choose one of: {', '.join(MIXING_METHODS)}.")
        if not 0.0 <= prob <= 1.0:
            raise CovidlensError(f"mixing probability must lie in [0, 1], got {prob}.")
        if num_classes < 2:
            raise CovidlensError(
                f"MixingCollate needs num_classes >= 2 target columns, got {num_classes} "
                "(a binary task has 2 classes even when the model has one logit)."
            )
        if method != "mosaic":
            _check_alpha(alpha)
        self.num_classes = num_classes
        self.method = method
        self.prob = prob
        self.alpha = alpha
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._worker: int | None = None

    def _generator(self) -> np.random.Generator:
        info = get_worker_info()
        if info is not None and self._worker != info.id:
            self._worker = info.id
            entropy = [info.seed % 2**32] if self.seed is None else [self.seed, info.seed % 2**32]
            self.rng = np.random.default_rng(entropy)
        return self.rng

    def __call__(self, batch: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = default_collate(batch)
        labels = torch.as_tensor(labels)
        if labels.ndim == 1:
            targets = F.one_hot(labels.long(), self.num_classes).float()
        else:
            targets = labels.float()
        rng = self._generator()
        batch_seed = int(rng.integers(2**63))
        if rng.random() < self.prob:
            if self.method == "mixup":
                images, targets = mixup(images, targets, self.alpha, batch_seed)
            elif self.method == "cutmix":
                images, targets = cutmix(images, targets, self.alpha, batch_seed)
            else:
                images, targets = mosaic(images, targets, batch_seed)
        return images, targets


class GaussianNoise:
    """Add zero-mean Gaussian noise with standard deviation ``std`` to a tensor image (or batch).

    Seed 000 lists Gaussian noise among single-image augmentations (it distorts high-frequency
    features). Applied with probability ``p`` per call; ``generator`` (a ``torch.Generator``) makes it
    reproducible. Use it after normalisation so that ``std`` is in normalised units. The output has
    the input's dtype and device; integer tensors are rejected.
    """

    def __init__(self, std: float, p: float = 1.0, generator: torch.Generator | None = None):
        if std < 0:
            raise CovidlensError(f"noise std must be non-negative, got {std}.")
        if not 0.0 <= p <= 1.0:
            raise CovidlensError(f"noise probability must lie in [0, 1], got {p}.")
        self.std = std
        self.p = p
        self.generator = generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_floating_point(x):
            raise TypeError("GaussianNoise needs a floating-point tensor; convert with ToDtype(float32) first")
        if self.std == 0 or self.p == 0:
            return x
        if self.p < 1 and torch.rand((), generator=self.generator).item() >= self.p:
            return x
        noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device="cpu").to(x.device)
        return x + self.std * noise

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(std={self.std}, p={self.p})"
