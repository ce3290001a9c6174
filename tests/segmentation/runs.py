"""One tiny real segmentation run shared by the training, prediction and CLI tests (trained once per
session, whichever test asks first): 8 MedSeg training slices and 4 carved validation slices at
64 px, seed 001's UNet at a quarter of its width, 2 epochs."""

from __future__ import annotations

from pathlib import Path

_RUNS: dict[str, Path] = {}


def tiny_segmentation_config(data_root: Path, out_dir: Path, name: str = "seg", dataset: str = "medseg-infnet"):
    from covidlens.training.config import load_config

    return load_config(
        None,
        [
            f"name={name}",
            f"trainer.out_dir={out_dir}",
            f"data.root={data_root}",
            f"data.dataset={dataset}",
            "data.limit_per_class=8",
            "data.val_slices=4",
            "model.name=unet_seg",
            "model.pretrained=false",
            "model.kwargs={base_channels: 8}",
            "model.input_size=64",
            "optim.epochs=2",
            "optim.batch_size=4",
            "optim.lr=3e-3",
            "trainer.accelerator=cpu",
        ],
    )


def tiny_segmentation_run(data_root: Path, tmp_path_factory) -> Path:
    if "binary" not in _RUNS:
        from covidlens.training.fit import train

        out = tmp_path_factory.mktemp("segruns")
        _RUNS["binary"] = train(tiny_segmentation_config(data_root, out), progress=False)
    return _RUNS["binary"]
