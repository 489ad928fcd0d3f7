"""Model names: a local folder or a Hub id, told apart before any network call; offline said at once."""

import huggingface_hub
import pytest
from huggingface_hub import constants

from hfr_hf import sources
from hfr_hf.cli import main
from hfr_hf.sources import hub_download_options, resolve_model_name


def test_a_mistyped_folder_is_named_with_its_near_miss(tmp_path, monkeypatch):
    (tmp_path / "runs/edgeface-xxs").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sources, "_hub_reachable", lambda: pytest.fail("no network call for a local name"))
    with pytest.raises(FileNotFoundError, match="No model folder runs/edgeface-xx. Did you mean runs/edgeface-xxs"):
        resolve_model_name("runs/edgeface-xx")
    for name in (str(tmp_path / "nowhere"), "./model", "~/no/such/model", "a/b/c"):
        with pytest.raises(FileNotFoundError, match="No model folder"):
            resolve_model_name(name)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="is a file"):
        resolve_model_name("file.txt")
    assert resolve_model_name("runs/edgeface-xxs") == ("runs/edgeface-xxs", {})


def test_hub_ids_offline_are_refused_at_once_unless_cached(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(sources, "_hub_reachable", lambda: pytest.fail("offline: no probe"))
    with pytest.raises(ValueError, match=r"org/model is not in the local Hugging Face cache and the Hub is offline"):
        resolve_model_name("org/model")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: f"/cache/{repo}/{name}")
    assert resolve_model_name("org/model") == ("org/model", {"local_files_only": True})


def test_an_unreachable_hub_is_said_before_any_retry(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(sources, "_hub_reachable", lambda: False)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: None)
    with pytest.raises(ValueError, match="cannot be reached; nor is there a folder org/model here"):
        resolve_model_name("org/model")
    monkeypatch.setattr(sources, "_hub_reachable", lambda: True)
    assert hub_download_options("org/model", "config.json", "The model") == {}


def test_cli_names_the_missing_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "runs/edgeface-xxs").mkdir(parents=True)
    (tmp_path / "a.png").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert main(["verify", "a.png", "a.png", "--model", "runs/edgeface-xx"]) == 1
    assert "Did you mean runs/edgeface-xxs?" in capsys.readouterr().err
