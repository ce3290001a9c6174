"""Two real DDP processes on the CPU (gloo) choose the best epoch on the whole validation split:
their synchronised validation AUC equals one process's on the same data and weights."""

import csv

import lightning as L
import pytest
import torch

from covidlens.checkpoint import load_checkpoint
from covidlens.data.datasets import load_dataset
from covidlens.training.classification import build_datamodule
from covidlens.training.config import load_config
from covidlens.training.fit import train
from covidlens.training.module import ClassifierModule


def _odd_table(covid_ct, tmp_path):
    """8 + 8 training and 5 + 4 validation slices: 9 validation images do not split evenly over two
    processes, so a sampler that pads shards with repeats would change the AUC."""
    names = {
        "COVID": sorted((covid_ct / "CT_COVID").iterdir())[:13],
        "NonCOVID": sorted((covid_ct / "CT_NonCOVID").iterdir())[:12],
    }
    table = tmp_path / "odd.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split", "patient_id"])
        for label, files in names.items():
            for i, path in enumerate(files):
                writer.writerow([path, label, "train" if i < 8 else "val", f"{label}-{i}"])
    return table


def _config(table, out_dir, name, **trainer):
    sets = [f"name={name}", f"trainer.out_dir={out_dir}", f"data.dataset={table}", "model.input_size=64",
            "optim.epochs=1", "optim.batch_size=4", "optim.lr=1e-3", "trainer.accelerator=cpu",
            "data.positive_class=COVID", *[f"trainer.{k}={v}" for k, v in trainer.items()]]
    return load_config(None, sets)


def _logged_val_auc(run_dir) -> float:
    with (run_dir / "logs" / "metrics.csv").open() as handle:
        return float([r for r in csv.DictReader(handle) if r.get("val_auc")][-1]["val_auc"])


@pytest.mark.slow
def test_two_process_ddp_validation_auc_equals_one_process(covid_ct, tmp_path):
    table = _odd_table(covid_ct, tmp_path)
    run_dir = train(_config(table, tmp_path, "ddp", devices=2, strategy="ddp_spawn"), progress=False)
    ddp_auc = _logged_val_auc(run_dir)
    assert 0.0 <= ddp_auc <= 1.0

    # The same weights, scored by one process through the same validation step.
    config = _config(table, tmp_path, "single", devices=1)
    prepared = build_datamodule(config, load_dataset(config.data.dataset, config.data.root))
    dm, table_ = prepared.datamodule, prepared.table
    module = ClassifierModule(config.to_dict(), 1, table_.classes.index("COVID"), pretrained=False)
    module.model.load_state_dict(load_checkpoint(run_dir / "model").model.state_dict())
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    single = trainer.validate(module, datamodule=dm, verbose=False)[0]["val_auc"]
    assert ddp_auc == pytest.approx(single, abs=1e-6)

    # And by hand, image by image, with scikit-learn.
    from sklearn.metrics import roc_auc_score

    from covidlens.inference import predict_arrays

    val = table_.split("val")
    prob = predict_arrays(load_checkpoint(run_dir / "model"), val)
    manual = roc_auc_score([int(table_.classes[s.label] == "COVID") for s in val], prob)
    assert ddp_auc == pytest.approx(manual, abs=1e-6)
    assert torch.distributed.is_available()
