"""int8 EdgeFace: onnxruntime quantisation of an exported graph, torch dynamic quantisation of the model, both
with accuracy-aware layer selection on calibration faces.

Quantising every layer of EdgeFace costs too much accuracy: with 8-bit activations scaled per tensor, the
channels-last activations of the later stages (after LayerNorm and GELU, up to 16x larger in some channels than in
the median one) keep only a few effective bits, and the errors of ~50 layers add up. On EdgeFace-XXS and AT&T faces
the embeddings of the fully quantised models keep a mean cosine to the float ones of only 0.90 (onnxruntime static,
QDQ), 0.94 (onnxruntime dynamic) and 0.93 (torch dynamic, as the official `_q` checkpoints); clipping the ranges
(percentile or entropy calibration) is worse, because those large channels matter.

So the layers are chosen by measurement ([`select_layers`]): the whole set is tried first; if the embeddings of
the calibration faces drift below `min_cosine` (the smallest cosine over the faces), each layer is quantised alone
to rank the layers by the harm they do, and the longest run of least harmful layers that still meets the target is
found by bisection (every candidate answer is measured, so the result always meets it on the calibration faces).
The choice is recorded in the quantised file's metadata (`quantization`) and in the returned report.

- onnxruntime, static (default; calibration faces needed): `quantize_static` with MinMax ranges, QDQ format,
  per-channel int8 weights and uint8 activations (onnxruntime's advice for x86 CPUs), on Conv / MatMul / Gemm.
- onnxruntime, dynamic: `quantize_dynamic` (activation ranges computed at run time) on Conv / MatMul; the faces
  are then needed only to check and select.
- torch: `torch.ao.quantization.quantize_dynamic` of the `nn.Linear` layers, the format of the official `_q`
  checkpoints. torch deprecates `torch.ao.quantization` in favour of torchao's `quantize_`; in torch 2.13 it still
  works and its fbgemm kernels run in eager mode, where torchao's int8 CPU path needs `torch.compile`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .image_processing_edgeface import EdgeFaceImageProcessor

__all__ = [
    "DEFAULT_MIN_COSINE",
    "QuantizationReport",
    "calibration_pixel_values",
    "min_cosine",
    "quantize_onnx",
    "quantize_torch",
    "select_layers",
]

# Target on the calibration faces; a little above the 0.99 the package promises on other faces.
DEFAULT_MIN_COSINE = 0.995
_ONNX_LAYER_OPS = {"static": ("Conv", "MatMul", "Gemm"), "dynamic": ("Conv", "MatMul")}


@dataclass
class QuantizationReport:
    """What was quantised and how close the int8 embeddings stay to the float ones on the calibration faces."""

    backend: str
    method: str
    quantized_layers: list[str]
    candidate_layers: int
    calibration_images: int
    min_cosine: float | None
    target: float | None
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        line = f"{self.backend} {self.method} int8: {len(self.quantized_layers)} of {self.candidate_layers} layers"
        if self.min_cosine is not None:
            line += f", min cosine to float {self.min_cosine:.4f} on {self.calibration_images} calibration faces"
        return line


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest cosine similarity between matching rows of two embedding matrices."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


def calibration_pixel_values(
    images: str | os.PathLike | Sequence, processor: EdgeFaceImageProcessor, max_images: int = 128
) -> np.ndarray:
    """
    (N, 3, H, W) float32 pixel values of aligned faces for calibration: a folder (searched recursively), image
    paths or in-memory images; at most `max_images`, evenly spaced over the sorted list so every identity counts.
    """
    from .inference import list_images, load_image

    if isinstance(images, (str, os.PathLike)):
        images = list_images(images)
    if len(images) == 0:
        raise ValueError("No calibration images found; pass a folder of aligned face images.")
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}.")
    picked = [images[int(i)] for i in np.linspace(0, len(images) - 1, min(max_images, len(images)))]
    loaded = [load_image(i) if isinstance(i, (str, os.PathLike)) else i for i in picked]
    return processor(loaded, return_tensors="np").pixel_values.astype(np.float32)


def select_layers(
    candidates: Sequence[str],
    score: Callable[[list[str]], float],
    target: float,
    progress: bool = True,
) -> tuple[list[str], float]:
    """
    The largest set of layers to quantise whose `score` (smallest cosine of int8 to float embeddings) meets
    `target`, and that score. See the module docstring for the search; `score(names)` quantises `names` only.
    """
    candidates = list(candidates)
    everything = score(candidates)
    if everything >= target:
        return candidates, everything
    solo = {name: score([name]) for name in tqdm(candidates, desc="layer sensitivity", disable=not progress)}
    order = sorted(candidates, key=lambda name: -solo[name])  # least harmful first; ties keep graph order
    # Invariant: quantising order[:low] meets the target (0 layers trivially), order[:high] does not.
    low, high, low_score = 0, len(order), 1.0
    while high - low > 1:
        middle = (low + high) // 2
        middle_score = score(order[:middle])
        if middle_score >= target:
            low, low_score = middle, middle_score
        else:
            high = middle
    if low == 0:
        raise ValueError(
            f"Quantising any single layer brings the embeddings below cosine {target} to the float ones "
            f"(best {max(solo.values()):.4f}); lower the target (--min-cosine) or keep the float model."
        )
    chosen = set(order[:low])
    return [name for name in candidates if name in chosen], low_score


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantiser logs advice through the root logger on every call (pre-processing, per-channel axes
    of 1-d weights it skips); the selection calls it dozens of times."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class _PixelValuesReader:
    """onnxruntime `CalibrationDataReader` over preprocessed faces, in batches."""

    def __init__(self, pixel_values: np.ndarray, input_name: str, batch_size: int = 16) -> None:
        self.batches = [{input_name: pixel_values[i : i + batch_size]} for i in range(0, len(pixel_values), batch_size)]
        self.position = 0

    def get_next(self) -> dict | None:
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return self.batches[self.position - 1]

    def rewind(self) -> None:
        self.position = 0


def _onnx_candidates(proto, method: str) -> list[str]:
    """Nodes with a constant weight (Conv / MatMul / Gemm) that `method` can quantise, in graph order."""
    constants = {init.name for init in proto.graph.initializer}
    ops = _ONNX_LAYER_OPS[method]
    return [n.name for n in proto.graph.node if n.op_type in ops and len(n.input) > 1 and n.input[1] in constants]


def quantize_onnx(
    model: str | os.PathLike,
    output: str | os.PathLike,
    calibration: str | os.PathLike | Sequence | np.ndarray | None = None,
    method: str = "static",
    min_cosine_target: float | None = DEFAULT_MIN_COSINE,
    max_images: int = 128,
    per_channel: bool = True,
    quant_format: str = "qdq",
    progress: bool = True,
) -> QuantizationReport:
    """
    Quantise an exported EdgeFace ONNX file to int8 and write it to `output` (metadata kept, `quantization` added).

    Args:
        model: the float `.onnx` file (from [`hfr_hf.onnx_export.export_onnx`]).
        output: the `.onnx` file to write.
        calibration: aligned faces (a folder, image paths or images, or preprocessed pixel values (N, 3, H, W))
            for the activation ranges (static) and the layer selection. Required for `static`; without it
            `dynamic` quantises every candidate layer unchecked.
        method: `static` or `dynamic`.
        min_cosine_target: smallest cosine of int8 to float embeddings allowed on the calibration faces
            (None: quantise every candidate layer).
        max_images: calibration faces used at most.
        per_channel: int8 weights scaled per output channel (else per tensor).
        quant_format: `qdq` (QuantizeLinear/DequantizeLinear pairs, onnxruntime's advice) or `qoperator`.
    """
    from .onnx_inference import require_onnx

    require_onnx("int8 quantisation of ONNX models", "onnx", "onnxruntime")
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    from .onnx_export import read_onnx_metadata, save_onnx_atomic
    from .onnx_inference import OnnxEdgeFace

    # onnxruntime from mid-2026 on (1.32 here) keeps calibration ranges between calls; older ones recalibrate.
    reuse_ranges = "calibration_cache_path" in inspect.signature(quantize_static).parameters

    if method not in _ONNX_LAYER_OPS:
        raise ValueError(f"method must be 'static' or 'dynamic', got {method!r}.")
    formats = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
    if quant_format not in formats:
        raise ValueError(f"quant_format must be 'qdq' or 'qoperator', got {quant_format!r}.")
    output = Path(output)
    if output.suffix != ".onnx":
        raise ValueError(f"The output must be an .onnx file, got {output.name}.")
    if method == "static" and calibration is None:
        raise ValueError("Static int8 quantisation needs calibration faces: pass a folder of aligned face images.")
    float_model = OnnxEdgeFace(model, threads=None)
    metadata = read_onnx_metadata(model)
    if "quantization" in metadata:
        raise ValueError(f"{model} is already quantised; quantise the float model that export-onnx wrote.")
    pixel_values = None
    if calibration is not None:
        if isinstance(calibration, np.ndarray):
            pixel_values = calibration.astype(np.float32)
        else:
            pixel_values = calibration_pixel_values(calibration, float_model.image_processor(), max_images)
    proto = onnx.load(str(model))
    candidates = _onnx_candidates(proto, method)
    if not candidates:  # (onnxruntime reads an empty node list as "every node")
        raise ValueError(f"{model} has no Conv / MatMul layer with constant weights to quantise.")

    with tempfile.TemporaryDirectory(prefix="hfr-hf-int8-") as tmp, _quiet_quantizer():
        cache = Path(tmp) / "calibration_ranges.json"
        trial = Path(tmp) / "trial.onnx"

        def quantize(names: list[str], path: Path) -> Path:
            if method == "static":
                quantize_static(
                    str(model),
                    str(path),
                    _PixelValuesReader(pixel_values, float_model.input_name),
                    quant_format=formats[quant_format],
                    per_channel=per_channel,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    op_types_to_quantize=list(_ONNX_LAYER_OPS[method]),
                    nodes_to_quantize=names,
                    **({"calibration_cache_path": str(cache)} if reuse_ranges else {}),
                )
            else:
                quantize_dynamic(
                    str(model),
                    str(path),
                    per_channel=per_channel,
                    weight_type=QuantType.QInt8,
                    op_types_to_quantize=list(_ONNX_LAYER_OPS[method]),
                    nodes_to_quantize=names,
                )
            return path

        checked = pixel_values is not None and min_cosine_target is not None
        if checked:
            evaluation = pixel_values[:: max(1, len(pixel_values) // 32)]  # 32 faces or so for the selection
            reference = float_model.embed(evaluation)

            def score(names: list[str]) -> float:
                return min_cosine(OnnxEdgeFace(quantize(names, trial), threads=None).embed(evaluation), reference)

            chosen, achieved = select_layers(candidates, score, min_cosine_target, progress)
        else:
            if pixel_values is None:
                warnings.warn(
                    "Dynamic int8 quantisation without calibration faces quantises every layer unchecked; pass "
                    "aligned faces to keep the embeddings within the cosine target.",
                    UserWarning,
                    stacklevel=2,
                )
            chosen, achieved = candidates, None
        quantized = onnx.load(str(quantize(chosen, Path(tmp) / "int8.onnx")))

    report = QuantizationReport(
        backend="onnxruntime",
        method=method,
        quantized_layers=chosen,
        candidate_layers=len(candidates),
        calibration_images=0 if pixel_values is None else len(pixel_values),
        min_cosine=achieved,
        target=min_cosine_target if checked else None,
        settings={
            "format": quant_format if method == "static" else "integer ops",
            "weights": "int8, per channel" if per_channel else "int8, per tensor",
            "activations": "uint8, static ranges (MinMax)" if method == "static" else "uint8, dynamic ranges",
        },
    )
    metadata["quantization"] = json.dumps(report.to_dict())
    del quantized.metadata_props[:]
    onnx.helper.set_model_props(quantized, metadata)
    save_onnx_atomic(quantized, output)
    return report


def quantize_torch(
    model: nn.Module,
    calibration: np.ndarray | torch.Tensor | None = None,
    min_cosine_target: float | None = DEFAULT_MIN_COSINE,
    progress: bool = True,
    layers: Sequence[str] | None = None,
) -> tuple[nn.Module, QuantizationReport]:
    """
    A copy of an `EdgeFaceModel` with int8 dynamic `nn.Linear` layers (torch's `quantize_dynamic`), chosen on the
    preprocessed calibration faces `calibration` (N, 3, H, W) to keep the cosine target; without calibration
    faces every Linear layer is quantised, and `layers` (names of Linear modules, e.g. the `quantized_layers` of
    an earlier report) quantises those without a selection.
    """
    from torch.ao.quantization import quantize_dynamic

    model = model.eval()
    candidates = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]

    def quantize(names: list[str]) -> nn.Module:
        with warnings.catch_warnings():
            # torch.ao.quantization is deprecated for torchao (see the module docstring); it still works here.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            return quantize_dynamic(model, set(names), dtype=torch.qint8)

    checked = calibration is not None and min_cosine_target is not None and layers is None
    if layers is not None:
        unknown = sorted(set(layers) - set(candidates))
        if unknown:
            raise ValueError(f"{', '.join(unknown[:5])} are not Linear layers of this model.")
        chosen, achieved = list(layers), None
    elif checked:
        pixel_values = torch.as_tensor(np.asarray(calibration, dtype=np.float32))
        evaluation = pixel_values[:: max(1, len(pixel_values) // 32)]
        with torch.inference_mode():
            reference = model(pixel_values=evaluation).embeddings.numpy()

        def score(names: list[str]) -> float:
            with torch.inference_mode():
                return min_cosine(quantize(names)(pixel_values=evaluation).embeddings.numpy(), reference)

        chosen, achieved = select_layers(candidates, score, min_cosine_target, progress)
    else:
        chosen, achieved = candidates, None
    report = QuantizationReport(
        backend="torch",
        method="dynamic",
        quantized_layers=chosen,
        candidate_layers=len(candidates),
        calibration_images=len(calibration) if checked else 0,
        min_cosine=achieved,
        target=min_cosine_target if checked else None,
        settings={"weights": "int8, per tensor", "activations": "uint8, dynamic ranges", "engine": "fbgemm/x86"},
    )
    return quantize(chosen), report
