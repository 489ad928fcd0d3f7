"""EdgeFace on onnxruntime behind the torch model's small API, so that every caller of `EdgeFaceModel` works.

[`OnnxEdgeFace`] is called like the torch model (`model(pixel_values=...)` returns an output with `.embeddings`)
and has what `hfr_hf.inference.embed_images` and the evaluation runner read (`config`, `device`), so
`load_model("model.onnx")` serves `hfr-hf embed / verify / verify-folder / evaluate` unchanged. Files exported by
`hfr_hf.onnx_export` carry their model and preprocessor configurations; other EdgeFace ONNX files (one input
(N, 3, H, W), one output (N, D)) get the default preprocessing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .configuration_edgeface import EdgeFaceConfig
from .image_processing_edgeface import EdgeFaceImageProcessor
from .modeling_edgeface import EdgeFaceModelOutput

__all__ = ["OnnxEdgeFace", "load_onnx_model", "onnx_providers", "require_onnx"]


def require_onnx(feature: str, *modules: str) -> None:
    """A clear error when the `onnx` extra is not installed."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            raise ValueError(f"{feature} needs {module}; install the ONNX extra: pip install 'hfr-hf[onnx]'.") from None


def onnx_providers(device: str | torch.device = "cpu") -> list[str]:
    """onnxruntime execution providers for a torch-style device name (`cpu`, `cuda`, `cuda:1` uses the default
    GPU of the CUDA provider)."""
    import onnxruntime as ort

    kind = torch.device(device).type
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError(
                "This onnxruntime has no CUDA execution provider; install onnxruntime-gpu or use --device cpu."
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ValueError(f"ONNX models run on cpu or cuda, not {device}.")


class OnnxEdgeFace:
    """
    An exported EdgeFace model on an onnxruntime session.

    Args:
        path: the `.onnx` file.
        device: `cpu` or `cuda` (inputs and outputs stay on the host either way).
        threads: intra-op threads of onnxruntime (default: onnxruntime's choice, one per physical core).
        session_options: `onnxruntime.SessionOptions` to start from, e.g. with `use_per_session_threads = False`
            so that several models in one process share the pool of `onnxruntime.set_global_thread_pool_sizes`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        threads: int | None = None,
        session_options=None,
    ):
        require_onnx("Running .onnx models", "onnxruntime")
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model {self.path} does not exist; make one with `hfr-hf export-onnx`.")
        options = session_options or ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        providers = onnx_providers(device)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types for unreadable graphs
            raise ValueError(f"{self.path} could not be loaded as an ONNX model ({error}).") from error
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or len(outputs) != 1 or len(outputs[0].shape) != 2:
            raise ValueError(
                f"{self.path} is not an EdgeFace-style model: expected one input (batch, 3, H, W) and one output "
                f"(batch, D), got inputs {[i.shape for i in inputs]} and outputs {[o.shape for o in outputs]}."
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        if "config" in self.metadata:
            self.config = EdgeFaceConfig.from_dict(json.loads(self.metadata["config"]))
        else:
            _, channels, height, _ = inputs[0].shape
            size = height if isinstance(height, int) else 112
            dim = outputs[0].shape[1]
            self.config = EdgeFaceConfig(
                variant=None, image_size=size, embedding_size=dim if isinstance(dim, int) else 512
            )
        self.device = torch.device("cpu")  # where callers should put pixel_values: onnxruntime reads host memory

    def image_processor(self) -> EdgeFaceImageProcessor:
        """The preprocessing recorded in the file, else the default one at the graph's input size."""
        if "preprocessor_config" in self.metadata:
            return EdgeFaceImageProcessor.from_dict(json.loads(self.metadata["preprocessor_config"]))
        size = self.config.image_size
        return EdgeFaceImageProcessor(size={"height": size, "width": size})

    def embed(self, pixel_values: np.ndarray | torch.Tensor) -> np.ndarray:
        """Raw (N, embedding_size) float32 embeddings of a batch of preprocessed faces."""
        if isinstance(pixel_values, torch.Tensor):
            pixel_values = pixel_values.detach().cpu().numpy()
        pixel_values = np.ascontiguousarray(pixel_values, dtype=np.float32)
        expected = (self.config.num_channels, self.config.image_size, self.config.image_size)
        if pixel_values.ndim != 4 or pixel_values.shape[1:] != expected:
            raise ValueError(
                f"{self.path.name} expects pixel_values of shape (batch, {', '.join(map(str, expected))}), got "
                f"{tuple(pixel_values.shape)}. Prepare images with EdgeFaceImageProcessor."
            )
        return self.session.run([self.output_name], {self.input_name: pixel_values})[0]

    def __call__(self, pixel_values: np.ndarray | torch.Tensor, **kwargs) -> EdgeFaceModelOutput:
        embeddings = torch.from_numpy(self.embed(pixel_values))
        return EdgeFaceModelOutput(embeddings=embeddings, pooler_output=embeddings)

    def get_embeddings(self, pixel_values: np.ndarray | torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(N, embedding_size) embeddings, L2-normalised unless `normalize=False` (as `EdgeFaceModel`'s)."""
        embeddings = self(pixel_values).embeddings
        return F.normalize(embeddings, dim=-1) if normalize else embeddings

    def eval(self) -> OnnxEdgeFace:
        return self

    def __repr__(self) -> str:
        return f"OnnxEdgeFace({str(self.path)!r}, variant={self.config.variant!r})"


def load_onnx_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", threads: int | None = None
) -> tuple[OnnxEdgeFace, EdgeFaceImageProcessor]:
    """An ONNX EdgeFace model and its image processor (the counterpart of `hfr_hf.inference.load_model`)."""
    model = OnnxEdgeFace(path, device=device, threads=threads)
    return model, model.image_processor()
