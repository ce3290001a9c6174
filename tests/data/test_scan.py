"""read_scan: pixels in their own units, with spacing and slice order, on real DICOM and NIfTI files,
and one clear sentence for every kind of bad input."""

import csv
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import covidlens.data.io as io
from covidlens.data.io import read_image, read_scan
from covidlens.errors import CovidlensError

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
DX_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"


def write_dicom(path, pixels=None, *, photometric="MONOCHROME2", bits=16, sop_class=CT_IMAGE_STORAGE,
                series="1.2.826.0.1.3680043.8.498.1", **attributes):
    """A small single-frame DICOM file written with pydicom; ``pixels=None`` writes no pixel data."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = sop_class
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.SeriesInstanceUID = series
    dataset.Modality = "CT" if sop_class == CT_IMAGE_STORAGE else "DX"
    if pixels is not None:
        dataset.set_pixel_data(np.asarray(pixels), photometric, bits)
    for name, value in attributes.items():
        setattr(dataset, name, value)
    dataset.save_as(path, enforce_file_format=True)
    return path


def write_series(folder, count=3, size=(8, 8), step=2.5, **attributes):
    folder.mkdir(exist_ok=True)
    for k in range(count):
        write_dicom(
            folder / f"s{k}.dcm",
            np.full(size, 1000 + k, np.uint16),
            RescaleSlope=1,
            RescaleIntercept=-1024,
            PixelSpacing=[0.7, 0.7],
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
            ImagePositionPatient=[0, 0, -step * k],
            InstanceNumber=k + 1,
            **attributes,
        )
    return folder


# --- real DICOM --------------------------------------------------------------------------------


def ny_sbu_rows(data_root):
    with open(data_root / "ct" / "ny-sbu-dicom" / "slices_index.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_ny_sbu_slices_read_as_hounsfield_units_with_their_spacing(data_root):
    rows = ny_sbu_rows(data_root)
    assert len(rows) == 20
    for row in rows:
        scan = read_scan(data_root / "ct" / "ny-sbu-dicom" / row["file"])
        spacing = tuple(float(v) for v in row["pixel_spacing"].strip("[]").split(","))
        assert (scan.format, scan.modality, scan.units, scan.ndim) == ("dicom", "CT", "HU", 2)
        assert scan.pixels.dtype == np.float32
        assert scan.pixels.shape == (int(row["rows"]), int(row["cols"]))
        assert scan.spacing == pytest.approx(spacing)
        assert scan.pixels.min() == float(row["hu_min"]) and scan.pixels.max() == float(row["hu_max"])
        assert scan.window is not None and scan.window[1] > 0


def test_ny_sbu_padding_and_air_are_where_the_readme_says(data_root):
    scan = read_scan(data_root / "ct" / "ny-sbu-dicom" / "A002304" / "axial" / "19001231-076.dcm")
    corner = scan.pixels[:20, :20]
    assert np.all(corner == -3024)  # outside the reconstruction circle: the padding value
    inside = scan.pixels[scan.pixels > -3024]
    air = np.abs(inside + 1000) < 60
    assert air.mean() > 0.2  # air around the body and in the lungs is about -1000 HU
    assert scan.window == (-600.0, 1500.0)  # the file's own lung window


def test_p001_series_is_a_volume_in_label_order_that_matches_the_nifti(data_root):
    folder = data_root / "ct" / "covid-ct-md" / "dicom-series" / "P001"
    with open(folder / "series_labels.csv", newline="") as handle:
        labels = {row["file"]: int(row["label_index"]) for row in csv.DictReader(handle)}
    series = read_scan(folder)
    assert series.format == "dicom-series" and series.units == "HU" and series.pixels.shape == (40, 512, 512)
    assert series.spacing == pytest.approx((2.0, 0.748046875, 0.748046875))
    assert series.positions == pytest.approx([-132.1 - 2.0 * k for k in range(40)])  # head to feet

    # Slice k of the series is the file whose label index is 40 + k: compare with each file read alone.
    first_label = min(labels.values())
    by_label = {index: name for name, index in labels.items()}
    for k in (0, 1, 17, 39):
        alone = read_scan(folder / by_label[first_label + k]).pixels
        assert np.array_equal(series.pixels[k], alone)

    volume = read_scan(data_root / "ct" / "covid-ct-md" / "volumes" / "P001.nii.gz")
    reference = volume.pixels[first_label : first_label + 40]
    downsampled = series.pixels.reshape(40, 256, 2, 256, 2).mean(axis=(2, 4))
    assert np.corrcoef(downsampled.ravel(), reference.ravel())[0, 1] > 0.99
    assert np.abs(downsampled - reference).max() <= 0.5  # the NIfTI rounds the 2x2 means to int16
    assert volume.positions[first_label : first_label + 40] == pytest.approx(series.positions, abs=1e-3)


# --- real NIfTI --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,slices,in_plane",
    [("P001", 148, 1.50), ("cap001", 168, 1.18), ("normal001", 154, 1.27)],
)
def test_covid_ct_md_volumes_have_the_readme_spacing(data_root, name, slices, in_plane):
    scan = read_scan(data_root / "ct" / "covid-ct-md" / "volumes" / f"{name}.nii.gz")
    assert (scan.format, scan.units, scan.modality) == ("nifti", "HU", "CT")
    assert scan.pixels.shape == (slices, 256, 256)
    assert scan.spacing == pytest.approx((2.0, in_plane, in_plane), abs=0.005)
    steps = np.diff(scan.positions)
    assert steps == pytest.approx(np.full(slices - 1, -2.0), abs=1e-3)  # k = 0 is the most superior
    assert scan.pixels.min() == -1024


def test_mask_volume_is_raw_not_hounsfield(data_root):
    scan = read_scan(data_root / "ct" / "mosmed-masks" / "masks" / "study_0255_mask.nii.gz")
    assert (scan.units, scan.modality) == ("raw", "")
    assert set(np.unique(scan.pixels)) == {0.0, 1.0}
    assert scan.spacing[0] == pytest.approx(8.0)


@pytest.mark.parametrize(
    "affine_diagonal,where",
    [
        ((-1.0, -1.0, -2.0), (0, 0)),  # axis codes L, P, I (as covid-ct-md): already the radiological view
        ((1.0, 1.0, 2.0), (-1, -1)),  # R, A, S: both in-plane axes are turned round
    ],
)
def test_nifti_in_plane_view_follows_the_affine_and_slice_order_is_kept(tmp_path, affine_diagonal, where):
    import nibabel

    data = np.zeros((5, 4, 3), np.int16)  # i (x), j (y), k (slices)
    data[0, 0, :] = [10, 20, 30]  # marker at voxel i = 0, j = 0 of every slice
    data[1, 0, 0] = 5  # next along i, so the column axis is told apart from the row axis
    nibabel.save(nibabel.Nifti1Image(data, np.diag([*affine_diagonal, 1.0])), tmp_path / "v.nii")
    scan = read_scan(tmp_path / "v.nii")
    assert scan.pixels.shape == (3, 4, 5)  # (slices, rows = j, cols = i)
    row, col = where
    assert scan.pixels[:, row, col].tolist() == [10, 20, 30]  # slice k of the file stays slice k
    assert scan.pixels[0, row, col + (1 if col == 0 else -1)] == 5
    assert scan.spacing == pytest.approx((2.0, 1.0, 1.0))


# --- written DICOM -----------------------------------------------------------------------------


def test_monochrome1_is_inverted_so_that_bright_is_dense(tmp_path):
    stored = np.array([[0, 1000], [3000, 4095]], np.uint16)  # MONOCHROME1: 0 is shown white (dense)
    path = write_dicom(
        tmp_path / "cr.dcm", stored, photometric="MONOCHROME1", bits=12, sop_class=DX_IMAGE_STORAGE,
        WindowCenter=1000, WindowWidth=2000, ImagerPixelSpacing=[0.14, 0.14],
    )
    scan = read_scan(path)
    assert (scan.photometric, scan.units, scan.modality, scan.bits) == ("MONOCHROME1", "raw", "DX", 12)
    assert scan.pixels.tolist() == [[4095, 3095], [1095, 0]]
    assert scan.window == (3095.0, 2000.0)  # the file's window, mirrored with the pixels
    assert scan.spacing == (0.14, 0.14)
    image = np.asarray(read_image(path))
    assert image[0, 0] == 255 and image[1, 1] == 0  # dense is white in the 8-bit image


def test_voi_lut_table_and_colour_dicom(tmp_path):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor = [2048, 1000, 16]
    item.add_new(0x00283006, "US", list(range(0, 2048 * 32, 32)))  # LUTData, 16-bit entries
    dx = write_dicom(tmp_path / "dx.dcm", np.full((4, 4), 2000, np.uint16), bits=12, sop_class=DX_IMAGE_STORAGE,
                     VOILUTSequence=[item])
    assert read_scan(dx).window == (2024.0, 2048.0)  # the table's input range 1000..3047 as a window
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    scan = read_scan(write_dicom(tmp_path / "sc.dcm", rgb, photometric="RGB", bits=8, sop_class=DX_IMAGE_STORAGE))
    assert scan.ndim == 2 and scan.photometric == "RGB"
    assert np.allclose(scan.pixels, 200 * 0.299)


def test_text_file_named_dcm_is_refused(tmp_path):
    fake = tmp_path / "slice.dcm"
    fake.write_text("patient notes, not an image\n" * 10)
    with pytest.raises(CovidlensError, match="is named .dcm but is not a DICOM file"):
        read_scan(fake)


def test_dicom_without_pixel_data_is_refused(tmp_path):
    report = write_dicom(tmp_path / "report.dcm", None, sop_class="1.2.840.10008.5.1.4.1.1.88.11")
    with pytest.raises(CovidlensError, match=r"DICOM file with no pixel data \(Basic Text SR"):
        read_scan(report)
    header_only = write_dicom(tmp_path / "no-pixels.dcm", None, Rows=8, Columns=6)
    with pytest.raises(CovidlensError, match="declares a 6x8 DICOM image but has no pixel data"):
        read_scan(header_only)


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
@pytest.mark.parametrize(
    "name",
    ["ny-sbu-dicom/A002304/axial/19001231-076.dcm", "covid-ct-md/dicom-series/P001/slice_000.dcm"],
)
def test_truncated_dicom_fails_clearly(data_root, tmp_path, name):
    data = (data_root / "ct" / name).read_bytes()  # uncompressed, then JPEG-Lossless
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(CovidlensError, match="truncated"):
        read_scan(cut)


def test_multi_frame_dicom_is_refused(tmp_path):
    path = write_dicom(tmp_path / "mf.dcm", np.zeros((8, 8), np.uint16), NumberOfFrames=3)
    with pytest.raises(CovidlensError, match="multi-frame DICOM"):
        read_scan(path)


def test_dicom_header_claiming_too_many_pixels_is_refused_before_decoding(tmp_path):
    # 9000 x 9000 in the header but 128 pixels of data: decoding would fail differently.
    path = write_dicom(tmp_path / "huge.dcm", np.zeros((8, 16), np.uint16))
    import pydicom

    dataset = pydicom.dcmread(path)
    dataset.Rows = dataset.Columns = 9000
    dataset.save_as(path)
    with pytest.raises(CovidlensError, match="9000x9000 pixels, more than covidlens accepts"):
        read_scan(path)


def test_dicom_series_written_in_shuffled_order_is_sorted_head_to_feet(tmp_path):
    folder = write_series(tmp_path / "series", count=4, step=2.5)
    (folder / "s0.dcm").rename(folder / "z.dcm")  # file names say nothing about the order
    write_dicom(folder / "a-report.dcm", None, sop_class="1.2.840.10008.5.1.4.1.1.88.11")  # not a slice
    (folder / "notes.txt").write_text("x")
    scan = read_scan(folder)
    assert scan.pixels[:, 0, 0].tolist() == [-24, -23, -22, -21]  # stored 1000 + k, minus 1024
    assert scan.spacing == pytest.approx((2.5, 0.7, 0.7))
    assert scan.positions == pytest.approx((0.0, -2.5, -5.0, -7.5))


def test_dicom_series_without_positions_is_ordered_by_instance_number(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for number, value in [(3, 30), (1, 10), (2, 20)]:
        write_dicom(folder / f"f{value}.dcm", np.full((4, 4), value, np.uint16), InstanceNumber=number)
    scan = read_scan(folder)
    assert scan.pixels[:, 0, 0].tolist() == [10, 20, 30]
    assert scan.positions is None and scan.spacing is None


def test_series_with_mixed_sizes_is_refused(tmp_path):
    folder = write_series(tmp_path / "series", count=2, size=(8, 8))
    write_dicom(folder / "odd.dcm", np.zeros((8, 6), np.uint16), ImagePositionPatient=[0, 0, -9],
                ImageOrientationPatient=[1, 0, 0, 0, 1, 0], PixelSpacing=[0.7, 0.7])
    with pytest.raises(CovidlensError, match=r"mixes slice sizes \((6x8 and 8x8|8x8 and 6x8)\)"):
        read_scan(folder)


def test_series_with_mixed_orientations_is_refused(tmp_path):
    folder = write_series(tmp_path / "series", count=2)
    write_dicom(folder / "coronal.dcm", np.zeros((8, 8), np.uint16), ImagePositionPatient=[0, 0, -9],
                ImageOrientationPatient=[1, 0, 0, 0, 0, -1], PixelSpacing=[0.7, 0.7])
    with pytest.raises(CovidlensError, match="mixes slice orientations"):
        read_scan(folder)


def test_folder_with_several_series_or_none_is_refused(tmp_path):
    folder = write_series(tmp_path / "series", count=2, SeriesDescription="CHEST 1.25")
    write_dicom(folder / "other.dcm", np.zeros((8, 8), np.uint16), series="1.2.3.4", SeriesDescription="SCOUT")
    with pytest.raises(CovidlensError, match=r"holds 2 DICOM series \(CHEST 1.25; SCOUT\)"):
        read_scan(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(CovidlensError, match="holds no DICOM files"):
        read_scan(empty)


def test_series_with_a_missing_slice_is_refused(tmp_path):
    folder = write_series(tmp_path / "series", count=4)
    (folder / "s2.dcm").unlink()
    with pytest.raises(CovidlensError, match="uneven slice steps"):
        read_scan(folder)


def test_series_voxel_limit_is_checked_from_headers(data_root, monkeypatch):
    def no_decoding(*args):
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(io, "MAX_VOXELS", 39 * 512 * 512)
    monkeypatch.setattr(io, "_dicom_pixels", no_decoding)
    with pytest.raises(CovidlensError, match="40x512x512 voxels, more than covidlens accepts"):
        read_scan(data_root / "ct" / "covid-ct-md" / "dicom-series" / "P001")


# --- written NIfTI and pictures ----------------------------------------------------------------


def test_4d_nifti_is_refused(tmp_path):
    import nibabel

    nibabel.save(nibabel.Nifti1Image(np.zeros((4, 4, 3, 2), np.int16), np.eye(4)), tmp_path / "t.nii.gz")
    with pytest.raises(CovidlensError, match="holds a 4-D NIfTI image"):
        read_scan(tmp_path / "t.nii.gz")


def test_nifti_voxel_limit_is_checked_from_the_header(tmp_path, monkeypatch):
    import nibabel

    path = tmp_path / "v.nii"
    nibabel.save(nibabel.Nifti1Image(np.zeros((20, 20, 20), np.int16), np.eye(4)), path)
    path.write_bytes(path.read_bytes()[:1000])  # header intact, voxel data cut: decoding would fail
    with pytest.raises(CovidlensError, match="not a readable NIfTI volume"):  # what decoding it gives
        read_scan(path)
    monkeypatch.setattr(io, "MAX_VOXELS", 7999)
    with pytest.raises(CovidlensError, match="20x20x20 voxels, more than covidlens accepts"):
        read_scan(path)


def test_nifti_with_one_time_point_is_a_volume_and_a_cut_gzip_fails_clearly(tmp_path):
    import nibabel

    nibabel.save(nibabel.Nifti1Image(np.ones((6, 5, 4, 1), np.int16), np.eye(4)), tmp_path / "one.nii.gz")
    assert read_scan(tmp_path / "one.nii.gz").pixels.shape == (4, 5, 6)
    data = np.random.default_rng(0).integers(-1024, 1000, (64, 64, 16)).astype(np.int16)
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), tmp_path / "ct.nii.gz")
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes((tmp_path / "ct.nii.gz").read_bytes()[:20000])
    with pytest.raises(CovidlensError, match="not a readable NIfTI volume"):
        read_scan(cut)


def png_header_only(path, width, height):
    """A PNG header (IHDR) and the start of an IDAT chunk, with no image data behind it: only a check made
    before decoding can refuse it as too large rather than as truncated."""
    body = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    ihdr = struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + struct.pack(">I", 1 << 20) + b"IDAT" + b"\x78\x9c")
    return path


def test_png_header_claiming_too_many_pixels_is_refused_before_decoding(tmp_path):
    with pytest.raises(CovidlensError, match="9000x9000 pixels, more than covidlens accepts"):
        read_scan(png_header_only(tmp_path / "big.png", 9000, 9000))
    with pytest.raises(CovidlensError, match="damaged or truncated"):  # same file, small: it is decoded
        read_scan(png_header_only(tmp_path / "small.png", 90, 90))


def test_files_above_the_size_limit_or_empty_are_refused(covid_ct, tmp_path, monkeypatch):
    monkeypatch.setattr(io, "MAX_FILE_BYTES", 1000)
    with pytest.raises(CovidlensError, match="bytes, more than covidlens accepts"):
        read_scan(covid_ct / "CT_NonCOVID" / "102.png")
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(CovidlensError, match="is empty"):
        read_scan(tmp_path / "empty.dcm")


def test_16_bit_png_keeps_its_stored_values(tmp_path):
    ramp = np.linspace(1000, 4000, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    scan = read_scan(tmp_path / "ramp16.png")
    assert (scan.format, scan.units, scan.bits, scan.spacing) == ("png", "raw", 16, None)
    assert np.array_equal(scan.pixels, ramp.astype(np.float32))


def test_colour_and_disguised_files_become_grey_luminance(covid_ct):
    jpeg_named_png = read_scan(covid_ct / "CT_COVID" / "2020.03.18.20038125-p15-54-4.png")
    assert jpeg_named_png.format == "jpeg"
    rgb = covid_ct / "CT_COVID" / (
        "2019-novel-Coronavirus-severe-adult-respiratory-dist_2020_International-Jour-p3-89%0.png"
    )
    scan = read_scan(rgb)
    with Image.open(rgb) as raw:
        assert raw.mode == "RGB"
        luminance = np.asarray(raw.convert("L"), np.float32)
    assert (scan.photometric, scan.ndim, scan.bits) == ("RGB", 2, 8)
    assert np.array_equal(scan.pixels, luminance)
