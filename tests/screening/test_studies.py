"""What counts as one study: a folder of studies gives one study per series folder and one per loose
image, with keys that stay the same from run to run and names safe and unique as folder names."""

from __future__ import annotations

import re
import shutil

from PIL import Image

from covidlens.screening import find_studies
from covidlens.screening.studies import MAX_SERIES_FILES
from tests.screening.files import write_ct_volume

SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


def _archive(root, p001_in_order, copy_files):
    """patient-a/ct/ (a 4-file series with a CSV beside it), a NIfTI volume, loose pictures, text files."""
    copy_files(p001_in_order[10:14], root / "patient-a" / "ct")
    (root / "patient-a" / "ct" / "series_labels.csv").write_text("file,infected\n")
    (root / "patient-a" / "ct" / ".DS_Store").write_bytes(b"\0" * 300)
    write_ct_volume(root / "patient-b" / "chest.nii.gz")
    (root / "patient-b" / "notes.txt").write_text("a report, not an image\n")
    Image.new("L", (32, 32), 90).save(root / "overview.png")
    Image.new("L", (32, 32), 90).save(root / "patient-b" / "scout #1 (copy).jpg")
    (root / "empty").mkdir()
    return root


def test_a_folder_of_studies_gives_one_study_per_series_folder_and_per_loose_image(tmp_path, p001_in_order, copy_files):
    archive = _archive(tmp_path / "archive", p001_in_order, copy_files)
    studies = find_studies([archive])
    assert [s.key for s in studies] == [
        "archive/overview.png",
        "archive/patient-a/ct",
        "archive/patient-b/chest.nii.gz",
        "archive/patient-b/scout #1 (copy).jpg",
    ]
    assert not any(s.problem for s in studies)
    by_key = {s.key: s for s in studies}
    assert by_key["archive/patient-a/ct"].path == archive / "patient-a" / "ct"
    assert by_key["archive/patient-b/chest.nii.gz"].path == archive / "patient-b" / "chest.nii.gz"


def test_keys_and_shards_do_not_depend_on_where_the_archive_lies(tmp_path, p001_in_order, copy_files):
    here = _archive(tmp_path / "one" / "archive", p001_in_order, copy_files)
    there = tmp_path / "two" / "deeper" / "archive"
    shutil.copytree(here, there)
    first, again, moved = find_studies([here]), find_studies([here]), find_studies([there])
    assert [(s.key, s.name) for s in first] == [(s.key, s.name) for s in again] == [(s.key, s.name) for s in moved]
    for count in (2, 3, 7):
        assert [s.shard(count) for s in first] == [s.shard(count) for s in moved]
        assert all(0 <= s.shard(count) < count for s in first)


def test_names_are_safe_folder_names_and_unique(tmp_path, p001_in_order, copy_files):
    archive = _archive(tmp_path / "archive", p001_in_order, copy_files)
    for text in ("a b.png", "a_b.png", "a?b.png", "..hidden-looking.png", "é" * 100 + ".png", "x" * 200 + "1.png",
                 "x" * 200 + "2.png"):
        Image.new("L", (8, 8)).save(archive / text)
    studies = find_studies([archive])
    names = [s.name for s in studies]
    assert len(set(names)) == len(names)
    for name in names:
        assert SAFE_NAME.match(name) and len(name) <= 130, name
    assert "archive__patient-b__scout_1_copy_.jpg" in names


def test_one_series_folder_and_one_file_given_directly_are_one_study_each(p001_series, ny_sbu):
    slice_file = ny_sbu / "A002304" / "axial" / "19001231-076.dcm"
    studies = find_studies([p001_series, slice_file])
    assert [(s.key, s.path, s.problem) for s in studies] == [("P001", p001_series, ""),
                                                             ("19001231-076.dcm", slice_file, "")]


def test_a_folder_holding_one_dicom_file_is_one_slice(tmp_path, p001_in_order, copy_files):
    folder = copy_files(p001_in_order[:1], tmp_path / "archive" / "key-image")
    (study,) = find_studies([tmp_path / "archive"])
    assert (study.key, study.path, study.problem) == ("archive/key-image", folder / p001_in_order[0].name, "")


def test_a_link_back_up_the_tree_does_not_repeat_studies(tmp_path):
    write_ct_volume(tmp_path / "archive" / "patient" / "chest.nii.gz")
    (tmp_path / "archive" / "patient" / "up").symlink_to("..")
    studies = find_studies([tmp_path / "archive"])
    assert [(s.key, s.problem) for s in studies] == [("archive/patient/chest.nii.gz", "")]


def test_inputs_with_the_same_name_get_different_keys(tmp_path):
    """Two sites' folders both called scans/ (or two files both called chest.nii.gz): each study keeps
    its own key, or one would pass for the other in the ledger and in results.csv."""
    for site in ("site-1", "site-2"):
        write_ct_volume(tmp_path / site / "scans" / "chest.nii.gz")
    for inputs in ([tmp_path / "site-1" / "scans", tmp_path / "site-2" / "scans"],
                   [tmp_path / "site-1" / "scans" / "chest.nii.gz", tmp_path / "site-2" / "scans" / "chest.nii.gz"]):
        studies = find_studies(inputs)
        assert [s.key for s in studies] == ["site-1/scans/chest.nii.gz", "site-2/scans/chest.nii.gz"]
        assert len({s.name for s in studies}) == 2
        reordered = {s.path: s.key for s in find_studies(inputs[::-1])}
        assert {s.path: s.key for s in studies} == reordered


def test_what_cannot_be_a_study_gets_one_sentence(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    huge = tmp_path / "huge"
    huge.mkdir()
    marked = b"\0" * 128 + b"DICM" + b"\0" * 8  # the DICOM marker is all that is looked at before reading
    for k in range(MAX_SERIES_FILES + 1):
        (huge / f"{k:05d}.dcm").write_bytes(marked)
    studies = find_studies([tmp_path / "empty", tmp_path / "texts", tmp_path / "notes.txt", huge, tmp_path / "nowhere"])
    problems = {s.key: s.problem for s in studies}
    assert list(problems) == ["empty", "texts", "notes.txt", "huge", str(tmp_path / "nowhere")]
    assert "is empty" in problems["empty"]
    assert "holds no DICOM, NIfTI or image files" in problems["texts"]
    assert "is not a DICOM, NIfTI or image file" in problems["notes.txt"]
    assert f"holds {MAX_SERIES_FILES + 1} DICOM files" in problems["huge"]
    assert "does not exist" in problems[str(tmp_path / "nowhere")]
    for key, problem in problems.items():
        assert key.split("/")[-1] in problem and "\n" not in problem and problem.endswith("."), problem
