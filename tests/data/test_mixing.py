import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from covidlens.data.mixing import GaussianNoise, MixingCollate, cutmix, mixup, mosaic
from covidlens.errors import CovidlensError


def batch(b=4, k=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, size, size, generator=g)
    y = F.one_hot(torch.arange(b) % k, k).float()
    return x, y


def test_mixup_is_a_convex_combination_of_images_and_labels():
    x, y = batch()
    x0, y0 = x.clone(), y.clone()
    mx, my, info = mixup(x, y, 0.4, np.random.default_rng(1), return_info=True)
    lam, index = info["lam"], info["index"]
    assert 0.0 <= lam <= 1.0 and sorted(index.tolist()) == [0, 1, 2, 3]
    assert torch.allclose(mx, lam * x + (1 - lam) * x[index])
    assert torch.allclose(my, lam * y + (1 - lam) * y[index])
    assert torch.allclose(my.sum(1), torch.ones(4))
    assert torch.equal(x, x0) and torch.equal(y, y0)  # inputs untouched


def test_mixup_is_reproducible_from_the_generator_and_alpha_zero_is_identity():
    x, y = batch()
    a = mixup(x, y, 1.0, np.random.default_rng(7))
    b = mixup(x, y, 1.0, np.random.default_rng(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    mx, my = mixup(x, y, 0.0, 3)
    assert torch.equal(mx, x) and torch.equal(my, y)


@pytest.mark.parametrize("seed", range(6))
def test_cutmix_label_weight_is_the_pasted_area_fraction(seed):
    x, y = batch(size=32)
    mx, my, info = cutmix(x, y, 1.0, np.random.default_rng(seed), return_info=True)
    index = info["index"]
    y1, y2, x1, x2 = info["box"]
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[y1:y2, x1:x2] = True
    area = inside.float().mean().item()
    assert info["area"] == pytest.approx(area)
    assert torch.equal(mx[:, :, inside], x[index][:, :, inside])
    assert torch.equal(mx[:, :, ~inside], x[:, :, ~inside])
    assert torch.allclose(my, (1 - area) * y + area * y[index])
    assert torch.allclose(my.sum(1), torch.ones(4))


def test_cutmix_area_is_measured_after_clipping_at_the_border():
    x, y = batch(size=32)
    clipped = 0
    for seed in range(40):
        _, _, info = cutmix(x, y, 1.0, np.random.default_rng(seed), return_info=True)
        y1, y2, x1, x2 = info["box"]
        assert 0 <= y1 <= y2 <= 32 and 0 <= x1 <= x2 <= 32
        assert info["area"] == pytest.approx((y2 - y1) * (x2 - x1) / 1024)
        clipped += info["area"] < 1 - info["lam"] - 0.05
    assert clipped > 0  # some boxes did hang over the edge and the label weight shrank with them


def test_mosaic_tiles_are_resized_sources_and_labels_weigh_tile_areas():
    x, y = batch(b=4, size=32)
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


def test_mosaic_of_identical_labels_keeps_the_label():
    x = torch.randn(3, 1, 40, 40)
    y = torch.tensor([[0.0, 1.0]] * 3)
    _, my = mosaic(x, y, 0)
    assert torch.allclose(my, y)


def _samples(n=4, k=3):
    return [(torch.full((1, 8, 8), float(i)), torch.tensor(i % k)) for i in range(n)]


def test_collate_with_probability_zero_returns_the_plain_batch_one_hot():
    samples = _samples()
    for method in ("mixup", "cutmix", "mosaic"):
        images, targets = MixingCollate(num_classes=3, method=method, prob=0.0, seed=0)(samples)
        assert torch.equal(images, torch.stack([s[0] for s in samples]))
        assert torch.equal(targets, F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float())


@pytest.mark.parametrize("method", ["mixup", "cutmix", "mosaic"])
def test_collate_with_probability_one_mixes_and_keeps_distributions(method):
    collate = MixingCollate(num_classes=3, method=method, prob=1.0, alpha=1.0, seed=0)
    images, targets = collate(_samples())
    assert images.shape == (4, 1, 8, 8) and targets.shape == (4, 3)
    assert torch.allclose(targets.sum(1), torch.ones(4))
    assert not torch.equal(targets, F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float())


def test_collate_works_as_a_dataloader_collate_fn():
    data = TensorDataset(torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 0, 1, 0, 1]))
    loader = DataLoader(data, batch_size=3, collate_fn=MixingCollate(2, "cutmix", prob=1.0, seed=1))
    for images, targets in loader:
        assert images.shape == (3, 1, 8, 8) and targets.shape == (3, 2)
        assert torch.allclose(targets.sum(1), torch.ones(3))


def test_collate_rejects_bad_settings():
    with pytest.raises(CovidlensError, match="mixup, cutmix, mosaic"):
        MixingCollate(2, method="fmix")
    with pytest.raises(CovidlensError, match=r"\[0, 1\]"):
        MixingCollate(2, prob=1.5)
    with pytest.raises(CovidlensError, match="num_classes >= 2"):
        MixingCollate(1)


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
