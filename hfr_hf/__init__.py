"""hfr_hf: cross-spectral face recognition (xEdgeFace) on the Hugging Face stack.

Importing the package registers EdgeFace with transformers' Auto classes, and marks the classes so that
every saved folder carries `auto_map` and the remote-code files (loadable without this package).
"""

import inspect

from transformers import AutoConfig, AutoImageProcessor, AutoModel

from .configuration_edgeface import EDGEFACE_VARIANTS, EdgeFaceConfig
from .image_processing_edgeface import EdgeFaceImageProcessor
from .modeling_edgeface import EdgeFaceModel, EdgeFaceModelOutput

__version__ = "0.1.0"

__all__ = [
    "EDGEFACE_VARIANTS",
    "EdgeFaceConfig",
    "EdgeFaceImageProcessor",
    "EdgeFaceModel",
    "EdgeFaceModelOutput",
    "__version__",
]

AutoConfig.register(EdgeFaceConfig.model_type, EdgeFaceConfig, exist_ok=True)
AutoModel.register(EdgeFaceConfig, EdgeFaceModel, exist_ok=True)
if "image_processor_classes" in inspect.signature(AutoImageProcessor.register).parameters:  # transformers >= 5
    AutoImageProcessor.register(EdgeFaceConfig, image_processor_classes={"pil": EdgeFaceImageProcessor}, exist_ok=True)
else:
    AutoImageProcessor.register(EdgeFaceConfig, slow_image_processor_class=EdgeFaceImageProcessor, exist_ok=True)

EdgeFaceConfig.register_for_auto_class()
EdgeFaceModel.register_for_auto_class("AutoModel")
EdgeFaceImageProcessor.register_for_auto_class("AutoImageProcessor")
