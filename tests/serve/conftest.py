"""Tiny checkpoints built in seconds (untrained weights: these tests check the service, not the models),
real images from ../shared/data, and a live uvicorn server for the tests that need real sockets."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from covidlens.checkpoint import ModelInfo, save_checkpoint
from covidlens.models import create_model
from covidlens.serve import ServeConfig, create_app
from covidlens.serve.pipeline import ServedModels

CT_PNG = "ct/covid-ct/CT_COVID/2020.01.24.919183-p27-132.png"
CT_DICOM = "ct/ny-sbu-dicom/A002304/axial/19001231-076.dcm"
CXR_JPEG = "cxr/covid19-radiography/COVID/COVID-100.jpg"
SERIES = "ct/covid-ct-md/dicom-series/P001"


def series_slices(data_root: Path, part: slice) -> list[Path]:
    """Neighbouring files of the real P001 series, in InstanceNumber order (the series' own order)."""
    import pydicom

    files = sorted((data_root / SERIES).glob("*.dcm"),
                   key=lambda f: int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber))
    return files[part]


def _classifier(folder: Path, modality: str, classes: list[str]) -> Path:
    torch.manual_seed(0)
    kwargs = {"widths": [8, 16, 32]}
    model = create_model("simple_cnn", num_classes=1, **kwargs)
    info = ModelInfo(model="simple_cnn", classes=classes, positive_class="COVID", input_size=64, mean=[0.5] * 3,
                     std=[0.5] * 3, modality=modality, model_kwargs=kwargs, sensitivity_threshold=0.25,
                     target_sensitivity=0.95, dataset=f"tiny-{modality}")
    return save_checkpoint(model.eval(), info, folder)


def _segmenter(folder: Path, modality: str = "ct", classes: tuple[str, str] = ("background", "infection"),
               dataset: str = "tiny-medseg") -> Path:
    torch.manual_seed(0)
    kwargs = {"base_channels": 4}
    model = create_model("unet_seg", num_classes=2, **kwargs)
    info = ModelInfo(model="unet_seg", classes=list(classes), input_size=64, mean=[0.5] * 3, std=[0.5] * 3,
                     task="segmentation", num_outputs=2, model_kwargs=kwargs, dataset=dataset, modality=modality)
    return save_checkpoint(model.eval(), info, folder)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve-models")
    return {
        "ct": _classifier(root / "ct", "ct", ["NonCOVID", "COVID"]),
        "cxr": _classifier(root / "cxr", "cxr", ["Normal", "COVID"]),
        "lesion": _segmenter(root / "lesion"),
        "cxr_lungs": _segmenter(root / "cxr_lungs", "cxr", ("background", "lung"), "tiny-cxr-lungs"),
    }


@pytest.fixture(scope="session")
def ct_models(checkpoints) -> ServedModels:
    return ServedModels.load(ct=checkpoints["ct"], lesion=checkpoints["lesion"])


@pytest.fixture(scope="session")
def all_models(checkpoints) -> ServedModels:
    return ServedModels.load(ct=checkpoints["ct"], cxr=checkpoints["cxr"], lesion=checkpoints["lesion"])


@pytest.fixture(scope="session")
def screen_models(checkpoints) -> ServedModels:
    """Every role of the screen road: CT and CXR classifiers, the lesion model and the CXR lung model."""
    return ServedModels.load(ct=checkpoints["ct"], cxr=checkpoints["cxr"], lesion=checkpoints["lesion"],
                             cxr_lungs=checkpoints["cxr_lungs"])


@pytest.fixture()
def client_for():
    """``client_for(models, **config)``: a TestClient around a fresh app, closed (and its pool stopped) after the test."""
    from fastapi.testclient import TestClient

    opened = []

    def make(models: ServedModels, **config) -> TestClient:
        client = TestClient(create_app(ServeConfig(**config), models), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def real(data_root):
    """``real(relative)``: bytes of a file in the shared data folder."""

    def read(relative: str) -> bytes:
        path = data_root / relative
        if not path.exists():
            pytest.skip(f"{path} is not in the data folder")
        return path.read_bytes()

    return read


class LiveServer:
    """The app under uvicorn on a free loopback port, in a thread, for tests that need real sockets."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)

    def __exit__(self, *exc) -> None:
        self.stop()
        self.sock.close()


@pytest.fixture()
def live_server():
    """``live_server(models, **config)``: a started :class:`LiveServer`, stopped after the test."""
    started = []

    def start(models: ServedModels, **config) -> LiveServer:
        server = LiveServer(create_app(ServeConfig(**config), models)).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)
