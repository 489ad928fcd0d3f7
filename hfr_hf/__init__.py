"""hfr_hf: cross-spectral face recognition (xEdgeFace) on the Hugging Face stack.

Importing the package registers EdgeFace with transformers' Auto classes, and marks the classes so that
every saved folder carries `auto_map` and the remote-code files (loadable without this package). The `hfr-hf`
command skips that at import (torch and transformers take seconds to import, and `--help` should not wait for
them): each of its commands imports what it needs.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys

__version__ = "0.1.0"

__all__ = [
    "EDGEFACE_VARIANTS",
    "EdgeFaceConfig",
    "EdgeFaceImageProcessor",
    "EdgeFaceModel",
    "EdgeFaceModelOutput",
    "__version__",
    "register_auto_classes",
]

_LAZY = {
    "EDGEFACE_VARIANTS": ".configuration_edgeface",
    "EdgeFaceConfig": ".configuration_edgeface",
    "EdgeFaceImageProcessor": ".image_processing_edgeface",
    "EdgeFaceModel": ".modeling_edgeface",
    "EdgeFaceModelOutput": ".modeling_edgeface",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_auto_classes() -> None:
    """Register EdgeFace with `AutoConfig`, `AutoModel` and `AutoImageProcessor` (idempotent)."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    from .configuration_edgeface import EdgeFaceConfig
    from .image_processing_edgeface import EdgeFaceImageProcessor
    from .modeling_edgeface import EdgeFaceModel

    AutoConfig.register(EdgeFaceConfig.model_type, EdgeFaceConfig, exist_ok=True)
    AutoModel.register(EdgeFaceConfig, EdgeFaceModel, exist_ok=True)
    if "image_processor_classes" in inspect.signature(AutoImageProcessor.register).parameters:  # transformers >= 5
        AutoImageProcessor.register(
            EdgeFaceConfig, image_processor_classes={"pil": EdgeFaceImageProcessor}, exist_ok=True
        )
    else:
        AutoImageProcessor.register(EdgeFaceConfig, slow_image_processor_class=EdgeFaceImageProcessor, exist_ok=True)

    EdgeFaceConfig.register_for_auto_class()
    EdgeFaceModel.register_for_auto_class("AutoModel")
    EdgeFaceImageProcessor.register_for_auto_class("AutoImageProcessor")


def _is_command_line() -> bool:
    return bool(sys.argv) and os.path.basename(sys.argv[0]).removesuffix(".exe") == "hfr-hf"


if not _is_command_line():
    register_auto_classes()
