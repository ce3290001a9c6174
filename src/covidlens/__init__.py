"""covidlens: screen chest CT and X-ray images for COVID-19, explain the evidence, measure lesions.

The library's front door, as ``timm.create_model`` is timm's::

    import covidlens
    ckpt = covidlens.load_checkpoint("runs/demo/model")
    rows = covidlens.predict(ckpt, ["scan.png"])
    run = covidlens.screen(["P001/"], "screened/", lesion="runs/lesions/model")   # one answer per study

Names are imported on first use, so ``import covidlens`` (and the command line) stays quick.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

#: Public name -> module that defines it.
_API = {
    "create_model": "covidlens.models",
    "list_models": "covidlens.models",
    "get_model_spec": "covidlens.models",
    "load_checkpoint": "covidlens.checkpoint",
    "predict": "covidlens.inference",
    "explain_image": "covidlens.explain",
    "read_image": "covidlens.data.io",
    "read_scan": "covidlens.data.io",
    "load_dataset": "covidlens.data.datasets",
    "list_datasets": "covidlens.data.datasets",
    "evaluate": "covidlens.evaluation.evaluate",
    "segment_image": "covidlens.segmentation",
    "segment_files": "covidlens.segmentation",
    "quantify_scan": "covidlens.measure.quantify",
    "screen": "covidlens.screening",
    "CovidlensError": "covidlens.errors",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'covidlens' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
