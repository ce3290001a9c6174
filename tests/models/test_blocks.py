import pytest
import torch
import torch.nn.functional as F
from torch import nn

from covidlens.errors import CovidlensError
from covidlens.models.blocks import (
    ATTENTION_KINDS,
    CSE,
    ECA,
    FPRM,
    SCSE,
    SE,
    SSE,
    DeformConv2d,
    DoubleConv,
    Down,
    ECAsE,
    ResDoubleConv,
    Up,
    eca_kernel_size,
    make_attention,
    pad_to,
)


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.randn(2, 16, 12, 10)


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_every_attention_keeps_shape_and_backpropagates(kind, x):
    block = make_attention(kind, 16)
    inp = x.clone().requires_grad_(True)
    out = block(inp)
    assert out.shape == x.shape
    out.sum().backward()
    assert inp.grad is not None and torch.isfinite(inp.grad).all()


@pytest.mark.parametrize(
    "block, shape",
    [(SE(16, reduction=4), (2, 16, 1, 1)), (CSE(16), (2, 16, 1, 1)), (SSE(16), (2, 1, 12, 10)), (ECA(16), (2, 16, 1, 1))],
)
def test_single_gate_attention_weights_lie_in_unit_interval_and_rescale_input(block, shape, x):
    gate = block.gate(x)
    assert gate.shape == shape
    assert (gate >= 0).all() and (gate <= 1).all()
    assert torch.allclose(block(x), x * gate)


@pytest.mark.parametrize("cls", [SCSE, ECAsE])
def test_two_gate_attention_combines_channel_and_spatial_weights(cls, x):
    add, mx = cls(16, mode="add"), cls(16, mode="max")
    mx.load_state_dict(add.state_dict())
    channel, spatial = add.gates(x)
    assert channel.shape == (2, 16, 1, 1) and spatial.shape == (2, 1, 12, 10)
    for gate in (channel, spatial):
        assert (gate >= 0).all() and (gate <= 1).all()
    assert torch.allclose(add(x), x * channel + x * spatial)
    assert torch.allclose(mx(x), x * torch.maximum(channel, spatial))


def test_unknown_combine_mode_is_rejected():
    with pytest.raises(CovidlensError, match="add, max"):
        SCSE(8, mode="mul")


def test_se_reduction_sets_the_bottleneck_width():
    assert SE(64, reduction=16).fc[0].out_features == 4
    assert CSE(64).fc[0].out_channels == 32  # cSE defaults to r = 2
    assert SE(8, reduction=16).fc[0].out_features == 1  # never below one unit


@pytest.mark.parametrize(
    "channels, k", [(1, 1), (2, 1), (16, 3), (32, 3), (64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)]
)
def test_eca_kernel_size_rule(channels, k):
    # k = nearest odd at or above int(|(log2 C + 1) / 2|)
    assert eca_kernel_size(channels) == k
    assert ECA(channels).conv.kernel_size == (k,)
    assert eca_kernel_size(channels) % 2 == 1


def test_eca_is_local_across_channels():
    """A 1-D kernel of size k lets channel c's weight depend only on channels within k // 2."""
    eca = ECA(32, kernel_size=3)
    x = torch.randn(1, 32, 4, 4)
    y = x.clone()
    y[:, 20] += 5.0
    changed = (eca.gate(x) - eca.gate(y)).abs().flatten() > 1e-7
    assert changed.nonzero().flatten().tolist() == [19, 20, 21]


def test_eca_avgmax_uses_both_poolings():
    eca = ECA(16, pooling="avgmax")
    x = torch.randn(2, 16, 6, 6)
    pooled = eca.conv(x.mean(dim=(2, 3))[:, None]) + eca.conv(x.amax(dim=(2, 3))[:, None])
    assert torch.allclose(eca.gate(x).flatten(1), torch.sigmoid(pooled[:, 0]))
    assert ECAsE(16).eca.pooling == "avgmax"


def test_factory_builds_the_named_block_and_rejects_unknown_names():
    assert isinstance(make_attention("none", 8), nn.Identity)
    assert isinstance(make_attention("SCSE", 8), SCSE)
    assert isinstance(make_attention("ecase", 8), ECAsE)
    assert make_attention("se", 64, reduction=8).fc[0].out_features == 8
    with pytest.raises(CovidlensError, match="unknown attention 'cbam'; choose one of: none, se, cse, sse, scse, eca, ecase"):
        make_attention("cbam", 8)


def test_fprm_fuses_coarse_to_fine_into_finest_resolution():
    torch.manual_seed(0)
    fprm = FPRM((32, 16, 8), 8).eval()
    feats = [torch.randn(2, 32, 3, 4), torch.randn(2, 16, 7, 9), torch.randn(2, 8, 13, 17)]
    out = fprm(feats)
    assert out.shape == (2, 8, 13, 17)
    # The coarsest (most semantic) level reaches the fine output.
    changed = [torch.randn_like(feats[0])] + feats[1:]
    assert not torch.allclose(fprm(changed), out)
    with pytest.raises(ValueError, match="expects 3"):
        fprm(feats[:2])


def _deform_inputs(b, k, h, w, groups=1):
    return torch.zeros(b, 2 * groups * k * k, h, w), torch.ones(b, groups * k * k, h, w)


@pytest.mark.parametrize("stride, bias", [(1, True), (2, False)])
def test_deform_conv_with_zero_offsets_and_unit_mask_equals_conv2d(stride, bias):
    torch.manual_seed(0)
    conv = DeformConv2d(4, 6, 3, stride=stride, bias=bias)
    x = torch.randn(2, 4, 9, 11)
    ref = F.conv2d(x, conv.weight, conv.bias, stride=stride, padding=1)
    offset, mask = _deform_inputs(2, 3, *ref.shape[-2:])
    assert torch.allclose(conv(x, offset=offset, mask=mask), ref, atol=1e-5)
    assert torch.allclose(conv(x, mask=mask), ref, atol=1e-5)  # missing offset means zeros


def test_deform_conv_integer_offset_shifts_the_sampling_grid():
    torch.manual_seed(0)
    conv = DeformConv2d(3, 5, 3, bias=False)
    x = torch.randn(1, 3, 8, 10)
    offset, mask = _deform_inputs(1, 3, 8, 10)
    offset[:, 1::2] = 1.0  # channel 2k + 1 is the x offset of kernel point k
    # Sampling every point one pixel to the right = convolving x padded by 2 on the right only.
    ref = F.conv2d(F.pad(x, (0, 2, 1, 1)), conv.weight)
    assert torch.allclose(conv(x, offset=offset, mask=mask), ref, atol=1e-5)


def test_deform_conv_starts_as_regular_grid_with_half_mask():
    torch.manual_seed(0)
    conv = DeformConv2d(4, 6, 3, bias=False)
    x = torch.randn(2, 4, 8, 8)
    offset, mask = conv.predict_offset_mask(x)
    assert offset.shape == (2, 18, 8, 8) and mask.shape == (2, 9, 8, 8)
    assert torch.all(offset == 0) and torch.allclose(mask, torch.full_like(mask, 0.5))
    assert torch.allclose(conv(x), 0.5 * F.conv2d(x, conv.weight, padding=1), atol=1e-5)
    conv.zero_grad()
    conv(x).square().sum().backward()
    assert conv.offset_conv.weight.grad.abs().sum() > 0


def test_unmodulated_deform_conv_predicts_offsets_only():
    conv = DeformConv2d(4, 4, 3, modulated=False)
    assert conv.offset_conv.out_channels == 18
    offset, mask = conv.predict_offset_mask(torch.randn(1, 4, 5, 5))
    assert mask is None
    assert conv(torch.randn(1, 4, 5, 5)).shape == (1, 4, 5, 5)


def test_double_conv_is_two_conv_bn_relu_units_in_one_flat_sequence():
    block = DoubleConv(3, 8, mid_channels=5)
    assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 2
    assert block[0].out_channels == 5 and block[3].in_channels == 5 and block[0].bias is None
    assert block[0].padding == (1, 1)
    # Keys of checkpoints written when the six layers were listed by hand.
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    assert set(block.state_dict()) == {"0.weight", "3.weight"} | {f"{i}.{p}" for i in (1, 4) for p in bn}
    assert block(torch.randn(1, 3, 9, 7)).shape == (1, 8, 9, 7)


def test_residual_double_conv_adds_a_projected_shortcut_only_when_channels_change():
    torch.manual_seed(0)
    same, wider = ResDoubleConv(8, 8).eval(), ResDoubleConv(4, 8).eval()
    assert isinstance(same.shortcut, nn.Identity)
    assert [type(m) for m in wider.shortcut] == [nn.Conv2d, nn.BatchNorm2d] and wider.shortcut[0].kernel_size == (1, 1)
    assert [type(m) for m in wider.body] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d]
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        assert torch.allclose(same(x), torch.relu(same.body(x) + x))


def test_down_halves_and_up_pads_odd_sizes_back_to_the_skip():
    down, up = Down(4, 8), Up(8, 4)
    skip = torch.randn(1, 4, 13, 9)
    deep = down(skip)
    assert deep.shape == (1, 8, 6, 4)
    assert up(deep, skip).shape == (1, 4, 13, 9)
    assert Up(8, 4, bilinear=True)(torch.randn(1, 4, 6, 4), skip).shape == (1, 4, 13, 9)
    x = torch.ones(1, 1, 2, 3)
    padded = pad_to(x, torch.zeros(1, 1, 5, 4))
    assert padded.shape == (1, 1, 5, 4) and padded.sum() == 6
    assert padded[0, 0, 1:3, 0:3].sum() == 6  # one row above, two below; the extra column on the right
