"""Overlays look the same wherever they are drawn: class tints, outlines, jet heat maps and their PNGs."""

import base64
import io

import numpy as np
from PIL import Image

from covidlens.visualize import (CLASS_COLOURS, MASK_ALPHA, draw_outline, heat_overlay, mask_overlay, outline,
                                 png_base64, png_bytes)


def test_mask_overlay_tints_each_class_and_leaves_background_grey():
    grey = np.full((8, 8), 100, np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[:2], mask[2:4] = 1, 2
    rgb = mask_overlay(grey, mask)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    for k in (1, 2):
        expected = np.clip((1 - MASK_ALPHA) * 100 + MASK_ALPHA * np.array(CLASS_COLOURS[k - 1]), 0, 255).astype(np.uint8)
        assert (rgb[mask == k] == expected).all()
    assert (rgb[mask == 0] == 100).all()


def test_outline_is_the_ring_of_a_square():
    mask = np.zeros((10, 10), bool)
    mask[2:8, 2:8] = True
    ring = outline(mask)
    assert ring.sum() == 6 * 4 - 4 and not ring[3:7, 3:7].any()
    rgb = draw_outline(mask_overlay(np.zeros((10, 10), np.uint8), np.zeros((10, 10))), mask, (40, 220, 80))
    assert (rgb[ring] == (40, 220, 80)).all() and (rgb[~ring] == 0).all()


def test_heat_overlay_is_red_where_hot_and_blue_where_cold():
    grey = np.full((4, 4), 128, np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[:2] = 1.0
    rgb = heat_overlay(grey, heat).astype(int)
    hot, cold = rgb[0, 0], rgb[3, 3]
    assert hot[0] > hot[2] and cold[2] > cold[0]


def test_png_round_trip():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert (np.asarray(Image.open(io.BytesIO(png_bytes(rgb)))) == rgb).all()
    assert base64.b64decode(png_base64(rgb)) == png_bytes(rgb)
