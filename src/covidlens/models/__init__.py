"""Models for every task, reached through one registry: import this package to fill it.

Classifiers live in :mod:`covidlens.models.classification`, segmenters in
:mod:`covidlens.models.segmentation`; building blocks shared across tasks
(attention, FPRM, deformable convolution, UNet parts) in :mod:`covidlens.models.blocks`.
"""

from covidlens.models import classification, segmentation  # noqa: F401  (registration)
from covidlens.models.registry import (
    LEGACY_NAMES,
    ModelSpec,
    create_model,
    get_model_spec,
    list_models,
    model_arguments,
    register_model,
    upgrade_keys,
)

__all__ = [
    "LEGACY_NAMES",
    "ModelSpec",
    "create_model",
    "get_model_spec",
    "list_models",
    "model_arguments",
    "register_model",
    "upgrade_keys",
]
