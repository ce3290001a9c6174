import numpy as np
import pytest

from covidlens.explain.measure import energy_in_mask, mean_ci, pointing_hit, rank_correlation, wilson_interval


def _mask():
    mask = np.zeros((40, 40), bool)
    mask[10:20, 10:20] = True
    return mask


def test_pointing_game_hits_inside_and_near_the_mask_only():
    mask = _mask()
    heat = np.zeros((40, 40))
    heat[15, 15] = 1
    assert pointing_hit(heat, mask, 0)[0]
    heat[:] = 0
    heat[22, 15] = 1  # 3 px below the mask
    assert not pointing_hit(heat, mask, 0)[0] and pointing_hit(heat, mask, 3)[0]
    heat[:] = 0
    heat[35, 35] = 1
    hit, chance = pointing_hit(heat, mask, 0)
    assert not hit and chance == pytest.approx(100 / 1600)


def test_flat_map_scores_the_mask_share_and_a_focused_map_scores_one():
    mask = _mask()
    share, area = energy_in_mask(np.ones((40, 40)), mask)
    assert share == pytest.approx(area) == pytest.approx(100 / 1600)
    assert energy_in_mask(mask.astype(float), mask)[0] == pytest.approx(1.0)


def test_rank_correlation_and_intervals():
    rng = np.random.default_rng(0)
    a = rng.random((20, 20))
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert abs(rank_correlation(a, rng.random((20, 20)))) < 0.2
    low, high = wilson_interval(30, 40)
    assert low < 0.75 < high and 0 <= low and high <= 1
    m, lo, hi = mean_ci([0.2, 0.4, 0.6, 0.8])
    assert m == pytest.approx(0.5) and lo <= m <= hi


def test_empty_map_is_a_miss_and_has_no_correlation():
    mask = _mask()
    empty = np.zeros((40, 40))
    mask[0, 0] = True  # the argmax of an all-zero map would be (0, 0)
    assert pointing_hit(empty, mask, 0)[0] is False
    assert np.isnan(rank_correlation(empty, np.random.default_rng(0).random((40, 40))))
