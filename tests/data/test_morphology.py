"""The shape rules the body cut-out and the lung masks share: Otsu's split and a piece's filled hull."""

import numpy as np

from covidlens.data.morphology import filled_convex_hull, otsu_threshold


def test_otsu_splits_two_grey_levels_between_them():
    grey = np.full((32, 32), 40, dtype=np.uint8)
    grey[:, 16:] = 200
    threshold = otsu_threshold(grey)
    assert 40 < threshold < 200
    assert ((grey < threshold) == (grey == 40)).all()


def test_hull_fills_a_ring_and_the_notch_of_an_l():
    ring = np.zeros((20, 20), bool)
    ring[4:16, 4:16] = True
    ring[6:14, 6:14] = False
    assert filled_convex_hull(ring)[4:16, 4:16].all()

    ell = np.zeros((20, 20), bool)
    ell[2:18, 2:5] = ell[15:18, 2:18] = True
    hull = filled_convex_hull(ell)
    assert hull[14, 6] and not hull[3, 17] and (hull | ~ell).all()


def test_a_line_is_its_own_hull():
    line = np.zeros((10, 10), bool)
    line[5, 2:8] = True
    assert (filled_convex_hull(line) == line).all()
