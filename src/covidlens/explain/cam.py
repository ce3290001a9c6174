"""Heat maps that show which pixels drove a classifier's decision.

Grad-CAM and Grad-CAM++ come from the ``grad-cam`` package (pytorch-grad-cam); classic CAM (Zhou et al.
2016), which weights the last feature maps by the classifier's own weights, is computed here because it
needs no gradient. What is covidlens's own: which layer to look at (each registered model declares its
``target_layer``), which score to explain for single-logit binary models, and the normalisation to a map
in [0, 1] at the size of the original image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from covidlens.checkpoint import Checkpoint
from covidlens.errors import CovidlensError
from covidlens.data.body import body_crop_and_box
from covidlens.data.transforms import EvalPreset
from covidlens.inference import batch_probabilities, decide

METHODS = ("gradcam", "gradcam++", "cam")


@dataclass
class Explanation:
    heat: np.ndarray  # H x W in [0, 1], the original image's size
    image: Image.Image  # the grey image as read
    explained_class: str
    probability: float  # P(explained class)
    predicted_class: str
    method: str
    layer: str


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called ``name``; an unknown name gives the valid ones near the top of the model."""
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    shallow = [n for n in modules if n and n.count(".") <= 1]
    raise CovidlensError(
        f"target layer {name!r} is not a layer of this model; valid names include: {', '.join(shallow)}."
    )


def _classic_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, class_index: int, binary: bool) -> np.ndarray:
    """For a single-logit model, ``class_index`` 1 explains the logit and 0 its negation."""
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o.detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    acts = store["a"][0]  # C x h x w
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1].in_features != acts.shape[0]:
        raise CovidlensError(
            "classic CAM needs global pooling followed by one linear layer over the target layer's channels; "
            "this model or layer does not have that shape, use gradcam or gradcam++."
        )
    weights = linears[-1].weight.detach()
    w = (weights[0] if class_index == 1 else -weights[0]) if binary else weights[class_index]
    cam = torch.einsum("c,chw->hw", w, acts)
    return F.relu(cam).numpy()


def heat_map(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    layer_name: str,
    class_index: int,
    binary: bool,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Map for one input tensor (1 x C x H x W), resized once to ``size`` (default H x W) and scaled
    to [0, 1]. ``binary`` marks a single-logit model, whose ``class_index`` is 1 for its logit's class
    and 0 for the other."""
    if method not in METHODS:
        raise CovidlensError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    layer = resolve_layer(model, layer_name)
    model.eval()
    if method == "cam":
        raw = _classic_cam(model, layer, x, class_index, binary)
    else:
        from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
        from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget, ClassifierOutputTarget

        # A single-logit model: category 1 explains the logit (the positive class), 0 its negation.
        target = BinaryClassifierOutputTarget(class_index) if binary else ClassifierOutputTarget(class_index)
        cls = GradCAM if method == "gradcam" else GradCAMPlusPlus
        with cls(model=model, target_layers=[layer]) as cam:
            raw = cam(input_tensor=x, targets=[target])[0]
    raw = torch.as_tensor(np.asarray(raw, dtype=np.float32))[None, None]
    resized = F.interpolate(raw, size=size or x.shape[-2:], mode="bilinear", align_corners=False)[0, 0].numpy()
    return _unit(resized)


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(a.astype(np.float32), nan=0.0)
    a = a - a.min()
    top = a.max()
    return a / top if top > 0 else a


def resolve_class(info, target_class: str | int) -> int:
    """Index of a class given by name or number; one sentence listing the classes otherwise."""
    if isinstance(target_class, int) or str(target_class).isdigit():
        index = int(target_class)
    elif target_class in info.classes:
        index = info.classes.index(target_class)
    else:
        raise CovidlensError(f"unknown class {target_class!r}; this model's classes are {', '.join(info.classes)}.")
    if not 0 <= index < len(info.classes):
        raise CovidlensError(f"class index {index} is out of range for classes {', '.join(info.classes)}.")
    return index


def explain_image(
    ckpt: Checkpoint,
    image: Image.Image,
    method: str = "gradcam",
    target_layer: str | None = None,
    target_class: str | int | None = None,
) -> Explanation:
    """Explain one grey image with a loaded checkpoint; the predicted class unless another is named."""
    from covidlens.models import get_model_spec

    info = ckpt.info
    classes = info.classes
    layer_name = target_layer or get_model_spec(info.model).target_layer
    seen, box = image, (slice(0, image.height), slice(0, image.width))
    if info.preprocessing.get("region") == "body":
        # The model sees only the body cut out of the slice: explain that, then put the map back in
        # place, so that nothing outside the body is drawn as evidence.
        seen, box = body_crop_and_box(image)
    x = EvalPreset(info.input_size, tuple(info.mean), tuple(info.std), info.in_channels)(seen)[None]
    probs = batch_probabilities(ckpt.model, x, info)[0].numpy()
    predicted = classes.index(decide(probs, info, info.threshold))
    index = predicted if target_class is None else resolve_class(info, target_class)
    binary = info.num_outputs == 1
    logit_index = int(index == info.positive_index) if binary else index
    heat = np.zeros((image.height, image.width), np.float32)
    heat[box] = heat_map(ckpt.model, x, method, layer_name, logit_index, binary, (seen.height, seen.width))
    return Explanation(
        heat=heat,
        image=image,
        explained_class=info.classes[index],
        probability=float(probs[index]),
        predicted_class=info.classes[predicted],
        method=method,
        layer=layer_name,
    )
