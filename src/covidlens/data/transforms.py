"""The two transform presets: one for training, one for evaluation and prediction.

Both take the grey ``PIL.Image`` that :func:`covidlens.data.io.read_image` returns and give a
normalised ``in_channels x size x size`` tensor (the grey channel repeated for ImageNet models).
"""

from __future__ import annotations

import inspect

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2 as T

from covidlens.data.mixing import GaussianNoise


class _ToChannels:
    def __init__(self, channels: int):
        self.channels = channels

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(self.channels, -1, -1).contiguous() if x.shape[0] != self.channels else x


#: What the ``region`` preprocessing step keeps of an image (see covidlens.checkpoint.PREPROCESSING_CHOICES).
REGIONS = ("whole", "body")


def region_step(region: str) -> list:
    """The first step of every classification preset: nothing for ``whole``, :class:`BodyCrop` for ``body``."""
    from covidlens.data.body import BodyCrop
    from covidlens.errors import CovidlensError

    if region not in REGIONS:
        raise CovidlensError(f"region must be one of {', '.join(REGIONS)}, got {region!r}.")
    return [BodyCrop()] if region == "body" else []


class RandomDownscale:
    """With probability ``p``, shrink a tensor image by a factor drawn from [``min_scale``, 1] (antialiased);
    the preset's later resize brings it back to the input size, so the image loses detail, as one
    printed small in a paper or saved at a lower resolution does. In COVID-CT the two classes differ in
    typical size, so a model that reads resolution reads the source."""

    def __init__(self, p: float, min_scale: float):
        self.p, self.min_scale = p, min_scale

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(())) >= self.p:
            return x
        scale = self.min_scale + (1.0 - self.min_scale) * float(torch.rand(()))
        h, w = x.shape[-2:]
        return T.functional.resize(x, [max(8, round(h * scale)), max(8, round(w * scale))], antialias=True)

    def __repr__(self) -> str:
        return f"RandomDownscale(p={self.p}, min_scale={self.min_scale})"


def _augment_by_name(preset: type, augment) -> dict:
    """The keyword arguments of ``preset`` that ``augment`` (a training config's ``augment`` section,
    or any object with those attributes) names, taken by name: a field added to both is picked up
    without a positional list to keep in order."""
    given = {"self", "size", "mean", "std", "in_channels", "region"}
    names = [n for n in inspect.signature(preset.__init__).parameters if n not in given]
    return {n: getattr(augment, n) for n in names if hasattr(augment, n)}


class TrainPreset:
    """Seed 000's augmentation: random resized crop (scale >= 0.5), horizontal flip, brightness and
    contrast jitter of 0.2, plus optional small rotations, translations and Gaussian noise.

    ``region`` is applied first, as in :class:`EvalPreset`. ``jpeg_prob`` re-encodes that share of the
    training images as JPEG at a random quality in ``jpeg_quality`` before anything else: in COVID-CT
    most COVID slices are PNG and half the others JPEG, so compression is a source cue; a model that
    sees both kinds in both classes cannot lean on it. ``downscale_prob`` shrinks that share of the
    images by up to ``downscale_min`` (:class:`RandomDownscale`) for the same reason with resolution.
    """

    def __init__(
        self,
        size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        in_channels: int = 3,
        crop_scale: float = 0.5,
        hflip: float = 0.5,
        brightness: float = 0.2,
        contrast: float = 0.2,
        rotation: float = 0.0,
        translate: float = 0.0,
        noise_std: float = 0.0,
        region: str = "whole",
        jpeg_prob: float = 0.0,
        jpeg_quality: tuple[int, int] = (60, 95),
        downscale_prob: float = 0.0,
        downscale_min: float = 0.5,
    ):
        augment = _augment_steps(size, crop_scale, hflip, brightness, contrast, rotation, translate)
        source = [T.RandomApply([T.JPEG(tuple(jpeg_quality))], p=jpeg_prob)] if jpeg_prob > 0 else []
        if downscale_prob > 0:
            source.append(RandomDownscale(downscale_prob, downscale_min))
        self.transform = T.Compose([*region_step(region), T.PILToTensor(), *source, *augment,
                                    _image_tail(in_channels, mean, std, noise_std)])

    @classmethod
    def from_config(cls, augment, size: int, mean: tuple[float, ...], std: tuple[float, ...],
                    in_channels: int = 3, region: str = "whole") -> "TrainPreset":
        """The preset of a training config: every augmentation setting taken from ``augment`` by name."""
        settings = _augment_by_name(cls, augment)
        if isinstance(settings.get("jpeg_quality"), list):
            settings["jpeg_quality"] = tuple(settings["jpeg_quality"])
        return cls(size, mean, std, in_channels, region=region, **settings)

    def __call__(self, image):
        return self.transform(image)


class EvalPreset:
    """Resize the whole slice (or, with ``region="body"``, the body cut out of it) to ``size x size``
    (no crop beyond that: lesions can sit at the edge of a figure)."""

    def __init__(self, size: int, mean: tuple[float, ...], std: tuple[float, ...], in_channels: int = 3,
                 region: str = "whole"):
        self.transform = T.Compose(
            [
                *region_step(region),
                T.PILToTensor(),
                T.Resize((size, size), antialias=True),
                T.ToDtype(torch.float32, scale=True),
                _ToChannels(in_channels),
                T.Normalize(mean, std),
            ]
        )

    def __call__(self, image):
        return self.transform(image)


def _augment_steps(size, crop_scale, hflip, brightness, contrast, rotation, translate) -> list:
    """Seed 000's augmentation steps, shared by the classification and segmentation presets."""
    steps = [T.RandomResizedCrop((size, size), scale=(crop_scale, 1.0), antialias=True)]
    if hflip > 0:
        steps.append(T.RandomHorizontalFlip(hflip))
    if rotation > 0 or translate > 0:
        steps.append(T.RandomAffine(degrees=rotation, translate=(translate, translate) if translate else None))
    if brightness > 0 or contrast > 0:
        steps.append(T.ColorJitter(brightness=brightness, contrast=contrast))
    return steps


def _image_tail(in_channels: int, mean, std, noise_std: float = 0.0) -> T.Compose:
    """Image-only end of every preset: scale to [0, 1], channels, normalisation, optional noise."""
    steps = [T.ToDtype(torch.float32, scale=True), _ToChannels(in_channels), T.Normalize(mean, std)]
    if noise_std > 0:
        steps.append(GaussianNoise(noise_std))
    return T.Compose(steps)


def _pair(image, mask) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    return tv_tensors.Image(T.functional.pil_to_tensor(image)), tv_tensors.Mask(torch.as_tensor(mask, dtype=torch.int64))


class SegmentationTrainPreset:
    """Augmentation that moves a slice and its mask together (torchvision v2 with ``tv_tensors.Mask``).

    The geometric steps (random resized crop, horizontal flip, optional affine) draw their random
    parameters once per call and apply them to image and mask alike, the mask with nearest-neighbour
    interpolation so it keeps class indices; brightness, contrast and noise change the image only.
    Takes the grey ``PIL.Image`` and its ``H x W`` integer mask; gives an ``in_channels x size x size``
    float tensor and a ``size x size`` int64 mask.
    """

    def __init__(
        self,
        size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        in_channels: int = 3,
        crop_scale: float = 0.5,
        hflip: float = 0.5,
        brightness: float = 0.2,
        contrast: float = 0.2,
        rotation: float = 0.0,
        translate: float = 0.0,
        noise_std: float = 0.0,
    ):
        # v2 applies the geometric steps to image and Mask alike and leaves the Mask out of ColorJitter.
        self.joint = T.Compose(_augment_steps(size, crop_scale, hflip, brightness, contrast, rotation, translate))
        self.tail = _image_tail(in_channels, mean, std, noise_std)

    @classmethod
    def from_config(cls, augment, size: int, mean: tuple[float, ...], std: tuple[float, ...],
                    in_channels: int = 3) -> "SegmentationTrainPreset":
        """The preset of a training config: every augmentation setting taken from ``augment`` by name."""
        return cls(size, mean, std, in_channels, **_augment_by_name(cls, augment))

    def __call__(self, image, mask) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.joint(*_pair(image, mask))
        return self.tail(x.as_subclass(torch.Tensor)), y.as_subclass(torch.Tensor)


class SegmentationEvalPreset:
    """:class:`EvalPreset` for the image (whole slice resized, no crop) and a nearest-neighbour resize
    of the mask to the same ``size x size``, for validation during training."""

    def __init__(self, size: int, mean: tuple[float, ...], std: tuple[float, ...], in_channels: int = 3):
        self.resize = T.Resize((size, size), antialias=True)
        self.tail = _image_tail(in_channels, mean, std)

    def __call__(self, image, mask) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.resize(*_pair(image, mask))
        return self.tail(x.as_subclass(torch.Tensor)), y.as_subclass(torch.Tensor)
