"""Fixtures of the screening tests: the tiny real models (each trained once per session), the real
studies they read, and small studies the tests make (synthetic HU volumes, copies of P001's files)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
import torch

from tests.segmentation.runs import tiny_segmentation_config, tiny_segmentation_run


@contextlib.contextmanager
def one_torch_thread():
    """The models here are tiny, and on a shared two-core machine a second torch thread mostly waits:
    one thread trains and screens several times faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def lesion_model(data_root, tmp_path_factory) -> Path:
    """The tiny MedSeg lesion model (shared with the segmentation tests' run when they ran first)."""
    with one_torch_thread():  # session fixtures are set up before the package's
        return tiny_segmentation_run(data_root, tmp_path_factory) / "model"


@pytest.fixture(scope="session")
def cxr_models(data_root, tmp_path_factory) -> tuple[Path, Path]:
    """(lung model, classifier) for chest X-ray: a tiny Shenzhen/Montgomery lung model and a tiny
    COVID-19 Radiography classifier, 2 epochs each."""
    from covidlens.training.config import load_config
    from covidlens.training.fit import train

    out = tmp_path_factory.mktemp("cxr_runs")
    with one_torch_thread():
        lungs = train(tiny_segmentation_config(data_root, out, name="cxr-lungs",
                                               dataset="lung-masks-shenzhen-montgomery"), progress=False)
        classifier = train(load_config(None, [
            "name=cxr-classifier", f"trainer.out_dir={out}", f"data.root={data_root}",
            "data.dataset=covid19-radiography", "data.limit_per_class=8", "model.input_size=64", "optim.epochs=2",
            "optim.batch_size=8", "optim.lr=1e-3", "trainer.accelerator=cpu",
        ]), progress=False)
    return lungs / "model", classifier / "model"


@pytest.fixture(scope="session")
def p001_series(data_root) -> Path:
    folder = data_root / "ct" / "covid-ct-md" / "dicom-series" / "P001"
    if not folder.is_dir():
        pytest.skip(f"the COVID-CT-MD DICOM series is not at {folder}")
    return folder


@pytest.fixture(scope="session")
def p001_volume(data_root) -> Path:
    path = data_root / "ct" / "covid-ct-md" / "volumes" / "P001.nii.gz"
    if not path.is_file():
        pytest.skip(f"the COVID-CT-MD volume is not at {path}")
    return path


@pytest.fixture(scope="session")
def ny_sbu(data_root) -> Path:
    folder = data_root / "ct" / "ny-sbu-dicom"
    if not folder.is_dir():
        pytest.skip(f"the NY-SBU DICOM slices are not at {folder}")
    return folder


@pytest.fixture(scope="session")
def p001_in_order(p001_series) -> list[Path]:
    """P001's DICOM files head to feet (their names are not slice order)."""
    from covidlens.data.io import read_scan

    return list(read_scan(p001_series).files)


@pytest.fixture
def copy_files():
    """Copy files into a new folder (a study the test builds from real files)."""

    def copy(files, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copy(path, folder / Path(path).name)
        return folder

    return copy


@pytest.fixture
def screen_cli(capsys):
    """Run ``covidlens screen ARGS`` in this process: (exit code, stdout, stderr)."""
    from covidlens.cli import main

    def run(*args) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["screen", *map(str, args)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
