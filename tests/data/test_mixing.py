"""Mixing is checked on indicator images: image ``n`` has a single channel ``n`` set to 1, so the mean of
channel ``j`` over a mixed image is the share of image ``j`` in its pixels, and the soft targets must
equal those pixel shares applied to the one-hot labels."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from covidlens.data.mixing import MIXING_METHODS, GaussianNoise, MixingCollate, cutmix, mixup, mosaic
from covidlens.errors import CovidlensError


def indicators(n, size=32):
    """``n`` images of ``n`` channels; image ``i`` is all ones in channel ``i`` and zero elsewhere."""
    return torch.eye(n)[:, :, None, None].expand(n, n, size, size).clone()


def pixel_shares(images):
    """``B x n``: the share of each source image in each mixed indicator image."""
    return images.mean(dim=(2, 3))


def one_hot(n, k):
    return F.one_hot(torch.arange(n) % k, k).float()


@pytest.mark.parametrize("seed", range(4))
def test_mixup_label_coefficient_is_the_pixel_coefficient(seed):
    x, y = indicators(6), one_hot(6, 3)
    x0, y0 = x.clone(), y.clone()
    mx, my = mixup(x, y, 1.0, seed)
    assert torch.equal(mx, mx[:, :, :1, :1].expand_as(mx))  # the same blend in every pixel
    w = pixel_shares(mx)
    lam = w.diagonal()
    assert torch.allclose(lam, lam[0].expand(6)) and 0.0 < lam[0] < 1.0  # one coefficient per batch
    assert ((w > 0).sum(1) == 2).all()  # each image blended with exactly one partner
    assert torch.allclose(my, w @ y)
    assert torch.allclose(my.sum(1), torch.ones(6))
    assert torch.equal(x, x0) and torch.equal(y, y0)  # inputs untouched


@pytest.mark.parametrize("seed", range(6))
def test_cutmix_label_weight_is_the_pasted_area_fraction(seed):
    x, y = indicators(5, size=24), one_hot(5, 2)
    mx, my = cutmix(x, y, 1.0, seed)
    assert ((mx == 0) | (mx == 1)).all() and torch.equal(mx.sum(1), torch.ones(5, 24, 24))  # pasted, not blended
    pasted = mx[0, 0] == 0  # pixels image 0 lost to its partner
    assert pasted.any()
    rows, cols = torch.nonzero(pasted, as_tuple=True)
    box = torch.zeros_like(pasted)
    box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
    assert torch.equal(pasted, box)  # a rectangle
    for i in range(5):
        assert torch.equal(mx[i, i] == 0, box)  # the same box in every image
    area = box.float().mean()
    w = pixel_shares(mx)
    assert torch.allclose(w.diagonal(), (1 - area).expand(5))
    assert torch.allclose(my, w @ y)
    assert torch.allclose(my.sum(1), torch.ones(5))


def test_cutmix_weight_follows_the_box_clipped_at_the_border():
    x, y = indicators(4, size=20), one_hot(4, 2)
    clipped = 0
    for seed in range(30):
        mx, my = cutmix(x, y, 1.0, seed)
        assert torch.allclose(my, pixel_shares(mx) @ y)
        pasted = mx[0, 0] == 0
        touches_border = pasted[0].any() or pasted[-1].any() or pasted[:, 0].any() or pasted[:, -1].any()
        clipped += bool(touches_border)
    assert clipped > 0  # some boxes did hang over the edge, and the weights above still matched


def test_mixup_and_cutmix_are_reproducible_and_leave_the_global_stream_alone():
    x, y = indicators(4), one_hot(4, 2)
    for mix in (mixup, cutmix):
        torch.manual_seed(123)
        expected_next = torch.rand(3)
        torch.manual_seed(123)
        a = mix(x, y, 1.0, 7)
        assert torch.equal(torch.rand(3), expected_next)
        b = mix(x, y, 1.0, 7)
        c = mix(x, y, 1.0, 8)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[1], c[1])


def test_mixing_rejects_a_non_positive_alpha_and_integer_images():
    x, y = indicators(2), one_hot(2, 2)
    for mix in (mixup, cutmix):
        with pytest.raises(CovidlensError, match="alpha"):
            mix(x, y, 0.0, 0)
        with pytest.raises(ValueError, match="floating-point"):
            mix(x.to(torch.uint8), y, 1.0, 0)


def test_mosaic_tiles_are_resized_sources_and_labels_weigh_tile_areas():
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = one_hot(4, 3)
    mx, my, info = mosaic(x, y, np.random.default_rng(3), return_info=True)
    assert mx.shape == x.shape
    assert torch.allclose(my.sum(1), torch.ones(4))
    sources, centres = info["sources"], info["centres"]
    for i in range(4):
        cy, cx = centres[i].tolist()
        assert 8 <= cy <= 24 and 8 <= cx <= 24
        assert sources[i, 0] == i
        tiles = ((0, cy, 0, cx), (0, cy, cx, 32), (cy, 32, 0, cx), (cy, 32, cx, 32))
        expected = torch.zeros(3)
        for src, (t0, t1, l0, l1) in zip(sources[i].tolist(), tiles):
            expected += (t1 - t0) * (l1 - l0) / 1024 * y[src]
            resized = F.interpolate(x[src : src + 1], size=(t1 - t0, l1 - l0), mode="bilinear", antialias=True)
            assert torch.allclose(mx[i, :, t0:t1, l0:l1], resized[0])
        assert torch.allclose(my[i], expected)


def test_mosaic_labels_are_the_pixel_shares():
    x, y = indicators(5), one_hot(5, 3)
    mx, my = mosaic(x, y, 11)
    assert torch.allclose(my, pixel_shares(mx) @ y, atol=1e-6)


def loader(method, k, prob=1.0, seed=0, n=12, batch_size=4, num_workers=0):
    data = TensorDataset(indicators(n), torch.arange(n) % k)
    collate = MixingCollate(num_classes=k, method=method, prob=prob, alpha=1.0, seed=seed)
    return DataLoader(data, batch_size=batch_size, collate_fn=collate, num_workers=num_workers)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("method", MIXING_METHODS)
def test_collate_targets_are_the_pixel_shares_and_every_batch_is_mixed(method, k):
    labels = one_hot(12, k)
    for b, (images, targets) in enumerate(loader(method, k)):
        assert images.shape == (4, 12, 32, 32) and images.dtype == torch.float32
        assert targets.shape == (4, k) and targets.dtype == torch.float32
        w = pixel_shares(images)
        assert torch.allclose(targets, w @ labels, atol=1e-6)
        assert torch.allclose(targets.sum(1), torch.ones(4))
        plain = torch.eye(12)[4 * b : 4 * b + 4]
        assert not torch.allclose(w, plain)  # prob=1 changed the batch


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("method", MIXING_METHODS)
def test_collate_with_probability_zero_returns_the_plain_batch_one_hot(method, k):
    for b, (images, targets) in enumerate(loader(method, k, prob=0.0)):
        assert torch.equal(images, indicators(12)[4 * b : 4 * b + 4])
        assert torch.equal(targets, one_hot(12, k)[4 * b : 4 * b + 4])


def run(method, seed, num_workers=0):
    return [batch for batch in loader(method, 3, seed=seed, num_workers=num_workers)]


@pytest.mark.parametrize("method", MIXING_METHODS)
def test_collate_is_reproducible_for_a_seed_and_differs_for_another(method):
    first, again, other = run(method, 5), run(method, 5), run(method, 6)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert any(not torch.equal(a[1], b[1]) for a, b in zip(first, other))


def test_collate_in_workers_is_reproducible_and_each_worker_draws_its_own_mixes():
    def mixup_coefficients():
        torch.manual_seed(0)  # worker seeds come from the torch stream, as under Lightning's seed_everything
        batches = run("mixup", 5, num_workers=2)
        return [pixel_shares(images)[0, 4 * b].item() for b, (images, _) in enumerate(batches)]

    first = mixup_coefficients()
    assert first == mixup_coefficients()
    assert len(set(first)) == 3  # batches 0 and 2 (worker 0) and 1 (worker 1) all differ


def test_collate_leaves_the_global_torch_stream_alone():
    samples = [(img, torch.tensor(i % 2)) for i, img in enumerate(indicators(4))]
    for method in MIXING_METHODS:
        torch.manual_seed(1)
        expected_next = torch.rand(3)
        torch.manual_seed(1)
        MixingCollate(2, method, prob=1.0, seed=0)(samples)
        assert torch.equal(torch.rand(3), expected_next)


def test_collate_accepts_soft_labels():
    soft = torch.tensor([[0.7, 0.3], [0.2, 0.8]])
    samples = [(img, soft[i]) for i, img in enumerate(indicators(2))]
    images, targets = MixingCollate(2, "cutmix", prob=0.0, seed=0)(samples)
    assert torch.equal(targets, soft) and torch.equal(images, indicators(2))


def test_collate_rejects_bad_settings():
    with pytest.raises(CovidlensError, match="mixup, cutmix, mosaic"):
        MixingCollate(2, method="fmix")
    with pytest.raises(CovidlensError, match=r"\[0, 1\]"):
        MixingCollate(2, prob=1.5)
    with pytest.raises(CovidlensError, match="num_classes >= 2"):
        MixingCollate(1)
    with pytest.raises(CovidlensError, match="alpha"):
        MixingCollate(2, "mixup", alpha=0.0)
    MixingCollate(2, "mosaic", alpha=0.0)  # mosaic has no Beta draw


def test_gaussian_noise_adds_noise_of_the_given_std():
    x = torch.zeros(1, 64, 64)
    noisy = GaussianNoise(0.1, generator=torch.Generator().manual_seed(0))(x)
    assert noisy.shape == x.shape and noisy.dtype == x.dtype
    assert abs(noisy.mean().item()) < 0.01
    assert noisy.std().item() == pytest.approx(0.1, rel=0.05)
    assert torch.equal(GaussianNoise(0.0)(x), x)
    assert torch.equal(GaussianNoise(0.5, p=0.0)(x), x)
    a = GaussianNoise(0.2, generator=torch.Generator().manual_seed(5))(x)
    b = GaussianNoise(0.2, generator=torch.Generator().manual_seed(5))(x)
    assert torch.equal(a, b)
    with pytest.raises(TypeError):
        GaussianNoise(0.1)(torch.zeros(1, 4, 4, dtype=torch.uint8))
