"""Class-activation explanations (CAM, Grad-CAM, Grad-CAM++), their rendering and their measurement."""

from covidlens.explain.cam import METHODS, explain_image, heat_map, resolve_layer

__all__ = ["METHODS", "explain_image", "heat_map", "resolve_layer"]
