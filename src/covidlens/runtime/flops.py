"""Floating-point operations of one forward pass, counted by PyTorch's ``FlopCounterMode``."""

from __future__ import annotations

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision.*)
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula


@register_flop_formula(torch.ops.torchvision.deform_conv2d)
def _deform_conv_flops(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """FlopCounterMode has no rule for torchvision's deformable convolution and would count 0; count
    it as the plain convolution of the same shape (the bilinear sampling it adds is left out)."""
    out_channels, in_per_group, kh, kw = weight_shape
    n, _, h, w = out_shape
    return 2 * n * h * w * out_channels * in_per_group * kh * kw


def count_flops(model: torch.nn.Module, input_size: int, in_channels: int = 3) -> int:
    """FLOPs of ``model`` on one ``in_channels x input_size x input_size`` image (a multiply-add is 2).

    Papers usually quote multiply-adds as "FLOPs": that is half this number (see :func:`gmacs`).
    """
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, in_channels, input_size, input_size, device=device))
    return counter.get_total_flops()


def gmacs(model: torch.nn.Module, input_size: int, in_channels: int = 3) -> float:
    """Billions of multiply-adds per image: the figure papers quote as GFLOPs."""
    return count_flops(model, input_size, in_channels) / 2e9
