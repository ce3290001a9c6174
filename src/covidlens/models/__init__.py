"""Classification models: import this package to fill the registry."""

from covidlens.models import efficientnet_lite, seed000, torchvision_models  # noqa: F401  (registration)
from covidlens.models import blocks, resnet_fpn, unet  # noqa: F401  (registration)
from covidlens.models.registry import ModelSpec, create_model, get_model_spec, list_models, register_model

__all__ = ["ModelSpec", "create_model", "get_model_spec", "list_models", "register_model"]
