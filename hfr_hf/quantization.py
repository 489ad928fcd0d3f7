"""int8 EdgeFace: onnxruntime quantisation of an exported graph, torch dynamic quantisation of the model, both
with accuracy-aware layer selection on calibration faces.

Quantising every layer of EdgeFace costs too much accuracy: with 8-bit activations scaled per tensor, the
channels-last activations of the later stages (after LayerNorm and GELU, up to 16x larger in some channels than in
the median one) keep only a few effective bits, and the errors of ~50 layers add up. On EdgeFace-XXS and AT&T faces
the embeddings of the fully quantised models keep a mean cosine to the float ones of only 0.90 (onnxruntime static,
QDQ, every Conv and MatMul), 0.98 (onnxruntime dynamic, every MatMul) and 0.93 (torch dynamic, as the official
`_q` checkpoints); clipping the ranges (percentile or entropy calibration) is worse, because those large
channels matter. Two things follow:

- Smoothing ([`smooth_activations`], SmoothQuant: Xiao et al., ICML 2023) before onnxruntime quantises: where a
  LayerNorm feeds linear layers only, its output channels are divided by s_j and the layers' weights multiplied
  by s_j, s_j = sqrt(max|x_j| / max|W_j|) on the calibration faces. The float graph computes the same numbers; the
  largest channel after the last stage's norms drops from ~16x the median to ~3x. (GELU outputs, which feed the
  second MLP layers, cannot be smoothed this way: GELU does not commute with scaling.)
- Layer selection by measurement ([`select_layers`]): the whole set is tried first; if the embeddings of the
  calibration faces drift below `min_cosine` (the smallest cosine over the faces), each layer is quantised alone
  to rank the layers by the harm they do, and the longest run of least harmful layers that still meets the target
  is found by bisection (every candidate answer is measured, so the result always meets it on the calibration
  faces). The choice is recorded in the quantised file's metadata (`quantization`) and in the returned report.

Methods:

- onnxruntime, dynamic (default): `quantize_dynamic` of the MatMul layers (every linear layer but the head's
  Gemm): int8 per-channel weights, activations quantised per tensor at run time. onnxruntime fuses each into one
  DynamicQuantizeMatMul with its bias, which is faster than the float MatMul + bias Add at batch 1 and 32. Conv
  layers stay float: onnxruntime's ConvInteger is ~3x slower than its float NCHWc convolutions.
- onnxruntime, static (calibration faces needed): `quantize_static` with MinMax ranges, QDQ format, per-channel
  int8 weights and uint8 activations (onnxruntime's advice for x86 CPUs), on Conv / MatMul / Gemm. At EdgeFace's
  size the Quantize/DequantizeLinear pairs around every layer cost what int8 arithmetic saves.
- torch: `torch.ao.quantization.quantize_dynamic` of the `nn.Linear` layers, the format of the official `_q`
  checkpoints. torch deprecates `torch.ao.quantization` in favour of torchao's `quantize_`; in torch 2.13 it still
  works and its fbgemm kernels run in eager mode, where torchao's int8 CPU path needs `torch.compile`.
"""

from __future__ import annotations

import contextlib
import copy
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
    "DEFAULT_SMOOTHING",
    "QuantizationReport",
    "calibration_pixel_values",
    "min_cosine",
    "quantize_onnx",
    "quantize_torch",
    "select_layers",
    "smooth_activations",
]

# Target on the calibration faces; a little above the 0.99 the package promises on other faces.
DEFAULT_MIN_COSINE = 0.995
DEFAULT_SMOOTHING = 0.5  # SmoothQuant's α: how much of a channel's range moves from the activation to the weights
_ONNX_LAYER_OPS = {"static": ("Conv", "MatMul", "Gemm"), "dynamic": ("MatMul",)}


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
        if self.settings.get("smoothing", "none") != "none":
            line += " (smoothed)"
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
    from .images import list_images, load_image

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


def _layer_norm_activation_ranges(proto, names: list[str], pixel_values: np.ndarray, input_name: str) -> list:
    """Largest |value| per channel (last axis) of the tensors `names` of a float graph over the faces."""
    import onnx
    import onnxruntime as ort

    probe = copy.deepcopy(proto)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in names)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every probed tensor
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    ranges = None
    for start in range(0, len(pixel_values), 16):
        outputs = session.run(names, {input_name: pixel_values[start : start + 16]})
        batch = [np.abs(out.reshape(-1, out.shape[-1])).max(axis=0) for out in outputs]
        ranges = batch if ranges is None else [np.maximum(a, b) for a, b in zip(ranges, batch)]
    return ranges


def smooth_activations(proto, pixel_values: np.ndarray, input_name: str, alpha: float = DEFAULT_SMOOTHING) -> int:
    """
    SmoothQuant on a float EdgeFace graph, in place (see the module docstring): for every LayerNormalization whose
    output feeds only MatMul / Gemm layers with constant weights, divide the norm's scale and shift by s and
    multiply the layers' input rows by s, per channel j:
    s_j = max|x_j|^α / max|W_j|^(1-α), with max|x_j| over the faces `pixel_values` (N, 3, H, W) and max|W_j| over
    the layers' weights; s is scaled to a geometric mean of 1. Returns the number of norms smoothed.
    """
    from onnx import numpy_helper

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"The smoothing strength alpha must be between 0 and 1, got {alpha}.")
    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def smoothable(node) -> bool:
        layers = consumers.get(node.output[0], [])
        return (
            len(node.input) == 3
            and all(name in initializers for name in node.input[1:])
            and bool(layers)
            and node.output[0] not in {out.name for out in graph.output}
            and all(
                layer.op_type in ("MatMul", "Gemm")
                and layer.input[0] == node.output[0]
                and layer.input[1] in initializers
                and not any(a.name == "transA" and a.i for a in layer.attribute)
                for layer in layers
            )
        )

    def own_copy(node, index: int) -> None:
        """Give `node` a constant of its own: the optimiser merges equal constants (e.g. norms still at 1 and 0)."""
        name = node.input[index]
        if len(consumers[name]) > 1:
            copy_name = f"{name}__{node.name or node.output[0]}"
            graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(initializers[name]), copy_name))
            initializers[copy_name] = graph.initializer[-1]
            consumers[name].remove(node)
            consumers[copy_name] = [node]
            node.input[index] = copy_name

    norms = [node for node in graph.node if node.op_type == "LayerNormalization" and smoothable(node)]
    if not norms:
        return 0
    ranges = _layer_norm_activation_ranges(proto, [node.output[0] for node in norms], pixel_values, input_name)

    def transposed(layer) -> bool:  # Gemm with transB stores the weight as (outputs, input channels)
        return layer.op_type == "Gemm" and any(a.name == "transB" and a.i for a in layer.attribute)

    def weight_rows(layer) -> np.ndarray:
        """The weight as (input channels, outputs)."""
        weight = numpy_helper.to_array(initializers[layer.input[1]])
        return weight.T if transposed(layer) else weight

    def store(name: str, value: np.ndarray) -> None:
        initializers[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))

    for node, activation_range in zip(norms, ranges):
        layers = consumers[node.output[0]]
        for owner, index in [(node, 1), (node, 2), *((layer, 1) for layer in layers)]:
            own_copy(owner, index)
        weight_range = np.max([np.abs(weight_rows(layer)).max(axis=1) for layer in layers], axis=0)
        scale = np.maximum(activation_range, 1e-5) ** alpha / np.maximum(weight_range, 1e-5) ** (1 - alpha)
        scale = scale / np.exp(np.log(scale).mean())
        for name in node.input[1:]:
            store(name, numpy_helper.to_array(initializers[name]) / scale)
        for layer in layers:
            rows = weight_rows(layer) * scale[:, None]
            store(layer.input[1], rows.T if transposed(layer) else rows)
    return len(norms)


def quantize_onnx(
    model: str | os.PathLike,
    output: str | os.PathLike,
    calibration: str | os.PathLike | Sequence | np.ndarray | None = None,
    method: str = "dynamic",
    min_cosine_target: float | None = DEFAULT_MIN_COSINE,
    max_images: int = 128,
    per_channel: bool = True,
    quant_format: str = "qdq",
    smoothing: float | None = DEFAULT_SMOOTHING,
    progress: bool = True,
) -> QuantizationReport:
    """
    Quantise an exported EdgeFace ONNX file to int8 and write it to `output` (metadata kept, `quantization` added).

    Args:
        model: the float `.onnx` file (from [`hfr_hf.onnx_export.export_onnx`]).
        output: the `.onnx` file to write.
        calibration: aligned faces (a folder, image paths or images, or preprocessed pixel values (N, 3, H, W))
            for the smoothing, the activation ranges (static) and the layer selection. Required for `static`;
            without it `dynamic` quantises every candidate layer unchecked and unsmoothed.
        method: `dynamic` (MatMul layers, activations quantised at run time) or `static` (Conv / MatMul / Gemm,
            QDQ with calibrated ranges).
        min_cosine_target: smallest cosine of int8 to float embeddings allowed on the calibration faces
            (None: quantise every candidate layer).
        max_images: calibration faces used at most.
        per_channel: int8 weights scaled per output channel (else per tensor).
        quant_format: `qdq` (QuantizeLinear/DequantizeLinear pairs, onnxruntime's advice) or `qoperator`.
        smoothing: SmoothQuant's α for [`smooth_activations`] (needs the calibration faces; None: no smoothing).
    """
    from .onnx_inference import require_onnx

    require_onnx("int8 quantisation of ONNX models", "onnx", "onnxruntime")
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    from .onnx_export import save_onnx_atomic
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
    metadata = dict(float_model.metadata)  # the file's metadata_props, as the session read them
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
        raise ValueError(
            f"{model} has no {' / '.join(_ONNX_LAYER_OPS[method])} layer with constant weights to quantise."
        )

    with tempfile.TemporaryDirectory(prefix="hfr-hf-int8-") as tmp, _quiet_quantizer():
        cache = Path(tmp) / "calibration_ranges.json"
        trial = Path(tmp) / "trial.onnx"
        smoothed = 0
        source = Path(model)
        if smoothing is not None and pixel_values is not None:
            smoothed = smooth_activations(proto, pixel_values, float_model.input_name, smoothing)
            source = save_onnx_atomic(proto, Path(tmp) / "smoothed.onnx")

        def quantize(names: list[str], path: Path) -> Path:
            if method == "static":
                quantize_static(
                    str(source),
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
                    str(source),
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
            "smoothing": f"SmoothQuant alpha={smoothing} on {smoothed} LayerNorms" if smoothed else "none",
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
