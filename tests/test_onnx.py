"""ONNX export and onnxruntime inference: parity with torch for every variant, merged adapters, metadata, the
command line, and the errors a user can meet."""

import json
import sys

import numpy as np
import onnx
import pytest
import torch
from safetensors.torch import load_file

from hfr_hf import EdgeFaceImageProcessor, EdgeFaceModel, __version__
from hfr_hf.cli import main
from hfr_hf.convert import convert_checkpoint
from hfr_hf.images import list_images
from hfr_hf.inference import embed_images, load_model
from hfr_hf.onnx_export import OnnxExportError, export_onnx, read_onnx_metadata
from hfr_hf.onnx_inference import OnnxEdgeFace

from .conftest import TESTED_VARIANTS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def golden_inputs(assets):
    return load_file(assets / "golden/inputs.safetensors")["pixel_values"]


@pytest.fixture(scope="module")
def model_folders(assets, xxs_folder, tmp_path_factory):
    """XXS from its official int8 file (the session's), the others from the golden fp32 state dicts."""
    root = tmp_path_factory.mktemp("onnx-models")
    folders = {"xxs": xxs_folder}
    for variant in TESTED_VARIANTS:
        if variant not in folders:
            folders[variant] = convert_checkpoint(assets / f"golden/edgeface_{variant}_official.pt", root / variant)
    return folders


@pytest.fixture(scope="module")
def exported(model_folders, xxs_onnx, tmp_path_factory):
    """Every tested variant exported once (XXS by the session's fixture)."""
    root = tmp_path_factory.mktemp("onnx-files")
    files = {"xxs": xxs_onnx}
    for variant, folder in model_folders.items():
        if variant not in files:
            files[variant] = export_onnx(folder, root / f"{variant}.onnx")
    return files


@pytest.fixture(scope="module")
def tiny_folder(tiny_config, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    EdgeFaceModel(tiny_config).save_pretrained(folder)
    EdgeFaceImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def torch_embeddings(folder, pixel_values):
    model = EdgeFaceModel.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(pixel_values=pixel_values).embeddings.numpy()


@pytest.mark.parametrize("variant", TESTED_VARIANTS)
def test_onnxruntime_reproduces_torch_on_the_golden_inputs(variant, assets, model_folders, exported, golden_inputs):
    onnx_embeddings = OnnxEdgeFace(exported[variant]).embed(golden_inputs)
    assert onnx_embeddings.shape == (16, 512)
    assert np.abs(onnx_embeddings - torch_embeddings(model_folders[variant], golden_inputs)).max() <= 1e-4
    golden = load_file(assets / f"golden/edgeface_{variant}.safetensors")["embeddings"].numpy()
    assert np.abs(onnx_embeddings - golden).max() <= 1e-4


def test_batch_axis_is_dynamic(exported, golden_inputs):
    graph = onnx.load(str(exported["xxs"])).graph
    assert [i.name for i in graph.input] == ["pixel_values"] and [o.name for o in graph.output] == ["embeddings"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named, not a fixed, size
    model = OnnxEdgeFace(exported["xxs"])
    one_by_one = np.concatenate([model.embed(golden_inputs[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(one_by_one, model.embed(golden_inputs)[:5], atol=1e-5)


def test_file_describes_the_model(exported, model_folders):
    metadata = read_onnx_metadata(exported["xxs"])
    assert metadata["variant"] == "xxs" and metadata["embedding_size"] == "512"
    assert metadata["input_normalization"] == "RGB, 112x112, (x/255-0.5)/0.5"
    assert metadata["license"] == "cc-by-nc-sa-4.0 (EdgeFace weights)"
    assert metadata["hfr_hf_version"] == __version__ and metadata["source"] == str(model_folders["xxs"])
    assert "adapter" not in metadata
    proto = onnx.load(str(exported["xxs"]))
    assert proto.opset_import[0].version == 18
    assert not any(node.metadata_props for node in proto.graph.node)  # no export stack traces or local paths
    model, processor = load_model(exported["xxs"])

    def settings(config):
        return {k: v for k, v in config.to_dict().items() if k != "_name_or_path"}

    assert settings(model.config) == settings(EdgeFaceModel.from_pretrained(model_folders["xxs"]).config)
    assert processor.to_dict() == EdgeFaceImageProcessor.from_pretrained(model_folders["xxs"]).to_dict()


def test_embed_images_gives_the_same_embeddings_from_either_backend(exported, model_folders, assets):
    paths = list_images(assets / "faces/att")[:20]
    from_onnx = embed_images(*load_model(exported["xs"]), paths, batch_size=8, progress=False)
    from_torch = embed_images(*load_model(model_folders["xs"]), paths, batch_size=8, progress=False)
    assert np.abs(from_onnx - from_torch).max() <= 1e-5


@pytest.fixture(scope="module")
def adapted(xxs_folder, golden_inputs, tmp_path_factory):
    """An adapter (LayerNorms, stem and stage 0) on XXS with deterministically perturbed weights, saved, and the
    PEFT model's own embeddings of the golden inputs."""
    from hfr_hf.adapters import add_adapter, save_adapter

    peft_model = add_adapter(EdgeFaceModel.from_pretrained(xxs_folder).eval(), "ln_stem_s0")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in (p for p in peft_model.parameters() if p.requires_grad):
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
        expected = peft_model(pixel_values=golden_inputs).embeddings.numpy()
    return save_adapter(peft_model, tmp_path_factory.mktemp("adapter") / "thermal"), expected


def test_adapted_model_exports_merged(xxs_folder, adapted, golden_inputs, tmp_path):
    adapter, expected = adapted
    path = export_onnx(xxs_folder, tmp_path / "adapted.onnx", adapter=adapter)
    onnx_embeddings = OnnxEdgeFace(path).embed(golden_inputs)
    assert np.abs(onnx_embeddings - expected).max() <= 1e-4
    assert np.abs(onnx_embeddings - torch_embeddings(xxs_folder, golden_inputs)).max() > 1e-2  # not the base
    record = json.loads(read_onnx_metadata(path)["adapter"])
    assert record["path"] == str(adapter) and len(record["base_model_fingerprint"]) == 64
    assert not any("ln_tuning" in init.name for init in onnx.load(str(path)).graph.initializer)  # no PEFT copies


def test_adapter_of_another_base_is_refused_before_writing(xxs_folder, tmp_path):
    from hfr_hf.adapters import add_adapter, save_adapter

    other = EdgeFaceModel.from_pretrained(xxs_folder)
    with torch.no_grad():
        other.head.fc.bias.add_(1.0)
    adapter = save_adapter(add_adapter(other, "ln"), tmp_path / "other-adapter")
    output = tmp_path / "out" / "model.onnx"
    with pytest.raises(OnnxExportError, match="only works on the exact base it was trained on"):
        export_onnx(xxs_folder, output, adapter=adapter)
    assert not output.exists() and not output.parent.exists()


def test_layer_scales_are_folded_into_the_linear_layers(exported, tiny_folder, tmp_path):
    """γ·(Wx + b) is exported as (γW)x + γb: no layer-scale constant is left in the graph (parity with the unfolded
    torch model is checked by the golden test above), the caller's model keeps its γ, --no-optimize keeps them."""

    def scale_constants(path):
        return [init.name for init in onnx.load(str(path)).graph.initializer if "gamma" in init.name]

    assert scale_constants(exported["xxs"]) == []
    model = EdgeFaceModel.from_pretrained(tiny_folder).eval()
    export_onnx(model, tmp_path / "folded.onnx")
    assert all(isinstance(block.gamma, torch.nn.Parameter) for stage in model.stages for block in stage.blocks)
    unfolded = export_onnx(model, tmp_path / "unfolded.onnx", optimize=False)
    assert len(scale_constants(unfolded)) == sum(1 for name, _ in model.named_parameters() if "gamma" in name)


def test_onnx_model_starts_from_given_session_options(exported):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session_options = OnnxEdgeFace(exported["xxs"], session_options=options).session.get_session_options()
    assert session_options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert (
        OnnxEdgeFace(exported["xxs"], threads=2, session_options=options)
        .session.get_session_options()
        .intra_op_num_threads
        == 2
    )


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(OnnxExportError, match="is not a model folder"):
        export_onnx(tmp_path / "photos", tmp_path / "m.onnx")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert/config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(OnnxExportError, match="not an EdgeFace model"):
        export_onnx(tmp_path / "bert", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_in_memory_peft_model_is_merged_on_a_copy(tiny_folder, tmp_path):
    from peft import PeftModel

    from hfr_hf.adapters import add_adapter

    peft_model = add_adapter(EdgeFaceModel.from_pretrained(tiny_folder).eval(), "ln")
    with torch.no_grad():
        for parameter in (p for p in peft_model.parameters() if p.requires_grad):
            parameter.add_(0.5)
    path = export_onnx(peft_model, tmp_path / "tiny.onnx")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = peft_model(pixel_values=x).embeddings.numpy()
    assert isinstance(peft_model, PeftModel)  # the caller's model is left wrapped
    assert np.abs(OnnxEdgeFace(path).embed(x) - expected).max() <= 1e-4


def test_cli_exports_and_embeds_with_the_onnx_file(tiny_folder, assets, tmp_path, capsys):
    output = tmp_path / "tiny.onnx"
    assert main(["export-onnx", str(tiny_folder), "--output", str(output)]) == 0
    assert "parity checked" in capsys.readouterr().out
    faces = [str(p) for p in list_images(assets / "faces/att/s1")[:4]]
    assert main(["embed", *faces, "--model", str(output), "--output", str(tmp_path / "onnx.npz")]) == 0
    assert main(["embed", *faces, "--model", str(tiny_folder), "--output", str(tmp_path / "torch.npz")]) == 0
    onnx_run, torch_run = np.load(tmp_path / "onnx.npz"), np.load(tmp_path / "torch.npz")
    assert np.abs(onnx_run["embeddings"] - torch_run["embeddings"]).max() <= 1e-5
    assert main(["verify", faces[0], faces[1], "--model", str(output), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["cosine"] > 0
    summaries = []
    for model in (output, tiny_folder):
        report = tmp_path / f"{model.name}.json"
        assert main(["verify-folder", str(assets / "faces/att"), "--model", str(model), "--json", str(report)]) == 0
        summaries.append(json.loads(report.read_text()))
    assert summaries[0]["images"] == 400 and summaries[0]["auc"] == pytest.approx(summaries[1]["auc"], abs=1e-6)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export-onnx", "{tmp}/nothing", "--output", "{tmp}/m.onnx"], "is not a model folder"),
        (["export-onnx", "{tiny}", "--output", "{tmp}/m.pt"], "must be an .onnx file"),
        (["export-onnx", "{tiny}", "--output", "{tmp}/m.onnx", "--opset", "17"], "supports opset 18 and later"),
        (["export-onnx", "{tiny}", "--adapter", "{tmp}", "--output", "{tmp}/m.onnx"], "holds no adapter_config.json"),
        (["export-onnx", "{tiny}", "--adapter", "{tiny}", "--output", "{tmp}/m.onnx"], "is a whole fine-tuned model"),
        (["embed", "{tmp}", "--model", "{tmp}/missing.onnx", "--output", "{tmp}/e.npz"], "does not exist"),
        (["quantize", "{tiny}", "--output", "{tmp}/q.onnx"], "takes an .onnx file"),
    ],
)
def test_cli_errors_are_one_sentence(argv, message, tiny_folder, tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    argv = [a.format(tmp=tmp_path, tiny=tiny_folder) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()


def test_onnx_model_refuses_an_adapter_and_bad_files(tiny_folder, tmp_path, capsys):
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(ValueError, match="could not be loaded as an ONNX model"):
        load_model(tmp_path / "junk.onnx")
    argv = ["evaluate", "--model", str(tmp_path / "junk.onnx"), "--adapter", str(tmp_path), "--protocol"]
    argv += [str(tmp_path / "p.csv"), "--root", str(tmp_path), "--report", str(tmp_path / "r.json")]
    (tmp_path / "p.csv").write_text("path_a,path_b,label\na.png,b.png,1\n")
    assert main(argv) == 1
    assert "cannot take --adapter" in capsys.readouterr().err


def test_missing_onnx_extra_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(ValueError, match=r"needs onnxruntime; install the ONNX extra: pip install 'hfr-hf\[onnx\]'"):
        load_model(tmp_path / "model.onnx")


def test_folder_without_preprocessor_gets_the_standard_preprocessing(tiny_config, tmp_path):
    torch.manual_seed(0)
    EdgeFaceModel(tiny_config).save_pretrained(tmp_path / "bare")  # weights and config only
    path = export_onnx(tmp_path / "bare", tmp_path / "bare.onnx")
    assert read_onnx_metadata(path)["input_normalization"] == "RGB, 32x32, (x/255-0.5)/0.5"
    assert OnnxEdgeFace(path).image_processor().size == {"height": 32, "width": 32}
