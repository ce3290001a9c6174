from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidlens.data.io import list_images, read_image, window_hu
from covidlens.errors import CovidlensError

ODD_COVID_CT_FILES = [
    ("CT_COVID/2020.03.18.20038125-p15-54-4.png", "JPEG"),  # a JPEG named .png
    ("CT_COVID/2020.03.04.20030395-p27-108%0.png", "PNG"),  # RGBA
    ("CT_COVID/2019-novel-Coronavirus-severe-adult-respiratory-dist_2020_International-Jour-p3-89%0.png", "PNG"),  # RGB
    ("CT_NonCOVID/11%0.jpg", "JPEG"),  # RGB JPEG
    ("CT_NonCOVID/102.png", "PNG"),  # grey PNG
]


@pytest.mark.parametrize("name,fmt", ODD_COVID_CT_FILES)
def test_reads_every_kind_of_covid_ct_file_as_grey(covid_ct, name, fmt):
    path = covid_ct / name
    with Image.open(path) as raw:
        assert raw.format == fmt
        size = raw.size
    image = read_image(path)
    assert image.mode == "L"
    assert image.size == size
    assert np.asarray(image).std() > 5  # real content, not a blank


def test_reads_palette_png_of_covid_chestxray(data_root):
    image = read_image(data_root / "cxr" / "covid-chestxray" / "images" / "tpmd200203f2-a.png")
    assert image.mode == "L" and np.asarray(image).max() > 0


def test_16_bit_image_is_stretched_to_8_bit(tmp_path):
    ramp = np.linspace(1000, 4000, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    image = np.asarray(read_image(tmp_path / "ramp16.png"))
    assert image.dtype == np.uint8 and image.min() == 0 and image.max() == 255
    assert np.all(np.diff(image.ravel().astype(int)) >= 0)  # order of intensities kept


def test_transparent_pixels_become_black(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:4, :, 3] = 255  # top half opaque, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = np.asarray(read_image(tmp_path / "a.png"))
    assert image[:4].min() == 200 and image[4:].max() == 0


def test_dicom_slice_is_windowed_from_hounsfield_units(data_root):
    folder = data_root / "ct" / "ny-sbu-dicom"
    first = sorted(folder.rglob("*.dcm"))[0]
    image = np.asarray(read_image(first))
    assert image.shape == (512, 512)
    assert image.min() == 0 and image.max() == 255  # air is black, bone is white in the lung window


def test_window_maps_lung_window_edges():
    hu = np.array([-2000.0, -1350.0, 150.0, 3000.0])
    assert window_hu(hu, -600, 1500).tolist() == [0, 0, 255, 255]


def test_text_file_named_png_fails_with_one_sentence(tmp_path):
    fake = tmp_path / "scan.png"
    fake.write_text("this is not an image\n")
    with pytest.raises(CovidlensError, match="not an image covidlens can read"):
        read_image(fake)


def test_truncated_png_fails_clearly(covid_ct, tmp_path):
    data = (covid_ct / "CT_NonCOVID" / "102.png").read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(CovidlensError, match="damaged or truncated"):
        read_image(cut)


def test_missing_path_and_folder_fail_clearly(tmp_path):
    with pytest.raises(CovidlensError, match="does not exist"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(CovidlensError, match="is a folder"):
        read_image(tmp_path)


def test_list_images_walks_folders_and_refuses_empty_ones(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "a" / "x.png")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["x.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CovidlensError, match="holds no image files"):
        list_images(tmp_path / "empty")


def test_oversized_image_is_refused(tmp_path, monkeypatch):
    import covidlens.data.io as io

    Image.new("L", (300, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr(io, "MAX_PIXELS", 300 * 199)
    with pytest.raises(CovidlensError, match="more than covidlens accepts"):
        read_image(tmp_path / "big.png")


NY_SBU_SLICE = "ct/ny-sbu-dicom/A002304/axial/19001231-076.dcm"  # HU -3024..1112 (slices_index.csv)


def test_lung_window_maps_known_hounsfield_units_of_a_real_slice(data_root):
    """Grey level g = round((HU + 1350) / 1500 * 255), clipped: the same HU always gives the same grey.

    A min-max stretch of this slice (-3024..1112 HU) would put -850 HU at 134, not 85, so it fails here.
    """
    from covidlens.data.io import read_scan

    path = data_root / NY_SBU_SLICE
    hu = read_scan(path).pixels
    image = np.asarray(read_image(path))
    expected = {-3024: 0, -850: 85, -350: 170, 50: 238, 400: 255}
    for value, grey in expected.items():
        where = hu == value
        assert where.sum() >= 10, value
        assert np.all(image[where] == grey), (value, np.unique(image[where]))
    stretched = round((-850 - hu.min()) / (hu.max() - hu.min()) * 255)
    assert stretched != expected[-850]


def test_intensity_transforms_follow_the_units():
    from covidlens.data.intensity import LUNG_WINDOW, display_image, to_uint8, window
    from covidlens.data.io import Scan

    def scan(pixels, units="raw", bits=8, win=None):
        return Scan(np.asarray(pixels, np.float32), None, "", units, "L", "png", Path("x"), window=win, bits=bits)

    assert window(np.array([-1350.0, -600.0, 150.0]), *LUNG_WINDOW).tolist() == [0, 128, 255]
    assert to_uint8(scan([[-1350.0, 150.0]], units="HU")).tolist() == [[0, 255]]
    assert to_uint8(scan([[3.0, 200.0]])).tolist() == [[3, 200]]  # 8-bit raw: as stored
    assert to_uint8(scan([[1000.0, 3000.0]], bits=16)).tolist() == [[0, 255]]  # stretched
    assert to_uint8(scan([[1000.0, 3000.0]], bits=12, win=(2000.0, 4000.0))).tolist() == [[64, 191]]
    assert display_image(scan([[0.0, 255.0]])).mode == "L"
    with pytest.raises(CovidlensError, match="3-D volume"):
        display_image(scan(np.zeros((2, 2, 2))))
    with pytest.raises(CovidlensError, match="positive width"):
        window(np.zeros(2), 0.0, 0.0)


def test_old_names_stay_importable():
    from covidlens.data import intensity, io

    assert io.LUNG_WINDOW == intensity.LUNG_WINDOW == (-600.0, 1500.0)
    assert io.window_hu is intensity.window
    assert {".png", ".dcm"} <= io.IMAGE_SUFFIXES and io.MAX_PIXELS == 8192 * 8192
    assert callable(io.is_dicom) and callable(io.read_dicom_hu)


def test_read_dicom_hu_gives_hounsfield_units_and_spacing(data_root):
    from covidlens.data.io import read_dicom_hu

    hu, spacing = read_dicom_hu(data_root / NY_SBU_SLICE)
    assert hu.min() == -3024 and hu.max() == 1112 and spacing == (0.826172, 0.826172)


def test_volume_is_not_an_image(tmp_path):
    import nibabel

    nibabel.save(nibabel.Nifti1Image(np.zeros((4, 4, 3), np.int16), np.eye(4)), tmp_path / "v.nii.gz")
    with pytest.raises(CovidlensError, match="3-D volume"):
        read_image(tmp_path / "v.nii.gz")
