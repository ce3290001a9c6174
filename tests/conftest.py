"""Shared fixtures. Real images are read in place from ../shared/data; tests that need them skip
with a clear reason when that folder is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("COVIDLENS_TEST_DATA", REPO.parent / "shared" / "data")).resolve()


def pytest_sessionstart(session):
    """Under CI a missing data folder is a broken set-up, not a reason to skip every real-data test."""
    if os.environ.get("CI", "").lower() == "true" and not (SHARED_DATA / "ct" / "covid-ct").is_dir():
        raise pytest.UsageError(
            f"CI=true but the real data is not at {SHARED_DATA}; CI must run with ../shared/data beside the "
            "repository (or COVIDLENS_TEST_DATA set)."
        )


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (SHARED_DATA / "ct" / "covid-ct").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set COVIDLENS_TEST_DATA to the shared data folder)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def covid_ct(data_root) -> Path:
    return data_root / "ct" / "covid-ct"


@pytest.fixture(autouse=True)
def _no_ambient_data_root(monkeypatch):
    """Tests say where data lives; a developer's $COVIDLENS_DATA must not leak in."""
    monkeypatch.delenv("COVIDLENS_DATA", raising=False)


@pytest.fixture(autouse=True)
def _no_ambient_model_store(monkeypatch, tmp_path_factory):
    """Commands without a checkpoint fall back to the model store; a developer's own store must not leak in."""
    monkeypatch.setenv("COVIDLENS_HOME", str(tmp_path_factory.getbasetemp() / "empty-covidlens-home"))


def tiny_config(data_root: Path, out_dir: Path, name: str, epochs: int = 2):
    """A real but tiny run: 8 images per class, 64 px, pretrained EfficientNet-Lite0."""
    from covidlens.training.config import load_config

    return load_config(
        None,
        [
            f"name={name}",
            f"trainer.out_dir={out_dir}",
            f"data.root={data_root}",
            "data.limit_per_class=8",
            "model.input_size=64",
            f"optim.epochs={epochs}",
            "optim.batch_size=8",
            "optim.lr=1e-3",
            "trainer.accelerator=cpu",
        ],
    )


@pytest.fixture(scope="session")
def tiny_run(data_root, tmp_path_factory) -> Path:
    from covidlens.training.fit import train

    out = tmp_path_factory.mktemp("runs")
    return train(tiny_config(data_root, out, "tiny"), progress=False)
