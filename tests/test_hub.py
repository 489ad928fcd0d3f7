"""Publishing: cards from evaluation reports, repository folders that load without hfr_hf, pushes through recording
fakes of HfApi, offline failure and bad input."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, ModelCard, SpaceCard
from PIL import Image
from safetensors.torch import load_file

from hfr_hf import EdgeFaceConfig, EdgeFaceImageProcessor, EdgeFaceModel
from hfr_hf.adapters import add_adapter, load_adapter, save_adapter
from hfr_hf.cli import main
from hfr_hf.evaluation import evaluate_protocol, read_protocol
from hfr_hf.evaluation.protocols import write_identification_protocol
from hfr_hf.hub import (
    CITATIONS,
    AdapterDetails,
    HubError,
    PublishError,
    ReportError,
    load_report,
    model_card,
    model_cost,
    push_model,
    push_space,
)
from hfr_hf.hub.cost import PAPER_MFLOPS

from .conftest import HFR_HF_BLOCKED

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REQUIRED_TAGS = {"face-recognition", "heterogeneous-face-recognition", "cross-spectral", "edgeface", "peft"}
REPO = "org/edgeface-hfr"
BASE_REPO = "org/edgeface-base"


def metric(auc, eer, tar2, tar3):
    return {
        "auc": auc,
        "eer": eer,
        "tar_at_far": {"1e-2": tar2, "1e-3": tar3},
        "genuine_pairs": 170,
        "impostor_pairs": 2720,
    }


def experiment_report(variant: str = "xxs") -> dict:
    """A report of the adaptation experiment's schema (`hfr-hf experiment`), with values no code computes."""
    return {
        "kind": "xedgeface_experiment",
        "variant": variant,
        "model": "runs/edgeface-xxs",
        "adapter_preset": "ln_stem",
        "adapter_name": "thermal",
        "protocol": {
            "name": "pseudo-thermal AT&T + Yale",
            "dataset": "pseudo-thermal-att-yale",
            "split": "test",
            "synthetic": True,
            "modality": "thermal",
            "test_identities": 17,
            "train_identities": 33,
        },
        "results": {
            "frozen": {
                "cross": metric(0.8123456789, 0.2517, 0.3141592653, 0.12),
                "vis": metric(0.9991, 0.0123, 0.97, 0.9),
                "identification": {"rank1": 0.4411764706, "rank5": 0.71, "probes": 68, "gallery": 17},
            },
            "adapted": {
                "cross": metric(0.9712345678, 0.0888888888, 0.7777777777, 0.5),
                "vis": metric(0.9989, 0.0131, 0.965, 0.88),
                "identification": {"rank1": 0.8529411765, "rank5": 0.97, "probes": 68, "gallery": 17},
            },
        },
        "thresholds": {"thermal": {"1e-2": 0.41, "1e-3": 0.52}, "vis": {"1e-2": 0.33, "1e-3": 0.44}},
        "training": {
            "trainable_parameters": 6648,
            "total_parameters": 1244744,
            "trainable_percent": 0.534,
            "epochs": 5,
            "time_per_epoch_s": 12.5,
            "wall_time_s": 70.1,
            "peak_rss_mb": 812.0,
        },
    }


def index_values(card: ModelCard) -> dict[tuple[str | None, str], float]:
    """(dataset config, metric type) → value of a card's parsed model-index."""
    return {(r.dataset_config, r.metric_type): r.metric_value for r in card.data.eval_results}


def perturbed(model: EdgeFaceModel, seed: int) -> EdgeFaceModel:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # LayerNorms start at (1, 0) and layer scales at 1e-6: make every part matter
        for param in model.parameters():
            param.add_(0.2 * torch.randn(param.shape, generator=generator))
    return model


def save_tiny_base(config: EdgeFaceConfig, folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    perturbed(EdgeFaceModel(config), seed).save_pretrained(folder)
    EdgeFaceImageProcessor(size={"height": config.image_size, "width": config.image_size}).save_pretrained(folder)
    return folder


def save_trained_adapter(base_folder: Path, folder: Path) -> Path:
    adapted = add_adapter(EdgeFaceModel.from_pretrained(base_folder).eval(), "ln_stem", adapter_name="thermal")
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in adapted.named_parameters():
            if ".ln_tuning_layers.thermal." in name:
                param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return save_adapter(adapted, folder)


@pytest.fixture(scope="module")
def tiny(tiny_config, tmp_path_factory):
    """A tiny random base folder and an adapter trained (perturbed) on it."""
    root = tmp_path_factory.mktemp("hub")
    base = save_tiny_base(tiny_config, root / "base")
    return {"base": base, "adapter": save_trained_adapter(base, root / "thermal"), "root": root}


@pytest.fixture
def recorder(monkeypatch):
    """Replace HfApi's network calls by fakes that record what they were asked; nothing reaches the network."""
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, **kwargs):
        calls.append(("create_branch", repo_id, kwargs))

    def create_commit(self, repo_id, operations, **kwargs):
        files = {}
        for op in operations:
            with open(op.path_or_fileobj, "rb") as handle:
                files[op.path_in_repo] = handle.read()
        calls.append(("create_commit", repo_id, {**kwargs, "files": files}))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/0"})()

    def add_space_variable(self, repo_id, key, value, **kwargs):
        calls.append(("add_space_variable", repo_id, {"key": key, "value": value, **kwargs}))

    for name, fake in [
        ("create_repo", create_repo),
        ("create_branch", create_branch),
        ("create_commit", create_commit),
        ("add_space_variable", add_space_variable),
    ]:
        monkeypatch.setattr(HfApi, name, fake)
    return calls


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# -- cards -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["base", "adapter", "merged"])
def test_card_metadata_and_model_index_equal_the_report(kind):
    report = experiment_report()
    system = "frozen" if kind == "base" else "adapted"
    adapter = None
    if kind != "base":
        adapter = AdapterDetails("thermal", "ln_stem", "all LayerNorms + conv stem", 228, 14, "ab" * 32)
    text = str(
        model_card(
            kind,
            EdgeFaceConfig.from_variant("xxs"),
            repo_id=REPO,
            base_repo=BASE_REPO,
            report=load_report(report),
            adapter=adapter,
        )
    )
    card = ModelCard(text)  # parses front matter and model-index, raising on invalid metadata
    data = card.data
    assert data.license == "cc-by-nc-sa-4.0"
    assert data.pipeline_tag == "image-feature-extraction"
    assert data.library_name == ("peft" if kind == "adapter" else "transformers")
    assert data.base_model == {"base": "Idiap/EdgeFace-XXS", "adapter": BASE_REPO, "merged": BASE_REPO}[kind]
    assert REQUIRED_TAGS <= set(data.tags)
    assert set(data.metrics) == {"eer", "tar_at_far_1e-2", "tar_at_far_1e-3", "roc_auc", "rank1", "rank5"}
    assert data.model_name == "edgeface-hfr"
    assert data.datasets == (None if kind == "base" else ["pseudo-thermal-att-yale"])

    results = report["results"][system]
    assert index_values(card) == {
        ("vis-thermal", "eer"): results["cross"]["eer"],
        ("vis-thermal", "tar_at_far_1e-2"): results["cross"]["tar_at_far"]["1e-2"],
        ("vis-thermal", "tar_at_far_1e-3"): results["cross"]["tar_at_far"]["1e-3"],
        ("vis-thermal", "roc_auc"): results["cross"]["auc"],
        ("vis-thermal", "rank1"): results["identification"]["rank1"],
        ("vis-thermal", "rank5"): results["identification"]["rank5"],
        ("vis-vis", "roc_auc"): results["vis"]["auc"],
        ("vis-vis", "eer"): results["vis"]["eer"],
    }
    for result in data.eval_results:
        assert (result.task_type, result.dataset_type, result.dataset_name, result.dataset_split) == (
            "image-feature-extraction",
            "pseudo-thermal-att-yale",
            "pseudo-thermal AT&T + Yale",
            "test",
        )
    # the metadata survives a write / read round trip unchanged
    assert ModelCard(str(card)).data.to_dict() == data.to_dict()


def test_card_body_says_what_users_need():
    report = experiment_report()
    adapter = AdapterDetails("thermal", "ln_stem", "all LayerNorms + conv stem", 228, 14, "ab" * 32)
    config = EdgeFaceConfig.from_variant("xxs")
    text = model_card(
        "adapter", config, repo_id=REPO, base_repo=BASE_REPO, report=load_report(report), adapter=adapter
    ).text
    assert "CC BY-NC-SA 4.0" in text and "Idiap Research Institute" in text
    assert CITATIONS in text and "george2024edgeface" in text and "george2026lightweight" in text
    assert f'PeftModel.from_pretrained(base, "{REPO}")' in text and f'AutoModel.from_pretrained("{BASE_REPO}"' in text
    assert "not a public cross-spectral benchmark" in text
    # the results table shows both systems, rounded from the report
    assert f"{report['results']['adapted']['cross']['eer']:.4f}" in text
    assert f"{report['results']['frozen']['cross']['eer']:.4f}" in text
    assert "17 test identities" in text and "6,648 trainable parameters" in text
    assert f"{model_cost(config).mflops:.1f} MFLOPs" in text and "1,244,744" in text


def test_base_card_without_report_has_no_model_index(tiny_config):
    card = model_card("base", tiny_config, repo_id=REPO)
    assert card.data.eval_results is None and "model-index" not in card.data.to_dict()
    assert "No evaluation report" in card.text
    assert "this model (custom configuration)" in card.text  # a configuration of no official variant gets its own row


def test_card_from_an_evaluate_report(tmp_path):
    rng = np.random.default_rng(0)
    rows, embeddings = [], {}
    for fold in ("0", "1"):
        for person in range(4):
            centre = rng.normal(size=16)
            for modality, split in (("vis", "gallery"), ("thermal", "probe")):
                key = f"{fold}/{person}/{modality}.png"
                embeddings[key] = centre + 0.8 * rng.normal(size=16)
                rows.append((key, str(person), modality, split, fold))
    protocol = read_protocol(write_identification_protocol(tmp_path / "p.csv", rows))
    report = evaluate_protocol(protocol, embeddings).report
    card = model_card("base", EdgeFaceConfig.from_variant("xxs"), repo_id=REPO, report=load_report(report))
    values = {r.metric_type: r.metric_value for r in ModelCard(str(card)).data.eval_results}
    summary = report["summary"]
    assert values["eer"] == summary["eer"]["mean"] and values["roc_auc"] == summary["auc"]["mean"]
    assert values["rank1"] == summary["rank1"]["mean"]
    assert values["tar_at_far_1e-2"] == summary["tar_at_far_1e-2"]["mean"]
    assert {r.dataset_config for r in card.data.eval_results} == {"vis-thermal"}
    assert "means over 2 fold(s)" in card.text
    # The model-index says the values are fold means; the card's table names the plain metrics.
    assert "EER (mean over folds)" in {r.metric_name for r in card.data.eval_results}
    assert "(mean over folds)" not in card.text and "| system | EER |" in card.text


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.pop("results"), "has no 'results.frozen.cross.eer'"),
        (lambda r: r["results"]["adapted"]["cross"].update(eer="low"), "expected a number"),
        (lambda r: r.update(kind="something"), "neither an xEdgeFace experiment report"),
        (lambda r: r["training"].pop("epochs"), "has no 'training.epochs'"),
        (lambda r: r["thresholds"].update(nir=0.5), "The report has no 'thresholds.nir.1e-2'"),
    ],
)
def test_malformed_reports_are_refused(change, message):
    report = experiment_report()
    change(report)
    with pytest.raises(ReportError, match=message):
        load_report(report)


@pytest.mark.parametrize("variant", sorted(PAPER_MFLOPS))
def test_counted_flops_agree_with_the_official_figures(variant):
    # The official repository quotes MFLOPs per variant; counting 2 FLOPs per multiply-accumulate gets within 0.5 %.
    counted = model_cost(EdgeFaceConfig.from_variant(variant)).mflops
    assert counted == pytest.approx(PAPER_MFLOPS[variant], rel=5e-3)


# -- repository folders load where hfr_hf cannot be imported --------------------------------------------------------

LOADER = HFR_HF_BLOCKED + textwrap.dedent(
    """
    import json, shutil
    import torch
    from peft import AutoPeftModel, PeftModel
    from PIL import Image
    from safetensors.torch import save_file
    from transformers import AutoImageProcessor, AutoModel, pipeline

    base, adapter, merged, image_dir, output = sys.argv[1:6]
    images = [Image.open(f"{image_dir}/{i}.png") for i in range(3)]
    out = {}
    processor = AutoImageProcessor.from_pretrained(base, trust_remote_code=True)
    pixels = processor(images, return_tensors="pt")
    model = AutoModel.from_pretrained(base, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    with torch.no_grad():
        out["base"] = model(**pixels).embeddings
        extractor = pipeline("image-feature-extraction", model=base, trust_remote_code=True)
        out["base_pipeline"] = torch.cat([extractor(image, return_tensors=True) for image in images])
        adapted = PeftModel.from_pretrained(AutoModel.from_pretrained(base, trust_remote_code=True), adapter).eval()
        out["adapter"] = adapted(**pixels).embeddings
        # AutoPeftModel follows adapter_config.json to the base: point it at the local base folder
        local = shutil.copytree(adapter, output + ".adapter")
        config = json.load(open(local + "/adapter_config.json"))
        config["base_model_name_or_path"] = base
        json.dump(config, open(local + "/adapter_config.json", "w"))
        out["auto_peft"] = AutoPeftModel.from_pretrained(local, trust_remote_code=True).eval()(**pixels).embeddings
        merged_model = AutoModel.from_pretrained(merged, trust_remote_code=True).eval()
        merged_processor = AutoImageProcessor.from_pretrained(merged, trust_remote_code=True)
        out["merged"] = merged_model(**merged_processor(images, return_tensors="pt")).embeddings
        extractor = pipeline("image-feature-extraction", model=merged, trust_remote_code=True)
        out["merged_pipeline"] = torch.cat([extractor(image, return_tensors=True) for image in images])
    save_file({k: v.contiguous() for k, v in out.items()}, output)
    """
)


def dry_run_all(base: Path, adapter: Path, root: Path, report: dict | None = None) -> dict[str, Path]:
    folders = {name: root / f"dry-{name}" for name in ("base", "adapter", "merged")}
    push_model(REPO, base, dry_run=folders["base"], report=report)
    push_model(REPO + "-thermal", base, adapter=adapter, base_repo=REPO, dry_run=folders["adapter"], report=report)
    push_model(REPO + "-thermal-merged", base, adapter=adapter, merge=True, base_repo=REPO, dry_run=folders["merged"])
    return folders


def embeddings_without_hfr_hf(folders: dict[str, Path], size: int, tmp_path: Path) -> tuple[dict, list]:
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (size + 5, size, 3), dtype=np.uint8)).save(image_dir / f"{i}.png")
    output = tmp_path / "remote.safetensors"
    argv = [str(folders[k]) for k in ("base", "adapter", "merged")] + [str(image_dir), str(output)]
    result = subprocess.run(
        [sys.executable, "-c", LOADER, *argv], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return load_file(output), [Image.open(image_dir / f"{i}.png") for i in range(3)]


def source_embeddings(base: Path, adapter: Path, images) -> dict[str, torch.Tensor]:
    processor = EdgeFaceImageProcessor.from_pretrained(base)
    pixels = processor(images, return_tensors="pt").pixel_values
    with torch.no_grad():
        frozen = EdgeFaceModel.from_pretrained(base).eval()(pixels).embeddings
        adapted = load_adapter(EdgeFaceModel.from_pretrained(base).eval(), adapter, adapter_name="thermal")
        return {"base": frozen, "adapter": adapted(pixel_values=pixels).embeddings}


def test_dry_run_folders_load_without_the_package(tiny, tiny_config, tmp_path):
    folders = dry_run_all(tiny["base"], tiny["adapter"], tmp_path)
    assert {p.name for p in folders["base"].iterdir()} == {p.name for p in folders["merged"].iterdir()}
    adapter_config = json.loads((folders["adapter"] / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == REPO

    remote, images = embeddings_without_hfr_hf(folders, tiny_config.image_size, tmp_path)
    expected = source_embeddings(tiny["base"], tiny["adapter"], images)
    assert not torch.allclose(expected["base"], expected["adapter"], atol=1e-3)  # the adapter changes the output
    torch.testing.assert_close(remote["base"], expected["base"])
    torch.testing.assert_close(remote["base_pipeline"], expected["base"])
    for key in ("adapter", "auto_peft", "merged", "merged_pipeline"):
        torch.testing.assert_close(remote[key], expected["adapter"], msg=key)


def test_real_xxs_repositories_load_without_the_package(xxs_folder, tmp_path):
    adapter = save_trained_adapter(xxs_folder, tmp_path / "thermal")
    folders = dry_run_all(xxs_folder, adapter, tmp_path, report=experiment_report("xxs"))
    card = ModelCard.load(folders["merged"] / "README.md")
    assert card.data.base_model == REPO and "EdgeFace-XXS" in card.text
    remote, images = embeddings_without_hfr_hf(folders, 112, tmp_path)
    expected = source_embeddings(xxs_folder, adapter, images)
    torch.testing.assert_close(remote["base"], expected["base"])
    torch.testing.assert_close(remote["adapter"], expected["adapter"])
    torch.testing.assert_close(remote["merged"], expected["adapter"])


# -- pushes through recording fakes ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["base", "adapter", "merged"])
def test_push_uploads_exactly_the_dry_run_files(mode, tiny, tmp_path, recorder):
    options = {
        "base": {},
        "adapter": {"adapter": tiny["adapter"], "base_repo": BASE_REPO},
        "merged": {"adapter": tiny["adapter"], "merge": True, "base_repo": BASE_REPO},
    }[mode]
    report = experiment_report()
    push_model(REPO, tiny["base"], report=report, dry_run=tmp_path / "dry", **options)
    assert recorder == []  # a dry run contacts nothing

    result = push_model(REPO, tiny["base"], report=report, private=True, revision="v1", **options)
    assert [call[0] for call in recorder] == ["create_repo", "create_branch", "create_commit"]
    (_, repo_id, repo), (_, _, branch), (_, _, commit) = recorder
    assert repo_id == REPO and repo["repo_type"] == "model" and repo["private"] is True and repo["exist_ok"] is True
    assert branch["branch"] == "v1" and commit["revision"] == "v1" and commit["repo_type"] == "model"
    assert commit["commit_message"]
    assert commit["files"] == folder_bytes(tmp_path / "dry")
    assert sorted(commit["files"]) == result.files
    assert result.url == f"https://huggingface.co/{REPO}/commit/0"
    expected = {"base": "model.safetensors", "adapter": "adapter_model.safetensors", "merged": "model.safetensors"}
    assert expected[mode] in commit["files"] and "README.md" in commit["files"]


def make_space(folder: Path, models: str = "models:\n- org/old\n") -> Path:
    """A Space folder of the shape spaces/edgeface-hfr/ has."""
    (folder / "__pycache__").mkdir(parents=True)
    (folder / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (folder / "app.py").write_text("import os\nMODEL = os.environ.get('HFR_HF_MODEL', 'org/old')\n")
    (folder / "requirements.txt").write_text("hfr-hf[space]\n")
    (folder / "examples").mkdir()
    (folder / "examples" / "face.png").write_bytes(b"\x89PNG fake")
    (folder / "README.md").write_text(
        f"---\ntitle: EdgeFace HFR\nsdk: gradio\nsdk_version: 5.0.0\napp_file: app.py\n{models}---\n\n"
        "# EdgeFace HFR demo\n"
    )
    return folder


def test_space_push(tmp_path, recorder):
    space = make_space(tmp_path / "space")
    push_space("org/edgeface-hfr-demo", space, model_repo=REPO, dry_run=tmp_path / "dry")
    dry = tmp_path / "dry"
    files = sorted(folder_bytes(dry))
    assert files[:4] == ["README.md", "app.py", "examples/face.png", "requirements.txt"]
    assert len(files) == 5 and files[4].startswith("wheels/hfr_hf-") and files[4].endswith("-py3-none-any.whl")
    card = SpaceCard.load(dry / "README.md")
    assert card.data.models == [REPO] and card.data.sdk == "gradio" and card.data.title == "EdgeFace HFR"
    assert "# EdgeFace HFR demo" in card.text
    assert recorder == []

    push_space("org/edgeface-hfr-demo", space, model_repo=REPO)
    assert [call[0] for call in recorder] == ["create_repo", "create_commit", "add_space_variable"]
    (_, _, repo), (_, _, commit), (_, space_id, variable) = recorder
    assert repo["repo_type"] == "space" and repo["space_sdk"] == "gradio"
    assert commit["repo_type"] == "space" and commit["files"] == folder_bytes(dry)
    assert space_id == "org/edgeface-hfr-demo" and (variable["key"], variable["value"]) == ("HFR_HF_MODEL", REPO)


def test_space_push_without_the_variable_or_a_models_entry(tmp_path, recorder):
    space = make_space(tmp_path / "space", models="")
    push_space("org/demo", space, model_repo=[REPO, BASE_REPO], set_model_variable=False)
    assert [call[0] for call in recorder] == ["create_repo", "create_commit"]
    readme = recorder[1][2]["files"]["README.md"].decode()
    assert SpaceCard(readme).data.models == [REPO, BASE_REPO]


def test_cli_push_dry_run_and_push(tiny, tmp_path, recorder, capsys):
    report = tmp_path / "report.json"
    report.write_text(json.dumps(experiment_report()))
    argv = ["push", REPO, "--model", str(tiny["base"]), "--adapter", str(tiny["adapter"]), "--base-repo", BASE_REPO]
    assert main([*argv, "--report", str(report), "--dry-run", str(tmp_path / "dry")]) == 0
    assert "adapter_config.json" in capsys.readouterr().out and recorder == []
    assert main([*argv, "--report", str(report), "--commit-message", "thermal adapter"]) == 0
    commit = recorder[-1][2]
    assert commit["commit_message"] == "thermal adapter" and commit["files"] == folder_bytes(tmp_path / "dry")
    assert "create_branch" not in [call[0] for call in recorder]  # main needs no branch
    assert recorder[0][2]["private"] is None  # not asked: the namespace's default visibility


# -- failures --------------------------------------------------------------------------------------------------------


def test_offline_push_fails_with_one_sentence(tiny, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"))
    result = subprocess.run(
        [sys.executable, "-m", "hfr_hf.cli", "push", REPO, "--model", str(tiny["base"])],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "offline mode is on (HF_HUB_OFFLINE=1)" in lines[0], result.stderr


def test_offline_error_is_a_hub_error(tiny):
    # conftest sets HF_HUB_OFFLINE=1 before huggingface_hub is imported, so the real HfApi refuses here too
    with pytest.raises(HubError, match="offline mode is on"):
        push_model(REPO, tiny["base"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["push", "org/bad name!", "--model", "{base}"], "is not a valid Hub repository id"),
        (["push", "org/a--b", "--model", "{base}"], "is not a valid Hub repository id"),
        (["push", REPO, "--model", "{base}", "--adapter", "{adapter}", "--base-repo", "a/b/c"], "base repo 'a/b/c'"),
        (["push", REPO, "--model", "{no_weights}"], "model.safetensors missing"),
        (["push", REPO, "--model", "{tmp}/nowhere"], "does not exist"),
        (["push", REPO, "--model", "{base}", "--adapter", "{adapter}"], "must name its base model's repository"),
        (["push", REPO, "--model", "{base}", "--merge"], "Merging needs an adapter folder"),
        (["push", REPO, "--model", "{other_base}", "--adapter", "{adapter}", "--base-repo", REPO], "trained on"),
        (
            ["push", REPO, "--model", "{base}", "--adapter", "{base}", "--base-repo", REPO],
            "is a whole fine-tuned model",
        ),
        (
            ["push", REPO, "--model", "{base}", "--adapter", "{tmp}", "--base-repo", REPO],
            "holds no adapter_config.json",
        ),
        (["push", REPO, "--model", "{base}", "--report", "{tmp}/none.json"], "does not exist"),
        (["push", REPO, "--model", "{xs_base}", "--report", "{report}"], "evaluates EdgeFace variant 'xxs'"),
        (["push", "org/demo", "--space", "{tmp}"], "needs the model repository"),
        (["push", "org/demo", "--space", "{tmp}", "--model-repo", REPO], "has no README.md"),
        (["push", "org/demo", "--model", "{base}", "--model-repo", REPO], "use it with --space"),
    ],
)
def test_bad_input_is_refused_before_anything_is_pushed(argv, message, tiny, tiny_config, tmp_path, recorder, capsys):
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    for path in tiny["base"].iterdir():
        if path.name != "model.safetensors":
            (no_weights / path.name).write_bytes(path.read_bytes())
    other_base = save_tiny_base(tiny_config, tmp_path / "other", seed=7)
    xs_base = save_tiny_base(copy.deepcopy(tiny_config), tmp_path / "xs")
    config = json.loads((xs_base / "config.json").read_text())
    (xs_base / "config.json").write_text(json.dumps({**config, "variant": "xs"}))
    report = tmp_path / "report.json"
    report.write_text(json.dumps(experiment_report("xxs")))
    names = {
        "base": tiny["base"],
        "adapter": tiny["adapter"],
        "no_weights": no_weights,
        "other_base": other_base,
        "xs_base": xs_base,
        "report": report,
        "tmp": tmp_path,
    }
    argv = [a.format(**{k: str(v) for k, v in names.items()}) if "{" in a else a for a in argv]
    capsys.readouterr()  # the setup's own output
    for dry_run in (False, True):
        extra = ["--dry-run", str(tmp_path / "dry")] if dry_run else []
        assert main(argv + extra) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert recorder == [] and not (tmp_path / "dry").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hfr-hf-push")]  # no staging left behind


def test_dry_run_refuses_a_folder_with_files(tiny, tmp_path):
    (tmp_path / "dry").mkdir()
    (tmp_path / "dry" / "keep.txt").write_text("mine")
    with pytest.raises(PublishError, match="exists and is not empty"):
        push_model(REPO, tiny["base"], dry_run=tmp_path / "dry")
    assert [p.name for p in (tmp_path / "dry").iterdir()] == ["keep.txt"]


def test_dry_run_refuses_the_current_folder(tiny, tmp_path, monkeypatch):
    empty = tmp_path / "here"
    empty.mkdir()
    monkeypatch.chdir(empty)
    with pytest.raises(PublishError, match="is the current folder or one above it"):
        push_model(REPO, tiny["base"], dry_run=".")
    assert empty.is_dir() and not list(tmp_path.glob(".hfr-hf-push*"))
