"""EdgeFace to ONNX: one graph `pixel_values` (N, 3, 112, 112) -> `embeddings` (N, 512), with checked parity.

The graph comes from torch's default exporter (`torch.onnx.export(..., dynamo=True)`, which goes through
`torch.export` and needs `onnxscript`) at opset 18 (ONNX 1.13, 2022; onnxruntime 1.14 and later, and the
other current runtimes, read it). The batch axis is dynamic. Simplification (on by default) is onnxscript's
optimizer, which the exporter runs (constant folding, dead nodes, redundant casts and reshapes: 315 nodes instead
of 692 for EdgeFace-XXS), plus one onnxscript rewrite rule: the exporter writes GELU as x·(0.5·(1 + erf(x/√2))),
which onnxruntime's GELU fusion does not recognise; written as (x·(1 + erf(x/√2)))·0.5 (the same numbers:
multiplying by 0.5 is exact) it becomes one BiasGelu with the bias before it, 11 % faster on EdgeFace-XXS. Before
tracing, the layer scales γ are folded into the linear layers before them (`_fold_layer_scales`: one
per-channel Mul less per block, 5 % on EdgeFace-XXS). All are standard opset-18 graphs; onnxruntime applies its
other fusions when it loads the file.

An adapted model is merged first (`hfr_hf.adapters.merge_adapter`): the file holds a plain EdgeFace that costs
exactly what the base costs. Before anything is written the exported graph is run on onnxruntime against the
torch model, and the file is written through a temporary file, so a failure leaves nothing half-written.

The file carries what a user needs to feed it (`metadata_props`, read back with [`read_onnx_metadata`]):
variant, embedding size, the input normalisation, the licence of the EdgeFace weights, where the model came
from, the hfr_hf version, the adapter that was merged, and the full model and preprocessor configurations.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .image_processing_edgeface import EdgeFaceImageProcessor
from .modeling_edgeface import EdgeFaceModel

__all__ = [
    "INPUT_NAME",
    "ONNX_OPSET",
    "OUTPUT_NAME",
    "WEIGHTS_LICENSE",
    "OnnxExportError",
    "export_onnx",
    "load_export_model",
    "read_onnx_metadata",
    "save_onnx_atomic",
]

ONNX_OPSET = 18
_MIN_EXPORTER_OPSET = 18  # torch's exporter writes opset 18 at least
INPUT_NAME = "pixel_values"
OUTPUT_NAME = "embeddings"
WEIGHTS_LICENSE = "cc-by-nc-sa-4.0 (EdgeFace weights)"
# Largest difference allowed between onnxruntime's and torch's raw embeddings in the export check.
PARITY_ATOL = 1e-4


class OnnxExportError(ValueError):
    """The model could not be exported, or the exported graph does not reproduce the torch model."""


def load_export_model(
    model: str | os.PathLike, adapter: str | os.PathLike | None = None
) -> tuple[EdgeFaceModel, EdgeFaceImageProcessor, dict | None]:
    """
    The EdgeFace model of a folder (or Hub repo id) with an adapter folder merged in, its image processor, and
    the adapter's record (None without adapter).

    Raises [`OnnxExportError`] for a folder that holds no EdgeFace model and for an adapter trained on another
    base (the fingerprint check of `hfr_hf.adapters.load_adapter`).
    """
    path = Path(model)
    if adapter is not None:  # checked before the model loads: a wrong folder fails at once
        try:
            from .adapters import ADAPTER_RECORD_NAME, check_adapter_folder, load_adapter, merge_adapter
        except ImportError:
            raise OnnxExportError("--adapter needs PEFT; install it with `pip install hfr-hf[train]`.") from None
        try:
            check_adapter_folder(adapter, as_model="export it as the model, without --adapter")
        except ValueError as error:
            raise OnnxExportError(str(error)) from None
    if path.exists():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise OnnxExportError(f"{path} is not a model folder (no config.json); make one with `hfr-hf convert`.")
        model_type = json.loads(config_path.read_text()).get("model_type")
        if model_type != "edgeface":
            raise OnnxExportError(f"{path} holds a {model_type!r} model, not an EdgeFace model; only EdgeFace exports.")
    from .inference import load_model

    base, processor = load_model(model)  # a bare model folder gets EdgeFace's standard preprocessing
    if adapter is None:
        return base, processor, None
    adapter = Path(adapter)
    try:
        merged = merge_adapter(load_adapter(base, adapter))
    except ValueError as error:
        raise OnnxExportError(f"Cannot merge the adapter: {error}") from error
    record_path = adapter / ADAPTER_RECORD_NAME
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    record = {"path": str(adapter), **{k: record.get(k) for k in ("adapter_name", "preset", "base_model_fingerprint")}}
    return merged.eval(), processor, record


def _gelu_in_fusable_order():
    """onnxscript rule: torch's erf GELU, x·(0.5·(1 + erf(x/√2))), to the order onnxruntime fuses."""
    from onnxscript.rewriter import pattern

    def torch_order(op, x, sqrt2, one, half):
        return op.Mul(x, op.Mul(half, op.Add(op.Erf(op.Div(x, sqrt2)), one)))

    def fusable_order(op, x, sqrt2, one, half):
        return op.Mul(op.Mul(x, op.Add(op.Erf(op.Div(x, sqrt2)), one)), half)

    def constants_match(context, x, sqrt2, one, half, **_) -> bool:
        def scalar(value, expected: float) -> bool:
            tensor = value.const_value
            return tensor is not None and tensor.numpy().size == 1 and abs(float(tensor.numpy()) - expected) < 1e-6

        return scalar(sqrt2, math.sqrt(2)) and scalar(one, 1.0) and scalar(half, 0.5)

    return pattern.RewriteRule(torch_order, fusable_order, constants_match)


def _fold_layer_scales(model: EdgeFaceModel) -> None:
    """
    Multiply each block's layer scale γ into the linear layer before it, γ·(Wx + b) = (γW)x + γb, in place: the
    same numbers up to rounding, and one per-channel Mul less per block in the graph.
    """
    from .modeling_edgeface import EdgeFaceConvBlock, EdgeFaceLowRankLinear, EdgeFaceSplitTransposeBlock

    def fold(block: nn.Module, name: str, linear: nn.Module) -> None:
        scale = getattr(block, name)
        if scale is None:
            return
        if isinstance(linear, EdgeFaceLowRankLinear):
            linear = linear.linear2
        linear.weight.mul_(scale[:, None])
        if linear.bias is not None:
            linear.bias.mul_(scale)
        setattr(block, name, None)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (EdgeFaceConvBlock, EdgeFaceSplitTransposeBlock)):
                fold(module, "gamma", module.mlp.fc2)
            if isinstance(module, EdgeFaceSplitTransposeBlock):
                fold(module, "gamma_xca", module.xca.proj)


class _EmbeddingsOnly(nn.Module):
    """The model's raw embeddings as the single output: an ONNX graph takes and returns plain tensors."""

    def __init__(self, model: EdgeFaceModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values, return_dict=True).embeddings


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence exporter chatter that says nothing about the user's model: torchvision ops it skips and torch-internal
    deprecations."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _metadata(model: EdgeFaceModel, processor: EdgeFaceImageProcessor, source: str, adapter: dict | None) -> dict:
    from . import __version__

    size = processor.size
    mean, std = processor.image_mean, processor.image_std
    normalisation = (
        f"RGB, {size['height']}x{size['width']}, (x/255-{mean[0]})/{std[0]}"
        if len(set(mean)) == 1 and len(set(std)) == 1
        else f"RGB, {size['height']}x{size['width']}, (x/255-mean)/std with mean {mean} and std {std}"
    )
    props = {
        "variant": str(model.config.variant),
        "embedding_size": str(model.config.embedding_size),
        "input": f"{INPUT_NAME}: float32 (batch, 3, {size['height']}, {size['width']}), aligned faces",
        "output": f"{OUTPUT_NAME}: float32 (batch, {model.config.embedding_size}), raw; compare by cosine",
        "input_normalization": normalisation,
        "license": WEIGHTS_LICENSE,
        "source": source,
        "hfr_hf_version": __version__,
        "config": json.dumps({k: v for k, v in model.config.to_dict().items() if k != "_name_or_path"}),
        "preprocessor_config": processor.to_json_string(),
    }
    if adapter is not None:
        props["adapter"] = json.dumps(adapter)
    return props


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `metadata_props` of an ONNX file as a dict (the graph's weights are not loaded)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {prop.key: prop.value for prop in proto.metadata_props}


def save_onnx_atomic(proto, output: str | os.PathLike) -> Path:
    """Write an ONNX model as one file through a temporary file beside it, so a failure leaves no partial file."""
    import onnx

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        onnx.save_model(proto, tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; the result is an ordinary file
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return output


def _onnx_embeddings(proto, pixel_values: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a check on a few images: no thread pool to spin up
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: pixel_values})[0]


def export_onnx(
    model: str | os.PathLike | EdgeFaceModel,
    output: str | os.PathLike,
    adapter: str | os.PathLike | None = None,
    opset: int = ONNX_OPSET,
    optimize: bool = True,
    processor: EdgeFaceImageProcessor | None = None,
) -> Path:
    """
    Export an EdgeFace model to one ONNX file and check that onnxruntime reproduces it.

    Args:
        model: a model folder (from `hfr-hf convert`), a Hub repo id, or an `EdgeFaceModel` (a PEFT-wrapped one is
            merged on a copy, the argument is left as it was).
        output: the `.onnx` file to write (replaced if it exists).
        adapter: an xEdgeFace adapter folder to merge first (folder or repo id `model` only).
        opset: ONNX opset of the graph (18 or later: torch's exporter starts there).
        optimize: simplify the graph with onnxscript's optimizer (the exporter's default).
        processor: the image processor whose settings go into the metadata (default: the model folder's, else
            the default `EdgeFaceImageProcessor`).

    Returns the path of the written file. Raises [`OnnxExportError`] when the model cannot be loaded, the adapter
    does not fit it, or the exported graph differs from the torch model by more than 1e-4 on a random batch.
    """
    from .onnx_inference import require_onnx

    require_onnx("ONNX export", "onnx", "onnxruntime", "onnxscript")
    import onnx

    output = Path(output)
    if output.suffix != ".onnx":
        raise OnnxExportError(f"The output must be an .onnx file, got {output.name}.")
    if opset < _MIN_EXPORTER_OPSET:
        raise OnnxExportError(f"Opset {opset} is too old: torch's exporter supports opset 18 and later.")
    adapter_record = None
    if isinstance(model, nn.Module):
        if adapter is not None:
            raise OnnxExportError("Pass an adapter folder with a model folder, or a PeftModel on its own.")
        from_peft = not isinstance(model, EdgeFaceModel)
        if from_peft:
            from .adapters import merge_adapter

            model = merge_adapter(copy.deepcopy(model))
        source = model.name_or_path or "in-memory model"
        adapter_record = {"path": None, "merged_from": "PeftModel"} if from_peft else None
        processor = processor or EdgeFaceImageProcessor()
    else:
        source = str(model)
        model, folder_processor, adapter_record = load_export_model(model, adapter)
        processor = processor or folder_processor
    model = model.eval()
    size = model.config.image_size
    # Export a copy: tracing fills the positional encodings' cache with traced tensors, which must not stay in
    # the caller's model.
    wrapper = _EmbeddingsOnly(copy.deepcopy(model)).eval()
    if optimize:
        _fold_layer_scales(wrapper.model)
    example = torch.zeros(2, model.config.num_channels, size, size)
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                wrapper,
                (example,),
                dynamo=True,
                verbose=False,
                optimize=optimize,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch", min=1)}},
            )
    except Exception as error:  # the exporter raises many kinds; the user needs one sentence and the cause
        cause = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise OnnxExportError(f"torch could not export the model to ONNX opset {opset}: {cause}") from error
    if optimize:
        _gelu_in_fusable_order().apply_to_model(program.model)
    proto = program.model_proto
    written = next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))
    if written != opset:  # e.g. torch's exporter leaves the graph at 18 when asked for less
        raise OnnxExportError(f"torch's exporter wrote opset {written}, not the {opset} asked for.")
    for node in proto.graph.node:  # stack traces and local paths of the export: not for a shipped file
        del node.metadata_props[:]
    proto.producer_name = "hfr_hf"
    proto.doc_string = "EdgeFace face embedding model (George et al., IEEE T-BIOM 2024), exported by hfr_hf."
    onnx.helper.set_model_props(proto, _metadata(model, processor, source, adapter_record))
    onnx.checker.check_model(proto)

    generator = torch.Generator().manual_seed(0)
    check = torch.rand(3, model.config.num_channels, size, size, generator=generator) * 2 - 1
    with torch.no_grad():
        expected = model(pixel_values=check).embeddings.numpy()
    difference = float(np.abs(_onnx_embeddings(proto, check.numpy()) - expected).max())
    if not difference <= PARITY_ATOL:
        raise OnnxExportError(
            f"The exported graph's embeddings differ from the torch model's by {difference:.2e} "
            f"(more than {PARITY_ATOL:g}); nothing was written. Try another --opset, and report the model if it persists."
        )
    return save_onnx_atomic(proto, output)
