import pytest
from PIL import Image

from covidlens.data.datasets import load_dataset
from covidlens.errors import CovidlensError


def test_covid_ct_official_split_counts(data_root):
    table = load_dataset("covid-ct", data_root)
    assert table.classes == ["NonCOVID", "COVID"] and table.positive_index == 1
    assert table.counts() == {
        "train": {"NonCOVID": 234, "COVID": 191},
        "val": {"NonCOVID": 58, "COVID": 60},
        "test": {"NonCOVID": 105, "COVID": 98},
    }


def test_covid_ct_patients_and_figures_do_not_cross_splits(data_root):
    table = load_dataset("covid-ct", data_root)
    covid_groups = {s.group for s in table.samples if s.label == 1}
    assert any(g.startswith("Patient") for g in covid_groups)  # patient ids from the map were used
    split_of = {}
    for s in table.samples:
        if s.label == 1:
            split_of.setdefault(s.group, set()).add(s.split)
    assert all(len(splits) == 1 for splits in split_of.values())


def test_covid_ct_folder_path_is_recognised(covid_ct):
    assert len(load_dataset(str(covid_ct)).split("test")) == 203


def test_missing_data_root_says_how_to_fix(tmp_path):
    with pytest.raises(CovidlensError, match="COVIDLENS_DATA"):
        load_dataset("covid-ct", tmp_path)


def _make_folder(root, layout):
    for rel in layout:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8)).save(path)


def test_folder_layout_with_splits_puts_covid_last(tmp_path):
    _make_folder(tmp_path, ["train/covid/a.png", "train/normal/b.png", "test/covid/c.png", "test/normal/d.png"])
    table = load_dataset(str(tmp_path))
    assert table.classes == ["normal", "covid"] and table.positive_index == 1
    assert [s.path.name for s in table.split("train")] == ["b.png", "a.png"]


def test_csv_layout_keeps_patient_ids(tmp_path):
    _make_folder(tmp_path, ["img/1.png", "img/2.png"])
    (tmp_path / "t.csv").write_text("path,label,split,patient_id\nimg/1.png,COVID,train,p1\nimg/2.png,normal,val,p2\n")
    table = load_dataset(str(tmp_path / "t.csv"))
    assert table.classes == ["normal", "COVID"]
    assert [(s.split, s.group, s.label) for s in table.samples] == [("train", "p1", 1), ("val", "p2", 0)]


def test_csv_without_required_columns_is_refused(tmp_path):
    (tmp_path / "t.csv").write_text("file,class\na.png,x\n")
    with pytest.raises(CovidlensError, match="'path' and 'label'"):
        load_dataset(str(tmp_path / "t.csv"))


@pytest.mark.parametrize(
    "names,positive",
    [(["covid_positive", "normal"], "covid_positive"), (["CT_COVID", "CT_NonCOVID"], "CT_COVID"),
     (["COVID19_pos", "healthy"], "COVID19_pos"), (["non-covid", "covid", "normal"], "covid")],
)
def test_the_covid_class_is_positive_whatever_its_spelling(tmp_path, names, positive):
    _make_folder(tmp_path, [f"test/{n}/a.png" for n in names])
    table = load_dataset(str(tmp_path))
    assert table.classes[table.positive_index] == positive
