"""Protocols, bob score files, plots and the `evaluate` metric."""

import os
import subprocess
import sys

import numpy as np
import pytest

from hfr_hf.evaluation import (
    EmbeddingCache,
    Scores,
    VerificationProtocol,
    check_files,
    evaluate_protocol,
    plot_cmc,
    plot_det,
    plot_roc,
    read_protocol,
    read_scores,
    write_identification_protocol,
    write_scores,
    write_verification_protocol,
)
from hfr_hf.metrics import HFR_VERIFICATION

PNG = b"\x89PNG\r\n\x1a\n"


def write(path, text):
    path.write_text(text)
    return path


def test_verification_protocol_with_labels_identities_and_folds(tmp_path):
    rows = [
        ("a1.png", "a2.png", 1, "1"),
        ("a1.png", "b1.png", 0, "1"),
        ("b1.png", "b2.png", 1, "2"),
        ("a2.png", "b2.png", 0, "2"),
    ]
    protocol = read_protocol(write_verification_protocol(tmp_path / "pairs.csv", rows))
    assert isinstance(protocol, VerificationProtocol)
    assert protocol.labels.tolist() == [True, False, True, False]
    assert [fold for fold, _ in protocol.split()] == ["1", "2"]
    assert protocol.paths() == ["a1.png", "b1.png", "a2.png", "b2.png"]
    by_identity = read_protocol(write(tmp_path / "ids.csv", "path_a,path_b,identity_a,identity_b\nx,y,p,p\nx,z,p,q\n"))
    assert by_identity.labels.tolist() == [True, False]


def test_deepface_master_csv_reads_as_is(assets):
    protocol = read_protocol(assets / "faces/deepface/master.csv")
    assert protocol.kind == "verification" and protocol.labels.sum() == 38 and len(protocol.labels) == 300


def test_identification_protocol_sides(tmp_path):
    rows = [
        ("g/a.png", "a", "visible", "gallery"),
        ("g/b.png", "b", "visible", "gallery"),
        ("p/a.png", "a", "thermal", "probe"),
    ]
    protocol = read_protocol(write_identification_protocol(tmp_path / "id.csv", rows))
    assert protocol.kind == "identification"
    assert protocol.side("probe") == (["p/a.png"], ["a"], ["thermal"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("path_a,path_b,label\na,b,1\nc,d,yes\n", "2 genuine and 0 impostor"),
        ("path_a,path_b,label\na,b,0\nc,d,no\n", "0 genuine and 2 impostor"),
        ("path_a,path_b,label,fold\na,b,1,1\nc,d,0,1\ne,f,1,2\n", "Fold '2'"),
        ("path_a,path_b,label\na,b,maybe\n", "neither same"),
        ("path,identity,modality,split\ng,a,vis,gallery\np,b,nir,probe\n", "absent from the gallery \\(b\\)"),
        ("path,identity,modality,split\ng,a,vis,gallery\n", "0 probe images"),
        ("path,identity,modality,split\ng,a,vis,enrol\n", "gallery or probe"),
        ("image,person\na,b\n", "expected path_a, path_b, label"),
        ("path_a,path_b,label\n", "no rows"),
    ],
)
def test_protocol_errors(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read_protocol(write(tmp_path / "bad.csv", text))


def test_missing_files_are_all_listed(tmp_path):
    (tmp_path / "here.png").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="2 of 3 protocol images are missing") as error:
        check_files(["here.png", "gone1.png", "sub/gone2.png"], tmp_path)
    assert "gone1.png" in str(error.value) and "sub/gone2.png" in str(error.value)


@pytest.mark.parametrize(
    "path",
    ["../secret.png", "../../../etc/passwd", "/etc/passwd", "sub/../../secret.png", "link/secret.png", "a\x00b.png"],
)
def test_paths_outside_the_root_are_refused(tmp_path, path):
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.png").write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(PNG)
    (root / "here.png").write_bytes(PNG)
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="1 of 2 protocol paths are not inside the root folder") as error:
        check_files(["here.png", path], root)
    assert repr(path) in str(error.value)
    assert check_files(["here.png", "sub/../here.png"], root)[1].resolve() == (root / "here.png").resolve()


def test_evaluate_protocol_from_embeddings(tmp_path):
    e = {"a1": [1.0, 0.0], "a2": [0.9, 0.1], "b1": [0.0, 1.0], "b2": [0.1, 0.9]}
    embeddings = {k: np.array(v) for k, v in e.items()}
    rows = [
        ("a1", "a", "vis", "gallery"),
        ("b1", "b", "vis", "gallery"),
        ("a2", "a", "nir", "probe"),
        ("b2", "b", "nir", "probe"),
    ]
    result = evaluate_protocol(read_protocol(write_identification_protocol(tmp_path / "p.csv", rows)), embeddings)
    fold = result.report["folds"]["0"]
    assert fold["identification"]["rank1"] == 1.0 and fold["identification"]["probe_modalities"] == ["nir"]
    assert fold["verification"]["genuine_pairs"] == 2 and fold["verification"]["eer"] == 0.0
    assert len(result.scores["0"]) == 4 and result.scores["0"].genuine_mask.sum() == 2
    assert "rank-1" in result.table()


def test_embedding_cache_persists_and_invalidates(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache.npz", "model-a")
    cache.update(["x", "y"], np.eye(2, dtype=np.float32))
    cache.save()
    assert EmbeddingCache(tmp_path / "cache.npz", "model-a").missing(["x", "y", "z"]) == ["z"]
    assert EmbeddingCache(tmp_path / "cache.npz", "model-b").missing(["x"]) == ["x"]


def example_scores():
    return Scores(
        probe_key=["p/1.png", "p/2.png", "p/3.png"],
        probe_subject_id=["alice", "bob", "bob"],
        bio_ref_key=["g/a.png", "g/a.png", "g/b.png"],
        bio_ref_subject_id=["alice", "alice", "bob"],
        score=np.array([0.8125, -0.25, 0.1 + 0.2]),
    )


@pytest.mark.parametrize("name", ["scores.txt", "scores.csv"])
def test_score_files_round_trip(tmp_path, name):
    scores = example_scores()
    back = read_scores(write_scores(tmp_path / name, scores))
    np.testing.assert_array_equal(back.score, scores.score)  # repr keeps every bit
    assert back.probe_key == scores.probe_key
    assert back.probe_subject_id == scores.probe_subject_id and back.bio_ref_subject_id == scores.bio_ref_subject_id
    assert back.genuine_mask.tolist() == [True, False, True]
    if name.endswith(".csv"):
        assert back.bio_ref_key == scores.bio_ref_key


def test_four_column_layout_is_bobs(tmp_path):
    lines = write_scores(tmp_path / "s.txt", example_scores()).read_text().splitlines()
    assert lines[0] == "alice alice p/1.png 0.8125"  # claimed_id real_id test_label score
    header = write_scores(tmp_path / "s.csv", example_scores()).read_text().splitlines()[0]
    assert header.startswith("probe_reference_id,probe_subject_id") and header.endswith(
        "bio_ref_subject_id,bio_ref_key,score"
    )


def test_score_file_refusals(tmp_path):
    spaced = example_scores()
    spaced.probe_key[0] = "my photo.png"
    with pytest.raises(ValueError, match="whitespace"):
        write_scores(tmp_path / "s.txt", spaced)
    bad = example_scores()
    bad.score[1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_scores(tmp_path / "s.csv", bad)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_plots_compare_several_systems(tmp_path):
    rng = np.random.default_rng(0)
    systems = {
        name: (rng.normal(shift, 1, 100), rng.normal(0, 1, 1000)) for name, shift in (("frozen", 1), ("adapted", 3))
    }
    for path in (plot_roc(systems, tmp_path / "roc.png"), plot_det(systems, tmp_path / "det.png")):
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000
    cmc_png = plot_cmc({"frozen": [0.5, 0.8, 1.0], "adapted": [0.9, 1.0, 1.0]}, tmp_path / "cmc.png")
    assert cmc_png.read_bytes()[:8] == PNG


def test_evaluate_metric_loads_offline(tmp_path):
    code = (
        "import evaluate\n"
        f"m = evaluate.load({HFR_VERIFICATION!r})\n"
        "r = m.compute(predictions=[0.9, 0.8, 0.85, 0.3, 0.1], references=[1, 1, 0, 0, 0])\n"
        "print(round(r['eer'], 6), r['auc'], r['tar@far=1e-1'])\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.update(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")  # any network use would fail
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0.333333", str(5 / 6), "0.5"]
