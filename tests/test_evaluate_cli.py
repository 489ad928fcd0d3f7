"""`hfr-hf evaluate`: mechanics on a tiny random model, real numbers with EdgeFace-XXS."""

import json

import pytest

from hfr_hf import EdgeFaceImageProcessor, EdgeFaceModel
from hfr_hf.cli import main
from hfr_hf.evaluation import read_scores, write_identification_protocol, write_verification_protocol


@pytest.fixture(scope="module")
def tiny_folder(tiny_config, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    EdgeFaceModel(tiny_config).save_pretrained(folder)
    EdgeFaceImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def att_identification(tmp_path, people=("s1", "s2", "s3")):
    rows = [
        (f"faces/att/{p}/{i}.pgm", p, "visible", "gallery" if i == k else "probe", str(k))
        for k in (1, 2)
        for p in people
        for i in (1, 2, 3)
    ]
    return write_identification_protocol(tmp_path / "att.csv", rows)


def test_identification_report_plots_scores_and_cache(tiny_folder, assets, tmp_path, capsys):
    argv = ["evaluate", "--model", str(tiny_folder), "--protocol", str(att_identification(tmp_path))]
    argv += ["--root", str(assets), "--report", str(tmp_path / "r.json"), "--plots", str(tmp_path / "plots")]
    argv += ["--scores", str(tmp_path / "scores.csv"), "--cache", str(tmp_path / "cache.npz"), "--batch-size", "4"]
    assert main(argv) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["kind"] == "identification" and report["images"] == 9 and list(report["folds"]) == ["1", "2"]
    fold = report["folds"]["1"]
    assert fold["identification"]["probes"] == 6 and len(fold["identification"]["cmc"]) == 3
    assert fold["verification"]["genuine_pairs"] == 6 and fold["verification"]["impostor_pairs"] == 12
    assert report["summary"]["rank1"]["n"] == 2
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["cmc.png", "det.png", "roc.png"]
    scores = read_scores(tmp_path / "scores-fold1.csv")
    assert len(scores) == 18 and scores.genuine_mask.sum() == 6
    assert "mean±std" in capsys.readouterr().out
    assert main(argv) == 0  # second run: every embedding from the cache, same report
    assert json.loads((tmp_path / "r.json").read_text())["folds"] == report["folds"]


def test_verification_with_four_column_scores(tiny_folder, assets, tmp_path):
    rows = [
        ("s1/1.pgm", "s1/2.pgm", 1),
        ("s1/1.pgm", "s2/1.pgm", 0),
        ("s2/1.pgm", "s2/2.pgm", 1),
        ("s2/2.pgm", "s1/2.pgm", 0),
    ]
    protocol = write_verification_protocol(tmp_path / "pairs.csv", rows)
    argv = ["evaluate", "--model", str(tiny_folder), "--protocol", str(protocol), "--root", str(assets / "faces/att")]
    assert main([*argv, "--report", str(tmp_path / "r.json"), "--scores", str(tmp_path / "s.txt")]) == 0
    verification = json.loads((tmp_path / "r.json").read_text())["folds"]["0"]["verification"]
    assert verification["genuine_pairs"] == 2 and 0.0 <= verification["eer"] <= 1.0
    assert read_scores(tmp_path / "s.txt").genuine_mask.tolist() == [True, False, True, False]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--protocol", "{tmp}/gone.csv"], "Protocol"),
        (["--protocol", "{tmp}/missing.csv"], "2 of 3 protocol images are missing"),
        (["--protocol", "{tmp}/pairs.csv", "--adapter", "{tmp}/no_adapter"], "adapter"),
        # what the `full` preset (which `--preset auto` may choose) saves in adapter/: a whole model
        (["--protocol", "{tmp}/pairs.csv", "--adapter", "{model}"], "is a whole fine-tuned model"),
        (["--protocol", "{tmp}/climbing.csv"], "2 of 3 protocol paths are not inside the root folder"),
    ],
)
def test_evaluate_errors(tiny_folder, assets, tmp_path, capsys, extra, message):
    write_verification_protocol(
        tmp_path / "missing.csv", [("s1/1.pgm", "s1/99.pgm", 1), ("s1/1.pgm", "nobody/1.pgm", 0)]
    )
    write_verification_protocol(tmp_path / "pairs.csv", [("s1/1.pgm", "s1/2.pgm", 1), ("s1/1.pgm", "s2/1.pgm", 0)])
    write_verification_protocol(
        tmp_path / "climbing.csv", [("s1/1.pgm", "../../../../etc/passwd", 1), ("s1/1.pgm", str(assets / "x.pgm"), 0)]
    )
    argv = [
        "evaluate",
        "--model",
        str(tiny_folder),
        "--root",
        str(assets / "faces/att"),
        "--report",
        str(tmp_path / "r.json"),
    ]
    code = main(argv + [a.replace("{tmp}", str(tmp_path)).replace("{model}", str(tiny_folder)) for a in extra])
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


def test_real_numbers_puj_t360_thermal(xxs_folder, assets, tmp_path):
    """EdgeFace-XXS, frozen, thermal→thermal on PUJ-T360, gallery GalleryPristine, probes ProbePristine; not
    aligned (MTCNN finds a face in 1 of 19 sampled LWIR crops; they are segmented and registered already).
    Measured: rank-1 1.000, AUC 0.968, EER 0.093."""
    rows = [
        (f"thermal/puj_t360/{folder}/{p.name}", p.name.split("_")[0], "thermal", split)
        for folder, split in (("GalleryPristine", "gallery"), ("ProbePristine", "probe"))
        for p in sorted((assets / "thermal/puj_t360" / folder).glob("*.tiff"))
    ]
    protocol = write_identification_protocol(tmp_path / "puj.csv", rows)
    argv = ["evaluate", "--model", str(xxs_folder), "--protocol", str(protocol), "--root", str(assets), "--no-align"]
    assert main([*argv, "--report", str(tmp_path / "puj.json")]) == 0
    puj = json.loads((tmp_path / "puj.json").read_text())["folds"]["0"]
    assert puj["identification"]["probes"] == 52 and puj["identification"]["gallery_identities"] == 25
    assert puj["identification"]["rank1"] >= 0.98
    assert puj["verification"]["auc"] >= 0.95
