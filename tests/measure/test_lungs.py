"""Lung segmentation in Hounsfield units: a synthetic phantom, real NY-SBU DICOM slices and a real
COVID-CT-MD volume."""

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from covidlens.data.intensity import LUNG_WINDOW, window
from covidlens.errors import CovidlensError
from covidlens.measure import lesion_volume_ml, mask_area_mm2, segment_lungs_grey, segment_lungs_hu

NY_SBU = Path("ct") / "ny-sbu-dicom"
# A mid-chest slice with two clear, aerated lungs (GE, 0.81 mm pixels, 5 mm slice).
CLEAR_SLICE = "A048383/axial/19001231-30.dcm"
# The data README lists these six as abdomen only and these two as lung bases under the diaphragm.
ABDOMEN_ONLY = [
    "A027284/axial/19000925-116.dcm",
    "A027284/axial/19001231-131.dcm",
    "A058062/axial/19001231-084.dcm",
    "A058062/axial/19010108-078.dcm",
    "A062055/axial/19001127-136.dcm",
    "A062055/axial/19001228-131.dcm",
]
LUNG_BASES = ["A067967/axial/19001006-028.dcm", "A067967/axial/19001231-270.dcm"]


def _read_hu(path: Path):
    from covidlens.data.io import read_scan

    scan = read_scan(path)
    assert scan.units == "HU"
    return scan.pixels, scan.spacing


@pytest.fixture(scope="module")
def ny_sbu(data_root) -> Path:
    return data_root / NY_SBU


def _lung_slices(folder: Path) -> list[str]:
    names = sorted(str(p.relative_to(folder)) for p in folder.glob("*/axial/*.dcm"))
    return [n for n in names if n not in ABDOMEN_ONLY and n not in LUNG_BASES]


@pytest.mark.parametrize("outside_hu", [-1000.0, -850.0])
def test_phantom_keeps_vessels_and_lesions_and_drops_gas_and_outside_air(outside_hu):
    """Outside air is dropped because it reaches the image edge, not only because it is pure air:
    at -850 HU (foam padding, a noisy low-dose exterior) it looks like lung by its values."""
    spacing = (0.75, 0.75)
    rows, cols = np.mgrid[:256, :256]
    hu = np.full((256, 256), outside_hu) + 30.0 * np.sin(rows * 0.9 + cols * 1.7)
    body = ((rows - 128) / 110.0) ** 2 + ((cols - 128) / 120.0) ** 2 <= 1
    hu[body] = 40.0
    lungs = []
    for centre in (75, 181):
        lung = ((rows - 120) / 70.0) ** 2 + ((cols - centre) / 40.0) ** 2 <= 1
        hu[lung] = -850.0 + 30.0 * np.sin(rows[lung] * 1.3 + cols[lung])  # textured aerated lung
        lungs.append(lung)
    vessel = (rows - 110) ** 2 + (cols - 70) ** 2 <= 9
    lesion = (rows - 140) ** 2 + (cols - 185) ** 2 <= 100  # consolidation inside the right image lung
    gas = (rows - 215) ** 2 + (cols - 128) ** 2 <= 120  # a bowel loop: pure air inside the body
    hu[vessel] = 40.0
    hu[lesion] = -50.0
    hu[gas] = -1000.0

    mask = segment_lungs_hu(hu, spacing)

    assert mask.dtype == bool and mask.shape == hu.shape
    assert mask[vessel].all() and mask[lesion].all()
    assert not mask[gas].any()
    assert not mask[~body].any()
    either = lungs[0] | lungs[1]
    assert (mask & ~either).sum() == 0
    assert mask[either].mean() > 0.99
    assert not mask[100:140, 120:136].any()  # the mediastinum between the lungs stays out


def test_phantom_lungs_meeting_front_and_back_do_not_fill_the_mediastinum():
    """Two lungs separated only by one-pixel pleural lines in front of and behind the mediastinum:
    a closing of the whole mask would join them into a ring and fill the mediastinum as lung."""
    rows, cols = np.mgrid[:200, :200]
    hu = np.full((200, 200), -1000.0)
    hu[((rows - 100) / 90.0) ** 2 + ((cols - 100) / 95.0) ** 2 <= 1] = 40.0
    ring = ((rows - 100) / 70.0) ** 2 + ((cols - 100) / 75.0) ** 2 <= 1
    hu[ring] = -850.0
    mediastinum = ((rows - 100) / 40.0) ** 2 + ((cols - 100) / 20.0) ** 2 <= 1
    hu[mediastinum] = 40.0
    hu[:, 100] = np.where(ring[:, 100], 40.0, hu[:, 100])  # the two pleural junction lines
    mask = segment_lungs_hu(hu, (0.75, 0.75))
    assert mask[ring & ~mediastinum].mean() > 0.97
    assert not mask[mediastinum].any()


def test_volume_phantom_keeps_emphysematous_lungs_and_drops_a_gas_pocket():
    """Lungs at -960 HU are darker than the gas rule allows, but 1.3 L each can only be lung; a 50 mL
    pocket of pure air in the abdomen is dropped."""
    spacing = (5.0, 2.0, 2.0)  # 20 mm3 voxels
    depth, rows, cols = np.mgrid[:30, :128, :128]
    hu = np.full((30, 128, 128), -1000.0)
    hu[((rows - 64) / 55.0) ** 2 + ((cols - 64) / 60.0) ** 2 <= 1] = 40.0
    lungs = np.zeros(hu.shape, dtype=bool)
    for centre in (38, 90):
        lungs |= (((rows - 58) / 35.0) ** 2 + ((cols - centre) / 20.0) ** 2 <= 1) & (depth < 24)
    hu[lungs] = -960.0 + 30.0 * np.sin(rows[lungs] * 1.3 + cols[lungs] * 0.7 + depth[lungs])
    gas = ((depth - 27) / 3.0) ** 2 + ((rows - 100) / 15.0) ** 2 + ((cols - 64) / 15.0) ** 2 <= 1
    hu[gas] = -1000.0
    mask = segment_lungs_hu(hu, spacing)
    assert mask[lungs].mean() > 0.99 and not (mask & ~lungs).any()
    assert not mask[gas].any() and gas.sum() * 20.0 / 1000.0 > 50.0


def test_refuses_8_bit_grey_levels_as_hounsfield_units():
    with pytest.raises(CovidlensError, match="8-bit") as info:
        segment_lungs_hu(np.random.default_rng(0).integers(0, 256, (64, 64)).astype(np.uint8))
    assert "\n" not in str(info.value)
    with pytest.raises(CovidlensError, match="RescaleSlope"):
        segment_lungs_hu(np.full((64, 64), 24.0) + np.eye(64) * 1000)  # stored values, not yet HU
    with pytest.raises(CovidlensError, match="shape"):
        segment_lungs_hu(np.zeros(10) - 1000)


def test_real_slice_covers_both_lungs_and_no_air_outside_the_body(ny_sbu):
    hu, spacing = _read_hu(ny_sbu / CLEAR_SLICE)
    mask = segment_lungs_hu(hu, spacing)

    labels, count = ndi.label(mask)
    sizes = np.bincount(labels.ravel())[1:]
    two = np.argsort(sizes)[::-1][:2] + 1
    pixel_mm2 = spacing[0] * spacing[1]
    assert count >= 2 and all(sizes[k - 1] * pixel_mm2 > 5000 for k in two)  # each lung > 50 cm2
    centres = [ndi.center_of_mass(labels == k)[1] for k in two]
    width = hu.shape[1]
    assert min(centres) < width / 2 < max(centres)  # one lung in each half of the image

    # No air outside the body: the mask stays inside the body outline (tissue above -320 HU, filled),
    # and the image's border band, room air and scanner padding, is empty.
    tissue, _ = ndi.label(hu > -320)
    body = ndi.binary_fill_holes(tissue == np.argmax(np.bincount(tissue.ravel())[1:]) + 1)
    assert not (mask & ~body).any()
    band = 40
    assert not mask[:band].any() and not mask[-band:].any()
    assert not mask[:, :band].any() and not mask[:, -band:].any()

    # Both lungs of one mid-chest slice: 177 cm2 here; 100-350 cm2 is the adult range at this level.
    area_cm2 = mask_area_mm2(mask, spacing) / 100.0
    assert 100.0 < area_cm2 < 350.0
    # Aerated lung with its vessels filled in: -758 HU on this slice.
    assert -850.0 < float(hu[mask].mean()) < -700.0


def test_every_real_lung_slice_has_a_plausible_lung_area(ny_sbu):
    """On the twelve NY-SBU slices that show lungs the mask is 44-239 cm2; severe COVID-19 slices are
    at the low end because dense consolidation at the chest wall is left out."""
    names = _lung_slices(ny_sbu)
    assert len(names) == 12
    for name in names:
        hu, spacing = _read_hu(ny_sbu / name)
        mask = segment_lungs_hu(hu, spacing)
        area_cm2 = mask_area_mm2(mask, spacing) / 100.0
        assert 30.0 < area_cm2 < 400.0, (name, area_cm2)
        assert -850.0 < float(hu[mask].mean()) < -450.0, name


@pytest.mark.parametrize("name", ABDOMEN_ONLY)
def test_abdomen_only_slice_gives_an_empty_mask(ny_sbu, name):
    """Two of these hold 30-35 cm2 of bowel gas, which must not pass for lung."""
    hu, spacing = _read_hu(ny_sbu / name)
    assert not segment_lungs_hu(hu, spacing).any()


def test_grey_levels_in_the_lung_window_give_the_same_mask(ny_sbu):
    hu, spacing = _read_hu(ny_sbu / CLEAR_SLICE)
    from_hu = segment_lungs_hu(hu, spacing)
    from_grey = segment_lungs_grey(window(hu, *LUNG_WINDOW), spacing)
    dice = 2 * (from_hu & from_grey).sum() / (from_hu.sum() + from_grey.sum())
    assert dice > 0.97
    with pytest.raises(CovidlensError, match="0..255"):
        segment_lungs_grey(hu)


def test_real_volume_lung_volume_is_physiological(data_root):
    """COVID-CT-MD normal001: 154 slices of 2 mm, 1.27 mm pixels; the mask is about 3.5 L."""
    path = data_root / "ct" / "covid-ct-md" / "volumes" / "normal001.nii.gz"
    hu, spacing = _read_hu(path)
    assert hu.shape == (154, 256, 256)
    assert spacing == pytest.approx((2.0, 1.2695, 1.2695), abs=1e-3)
    mask = segment_lungs_hu(hu, spacing)
    litres = lesion_volume_ml(mask, spacing) / 1000.0
    assert 3.0 < litres < 7.0
    assert -900.0 < float(hu[mask].mean()) < -700.0
    # Lungs are in the chest, not the abdomen: the lowest fifth of the scan holds little of the mask.
    per_slice = mask.sum(axis=(1, 2))
    assert per_slice[-len(per_slice) // 5 :].sum() < 0.05 * per_slice.sum()


def _cropped_phantom():
    """A lung-box crop: mid-grey body, two dark lungs reaching the edges, a bright lesion on the
    outer edge of the right lung (dense consolidation against the chest wall)."""
    rows, cols = np.mgrid[0:200, 0:220]
    grey = np.full((200, 220), 150, dtype=np.uint8)
    left = ((rows - 100) / 95.0) ** 2 + ((cols - 55) / 50.0) ** 2 <= 1
    right = ((rows - 100) / 95.0) ** 2 + ((cols - 165) / 50.0) ** 2 <= 1
    grey[left | right] = 30
    lesion = ((rows - 100) / 20.0) ** 2 + ((cols - 205) / 12.0) ** 2 <= 1
    lesion &= right
    grey[lesion] = 160
    return grey, left, right, lesion


def test_cropped_rule_finds_both_lungs_of_a_crop_and_the_hull_takes_in_an_edge_lesion():
    from covidlens.measure import segment_lungs_cropped

    grey, left, right, lesion = _cropped_phantom()
    with_hull = segment_lungs_cropped(grey)
    without = segment_lungs_cropped(grey, hull=False)
    assert with_hull.dtype == bool and with_hull.shape == grey.shape
    assert with_hull[left].mean() > 0.97 and with_hull[right].mean() > 0.97
    assert not with_hull[:, 108:112].any(), "the mediastinum between the lungs is not lung"
    assert with_hull[lesion].mean() > 0.9 > without[lesion].mean()
    # The grey-window HU rule takes lungs reaching the crop's edge for outside air.
    assert not segment_lungs_grey(grey).any()


def test_cropped_rule_on_real_medseg_slices_covers_a_plausible_share(data_root):
    from PIL import Image

    from covidlens.measure import segment_lungs_cropped

    folder = data_root / "ct" / "medseg-infnet" / "test"
    for name in ("18", "21", "36"):
        grey = np.asarray(Image.open(next(folder.glob(f"images/{name}.*"))).convert("L"))
        lesion = np.asarray(Image.open(next(folder.glob(f"infection/{name}.*"))).convert("L")) > 127
        lung = segment_lungs_cropped(grey)
        assert lung.shape == grey.shape
        assert 0.3 < lung.mean() < 0.9, f"slice {name}: the mask covers {lung.mean():.2f} of a lung-box crop"
        if lesion.any():
            assert (lesion & lung).sum() / lesion.sum() > 0.5


@pytest.mark.parametrize("bad", [np.zeros((4, 40, 40)), np.full((40, 40), 300.0), np.zeros((3, 3))])
def test_cropped_rule_refuses_what_is_not_one_grey_slice(bad):
    from covidlens.measure import segment_lungs_cropped

    with pytest.raises(CovidlensError):
        segment_lungs_cropped(bad)
