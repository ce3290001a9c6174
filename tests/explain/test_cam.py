"""Explanations: shape and range, binary and multi-class heads, layer errors, and a trained tiny
model whose only cue is a bright square must point at the square."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from covidlens.checkpoint import Checkpoint, ModelInfo, load_checkpoint
from covidlens.cli import main
from covidlens.errors import CovidlensError
from covidlens.explain import METHODS, explain_image, heat_map
from covidlens.models import create_model, get_model_spec, list_models
from covidlens.models.registry import _REGISTRY, register_model


class SquareNet(nn.Module):
    """Two conv layers, global average pooling, one linear layer: CAM-shaped."""

    def __init__(self, num_classes=1):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


if "test_square_net" not in _REGISTRY:
    register_model("test_square_net", description="test-only", input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3,
                   target_layer="features.3")(lambda num_classes=1, pretrained=False: SquareNet(num_classes))


def _square_images(n, rng):
    """Noise images; the positives carry a bright 6x6 square at a random place."""
    xs, ys, boxes = [], [], []
    for i in range(n):
        img = rng.normal(0.3, 0.1, (32, 32)).clip(0, 1)
        label = i % 2
        box = None
        if label:
            r, c = rng.integers(2, 24, 2)
            img[r : r + 6, c : c + 6] = 1.0
            box = (r, c)
        xs.append(img)
        ys.append(label)
        boxes.append(box)
    return np.array(xs, np.float32), np.array(ys), boxes


@pytest.fixture(scope="module")
def square_ckpt():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    xs, ys, _ = _square_images(256, rng)
    model = SquareNet()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    x = ((torch.from_numpy(xs)[:, None] - 0.5) / 0.5).expand(-1, 3, -1, -1)
    y = torch.from_numpy(ys).float()
    for _ in range(150):
        loss = nn.functional.binary_cross_entropy_with_logits(model(x)[:, 0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    info = ModelInfo(model="test_square_net", classes=["plain", "square"], positive_class="square", input_size=32,
                     mean=[0.5] * 3, std=[0.5] * 3)
    return Checkpoint(model.eval(), info, None)


@pytest.mark.parametrize("method", METHODS)
def test_map_peaks_in_the_square_that_decides_the_class(square_ckpt, method):
    rng = np.random.default_rng(1)
    xs, ys, boxes = _square_images(12, rng)
    hits = 0
    for img, box in zip(xs[ys == 1], [b for b in boxes if b]):
        e = explain_image(square_ckpt, Image.fromarray((img * 255).astype(np.uint8)), method)
        assert e.predicted_class == "square" and e.explained_class == "square"
        r, c = np.unravel_index(np.argmax(e.heat), e.heat.shape)
        hits += (box[0] - 2 <= r < box[0] + 8) and (box[1] - 2 <= c < box[1] + 8)
    assert hits >= 5  # of 6


@pytest.mark.parametrize("method", METHODS)
def test_map_peak_moves_when_the_cue_moves(square_ckpt, method):
    """The same noise with the square in two places (row and column swapped, so a transposed or
    mirrored map fails): the peak follows the square."""
    noise = np.random.default_rng(3).normal(0.3, 0.1, (32, 32)).clip(0, 1)
    peaks = []
    for r, c in ((3, 21), (21, 3)):
        img = noise.copy()
        img[r : r + 6, c : c + 6] = 1.0
        heat = explain_image(square_ckpt, Image.fromarray((img * 255).astype(np.uint8)), method).heat
        pr, pc = np.unravel_index(np.argmax(heat), heat.shape)
        assert r - 2 <= pr < r + 8 and c - 2 <= pc < c + 8, (method, (r, c), (pr, pc))
        peaks.append((pr, pc))
    assert peaks[0] != peaks[1]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("num_classes", [1, 3])
def test_map_has_image_size_and_unit_range(method, num_classes):
    model = create_model("efficientnet_lite0", num_classes=num_classes).eval()
    x = torch.randn(1, 3, 64, 64)
    for index in range(max(num_classes, 2) if num_classes == 1 else num_classes):
        heat = heat_map(model, x, method, get_model_spec("efficientnet_lite0").target_layer, index, binary=num_classes == 1)
        assert heat.shape == (64, 64) and heat.min() >= 0 and heat.max() <= 1


@pytest.mark.parametrize("name", [n for n in list_models(task="classification") if n != "test_square_net"])
def test_gradcam_works_for_every_registered_model(name):
    model = create_model(name, num_classes=1).eval()
    heat = heat_map(model, torch.randn(1, 3, 64, 64), "gradcam", get_model_spec(name).target_layer, 1, True)
    assert heat.shape == (64, 64) and np.isfinite(heat).all()


def test_explaining_the_other_class_flips_the_evidence(square_ckpt):
    rng = np.random.default_rng(2)
    xs, ys, _ = _square_images(2, rng)
    image = Image.fromarray((xs[1] * 255).astype(np.uint8))
    pos = explain_image(square_ckpt, image, "cam", target_class="square")
    neg = explain_image(square_ckpt, image, "cam", target_class="plain")
    assert pos.probability + neg.probability == pytest.approx(1.0)
    assert np.corrcoef(pos.heat.ravel(), neg.heat.ravel())[0, 1] < 0.5


def test_wrong_target_layer_lists_valid_names(square_ckpt):
    with pytest.raises(CovidlensError, match="valid names include: features, features.0, .*fc"):
        explain_image(square_ckpt, Image.new("L", (32, 32)), "gradcam", target_layer="layer9")


def test_cam_refuses_a_model_without_a_linear_head_over_the_layer():
    model = create_model("vgg").eval()
    with pytest.raises(CovidlensError, match="classic CAM needs"):
        heat_map(model, torch.randn(1, 3, 64, 64), "cam", "features.14", 1, True)


def test_explain_cli_writes_panels_gallery_and_npy(tiny_run, covid_ct, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("102.png", "11%0.jpg"):
        (folder / name).write_bytes((covid_ct / "CT_NonCOVID" / name).read_bytes())
    (folder / "broken.png").write_text("no image")
    out = tmp_path / "out"
    # One unreadable file: the good panels are written, and the exit status says the batch was not whole.
    assert main(["explain", "--checkpoint", str(tiny_run / "model"), "--method", "gradcam++", "--npy", "--out", str(out), str(folder)]) == 1
    assert sorted(p.name for p in out.glob("*.png")) == ["102_gradcampp.png", "11%0_gradcampp.png"]
    heat = np.load(out / "102_gradcampp.npy")
    assert heat.shape == Image.open(folder / "102.png").size[::-1]
    assert "102_gradcampp.png" in (out / "index.html").read_text()
    assert "skipped" in capsys.readouterr().err
    assert main(["explain", "--checkpoint", str(tiny_run / "model"), "--target-layer", "nope", "--out", str(out), str(folder)]) == 2


def test_explain_cli_refuses_a_class_out_of_range_once(tiny_run, covid_ct, tmp_path, capsys):
    out = tmp_path / "heat"
    code = main(["explain", "--checkpoint", str(tiny_run / "model"), "--class", "5", "--out", str(out),
                 str(covid_ct / "CT_NonCOVID" / "102.png"), str(covid_ct / "CT_NonCOVID" / "11%0.jpg")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("out of range") == 1 and not (out / "index.html").exists()
