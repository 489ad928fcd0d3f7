"""Where official checkpoints come from: a folder given by one setting, else the Hub (mocked here)."""

import pytest

from hfr_hf import convert
from hfr_hf.convert import WEIGHTS_DIR_ENV, CheckpointError, official_checkpoint_path


def test_weights_folder_from_the_environment(assets, monkeypatch):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(assets / "weights/edgeface"))
    assert official_checkpoint_path("xxs").name == "edgeface_xxs_q.pt"


def test_fp32_file_is_preferred_over_int8(tmp_path):
    for name in ("edgeface_xxs.pt", "edgeface_xxs_q.pt"):
        (tmp_path / name).write_bytes(b"")
    assert official_checkpoint_path("xxs", tmp_path).name == "edgeface_xxs.pt"


def test_hub_download_names_the_official_repository(monkeypatch, tmp_path):
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    calls = []

    def fake_download(repo_id, filename, **options):
        calls.append((repo_id, filename))
        return str(tmp_path / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)  # a reachable Hub, checked before download
    monkeypatch.setattr("hfr_hf.sources._hub_reachable", lambda: True)
    assert official_checkpoint_path("xs_gamma_06").name == "edgeface_xs_gamma_06.pt"
    assert calls == [("Idiap/EdgeFace-XS-GAMMA", "edgeface_xs_gamma_06.pt")]


def test_offline_without_cache_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match="edgeface_xxs.pt of Idiap/EdgeFace-XXS is not in the local Hugging Face"):
        official_checkpoint_path("xxs")  # said at once: no download is tried offline


def test_variant_without_hub_repository(monkeypatch):
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    with pytest.raises(CheckpointError, match="no official Hub repository"):
        official_checkpoint_path("xs")
    assert "xs" not in convert.OFFICIAL_HUB_FILES
