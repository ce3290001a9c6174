"""Running models fast and elsewhere: ONNX export, the ONNX Runtime backend, FLOP counts and the
throughput benchmark behind ``covidlens export`` and ``covidlens benchmark``.

ONNX and ONNX Runtime are imported only when a function here needs them.
"""

from covidlens.runtime.backends import BACKENDS, open_model
from covidlens.runtime.flops import count_flops, gmacs
from covidlens.runtime.onnx import OnnxModel, export_onnx, load_onnx, sidecar_path

__all__ = ["BACKENDS", "OnnxModel", "count_flops", "export_onnx", "gmacs", "load_onnx", "open_model", "sidecar_path"]
