import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from hfr_hf.cli import main


def test_convert_by_variant_name_from_a_weights_folder(assets, tmp_path, capsys):
    code = main(["convert", "xs", "--output", str(tmp_path / "xs"), "--weights-dir", str(assets / "weights/edgeface")])
    assert code == 0
    assert json.loads((tmp_path / "xs/config.json").read_text())["variant"] == "xs"
    assert "edgeface_xs_q.pt" in capsys.readouterr().out


def test_convert_overwrite_refuses_the_current_folder_before_fetching_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    # an empty weights folder: had the checkpoint been looked for first, the error would be "No checkpoint"
    code = main(["convert", "xxs", "--output", ".", "--overwrite", "--weights-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "is the current folder or one above it" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_convert_into_a_full_folder_names_the_flag(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out/notes.txt").write_text("mine")
    assert main(["convert", "xxs", "--output", str(tmp_path / "out"), "--weights-dir", str(tmp_path)]) == 1
    assert "allow overwriting (--overwrite)" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]


def test_embed_writes_npz_and_safetensors(xxs_folder, assets, tmp_path):
    faces = assets / "faces/att/s1"
    assert main(["embed", str(faces), "--model", str(xxs_folder), "--output", str(tmp_path / "e.npz")]) == 0
    npz = np.load(tmp_path / "e.npz")
    assert npz["embeddings"].shape == (10, 512) and len(npz["paths"]) == 10
    np.testing.assert_allclose(np.linalg.norm(npz["embeddings"], axis=1), 1.0, rtol=1e-5)
    out = tmp_path / "e.safetensors"
    assert main(["embed", str(faces / "1.pgm"), "--model", str(xxs_folder), "--output", str(out), "--raw"]) == 0
    raw = load_file(out)["embeddings"]
    np.testing.assert_allclose(raw[0] / np.linalg.norm(raw[0]), npz["embeddings"][0], atol=1e-5)


def test_verify_decides_at_a_threshold(xxs_folder, assets, capsys):
    att = assets / "faces/att"
    same = ["verify", str(att / "s2/1.pgm"), str(att / "s2/2.pgm"), "--model", str(xxs_folder)]
    other = ["verify", str(att / "s2/1.pgm"), str(att / "s3/1.pgm"), "--model", str(xxs_folder)]
    assert main([*same, "--threshold", "0.4", "--json"]) == 0
    genuine = json.loads(capsys.readouterr().out)
    assert main([*other, "--threshold", "0.4", "--json"]) == 0
    impostor = json.loads(capsys.readouterr().out)
    assert genuine["cosine"] > impostor["cosine"]
    assert genuine["same_person"] is True and impostor["same_person"] is False


def test_verify_folder_summary(xxs_folder, assets, tmp_path, capsys):
    root = tmp_path / "faces"
    for person in ("s1", "s2", "s3"):
        (root / person).mkdir(parents=True)
        for i in range(1, 4):
            (root / person / f"{i}.pgm").write_bytes((assets / f"faces/att/{person}/{i}.pgm").read_bytes())
    report = tmp_path / "report.json"
    assert main(["verify-folder", str(root), "--model", str(xxs_folder), "--json", str(report)]) == 0
    summary = json.loads(report.read_text())
    assert summary["genuine_pairs"] == 9 and summary["impostor_pairs"] == 27
    assert "AUC" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["convert", "/no/such.pt", "--output", "{tmp}/out"], "does not exist"),
        (["convert", "base", "--output", "{tmp}/out", "--weights-dir", "{tmp}"], "No checkpoint for EdgeFace-base"),
        (["embed", "/no/such/dir", "--model", "{tmp}", "--output", "{tmp}/e.npz"], "does not exist"),
        (["verify", "/no/a.png", "/no/b.png", "--model", "{tmp}"], "does not exist"),
        (["verify-folder", "{tmp}", "--model", "{tmp}"], "one sub-folder of images per person"),
        (["embed", "{tmp}", "--model", "{tmp}", "--output", "{tmp}/e.npz", "--spectrum", "nir"], "needs --detector"),
        (
            ["experiment", "--model", "{tmp}", "--att", "{tmp}", "--output", "{tmp}/out", "--detector", "{tmp}"],
            "give --thermal",
        ),
    ],
)
def test_errors_are_one_sentence_and_exit_non_zero(argv, message, tmp_path, capsys):
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "e.npz").exists()


def test_model_folder_without_config(tmp_path, assets, capsys):
    image = assets / "faces/att/s1/1.pgm"
    assert main(["verify", str(image), str(image), "--model", str(tmp_path)]) == 1
    assert "no config.json" in capsys.readouterr().err


def test_align_mirrors_a_folder_and_reports_failures(assets, tmp_path, capsys):
    source = tmp_path / "photos"
    (source / "people").mkdir(parents=True)
    for name in ("img1.jpg", "img2.jpg"):
        (source / "people" / name).write_bytes((assets / "faces/deepface" / name).read_bytes())
    (source / "people/broken.jpg").write_text("not a photo")
    code = main(["align", str(source), str(tmp_path / "aligned")])
    err = capsys.readouterr().err
    assert code == 3
    assert "people/broken.jpg" in err and "could not be read as an image" in err
    assert sorted(p.name for p in (tmp_path / "aligned/people").iterdir()) == ["img1.png", "img2.png"]
    assert (tmp_path / "aligned/alignment.csv").read_text().count("\n") == 4  # header + 3 images


def test_verify_with_alignment(xxs_folder, assets, capsys):
    photos = assets / "faces/deepface"

    def cosine(a, b):
        argv = ["verify", str(photos / a), str(photos / b), "--model", str(xxs_folder), "--align", "--json"]
        assert main(argv) == 0
        return json.loads(capsys.readouterr().out)["cosine"]

    assert cosine("img1.jpg", "img2.jpg") > cosine("img1.jpg", "img13.jpg") + 0.3  # same person vs other


def test_raw_photos_are_aligned_by_default(xxs_folder, assets, capsys):
    """Two photos of different people, resized whole, score like one person (0.49 for this pair); aligned they do
    not. Without --align or --no-align, photos that are not 112×112 crops are aligned; resized whole, a photo
    is no face crop and is refused unless the face check is turned off too."""
    photos = assets / "faces/deepface"

    def cosine(*flags):
        argv = ["verify", str(photos / "img1.jpg"), str(photos / "img13.jpg"), "--model", str(xxs_folder), "--json"]
        assert main([*argv, *flags]) == 0
        return json.loads(capsys.readouterr().out)["cosine"]

    default, aligned, resized = cosine(), cosine("--align"), cosine("--no-align", "--no-face-check")
    assert default == pytest.approx(aligned, abs=1e-6)
    assert resized > aligned + 0.2
    argv = ["verify", str(photos / "img1.jpg"), str(photos / "img13.jpg"), "--model", str(xxs_folder), "--no-align"]
    assert main(argv) == 1 and "does not look like a face" in capsys.readouterr().err


def write_png(path, array):
    from PIL import Image

    Image.fromarray(array).save(path)
    return str(path)


@pytest.mark.parametrize(
    "first, second, flags, message",
    [
        ("grey", "black", [], "blank"),
        ("noise", "grey", [], "does not look like a face"),
        ("grey", "noise", [], "blank"),
        ("noise", "noise2", [], "does not look like a face"),
        ("grey", "black", ["--no-face-check"], "blank"),
        ("grey", "black", ["--no-align"], "blank"),
    ],
)
def test_verify_refuses_crops_without_a_face(first, second, flags, message, xxs_folder, tmp_path, capsys):
    """112×112 uploads are taken as aligned crops, but a blank or faceless one is refused, never scored."""
    rng = np.random.default_rng(0)
    images = {
        "grey": np.full((112, 112, 3), 128, np.uint8),
        "black": np.zeros((112, 112, 3), np.uint8),
        "noise": rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
        "noise2": rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
    }
    a, b = (write_png(tmp_path / f"{name}.png", images[name]) for name in (first, second))
    code = main(["verify", a, b, "--model", str(xxs_folder), "--threshold", "0.4", *flags])
    captured = capsys.readouterr()
    assert code == 1 and message in captured.err and "no score is given" in captured.err
    assert "cosine" not in captured.out


def test_verify_refuses_a_texture_that_mtcnn_takes_for_a_face(xxs_folder, tmp_path, capsys):
    """A thermal texture in which MTCNN as published detects a face (O-Net 0.84) once scored 1.0 against itself:
    "same person". Its aligned crop fails the face check, so there is no score."""
    from hfr_hf.evaluation.detection import non_face_images

    images, kinds = non_face_images(40, seed=1234)
    assert kinds[11] == "thermal texture"
    texture = write_png(tmp_path / "texture.png", images[11])
    code = main(["verify", texture, texture, "--model", str(xxs_folder), "--threshold", "0.4", "--json"])
    captured = capsys.readouterr()
    assert code == 1 and "does not look like a face once aligned" in captured.err
    assert "same_person" not in captured.out


def test_verify_scores_aligned_crops_and_faceless_ones_only_when_told(xxs_folder, assets, tmp_path, capsys):
    from hfr_hf.alignment import FaceAligner

    aligner = FaceAligner()
    crops = [write_png(tmp_path / f"{i}.png", aligner(assets / f"faces/att/s5/{i}.pgm")) for i in (1, 2)]
    assert main(["verify", *crops, "--model", str(xxs_folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cosine"] > 0.5
    rng = np.random.default_rng(1)
    noise = [write_png(tmp_path / f"n{i}.png", rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)) for i in (1, 2)]
    assert main(["verify", *noise, "--model", str(xxs_folder), "--no-face-check", "--json"]) == 0
    assert "cosine" in json.loads(capsys.readouterr().out)


def test_embed_names_the_images_without_a_face(xxs_folder, assets, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "face.jpg").write_bytes((assets / "faces/deepface/img1.jpg").read_bytes())
    write_png(folder / "wall.png", np.full((200, 300, 3), 90, np.uint8))
    code = main(["embed", str(folder), "--model", str(xxs_folder), "--output", str(tmp_path / "e.npz")])
    err = capsys.readouterr().err
    assert code == 1 and "1 of 2 images" in err and "wall.png (No face was detected)" in err and "--no-align" in err
    assert not (tmp_path / "e.npz").exists()


def test_align_refuses_landmarks_off_the_image(assets, tmp_path, capsys):
    source = tmp_path / "src"
    source.mkdir()
    (source / "face.jpg").write_bytes((assets / "faces/deepface/img1.jpg").read_bytes())
    table = tmp_path / "points.csv"
    table.write_text("path,lx,ly,rx,ry\nface.jpg,-5000,-5000,-4000,-5000\n")
    code = main(["align", str(source), str(tmp_path / "out"), "--landmarks", str(table)])
    assert code == 3 and "outside" in capsys.readouterr().err
    assert not (tmp_path / "out/face.png").exists()


def test_a_decompression_bomb_is_refused_and_the_other_images_are_aligned(assets, tmp_path, capsys):
    from .test_images import png_header

    source = tmp_path / "src"
    source.mkdir()
    (source / "face.jpg").write_bytes((assets / "faces/deepface/img1.jpg").read_bytes())
    png_header(source / "bomb.png", 30000, 30000)
    assert main(["align", str(source), str(tmp_path / "out")]) == 3
    err = capsys.readouterr().err
    assert "bomb.png" in err and "megapixels are read" in err and "Traceback" not in err
    assert (tmp_path / "out/face.png").is_file()


def test_verify_folder_on_a_flat_folder_counts_right_and_says_what_it_wants(assets, xxs_folder, tmp_path, capsys):
    for i in range(1, 4):
        (tmp_path / f"{i}.pgm").write_bytes((assets / f"faces/att/s1/{i}.pgm").read_bytes())
    assert main(["verify-folder", str(tmp_path), "--model", str(xxs_folder)]) == 1
    err = capsys.readouterr().err
    assert "one sub-folder of images per person" in err and "found 3 images, 3 directly in" in err
    assert "0 person folders" in err


def test_the_console_script_writes_loadable_folders_and_answers_help_without_torch(assets, tmp_path):
    """`hfr-hf` skips the Auto-class registration at import (for a fast --help); its commands must still write
    folders with auto_map and the remote-code files."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "hfr-hf"
    checkpoint = assets / "weights/edgeface/edgeface_xxs_q.pt"
    done = subprocess.run(
        [str(script), "convert", str(checkpoint), "--output", str(tmp_path / "m")], capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    config = json.loads((tmp_path / "m/config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_edgeface.EdgeFaceModel"
    assert (tmp_path / "m/modeling_edgeface.py").is_file() and (tmp_path / "m/README.md").is_file()
    help_only = (
        "import sys; sys.argv = ['hfr-hf', '--help']\n"
        "import hfr_hf.cli\n"
        "try:\n    hfr_hf.cli.main()\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", help_only], capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "False False", done.stderr[-1000:]


def test_enroll_spectrum_picks_the_detector_only_when_one_is_given(tmp_path, monkeypatch):
    from hfr_hf.cli import _aligner, build_parser

    monkeypatch.delenv("HFR_HF_DETECTOR", raising=False)
    base = ["enroll", str(tmp_path), "--gallery", str(tmp_path / "g"), "--spectrum", "thermal"]
    assert _aligner(build_parser().parse_args(base)).spectrum == "visible"  # aligned crops need no detector
    chosen = _aligner(build_parser().parse_args([*base, "--detector", str(tmp_path / "det")]))
    assert chosen.spectrum == "thermal" and str(chosen.detector_weights) == str(tmp_path / "det")
    verify = build_parser().parse_args(["verify", "a.png", "b.png", "--model", "m", "--spectrum", "auto"])
    monkeypatch.setenv("HFR_HF_DETECTOR", str(tmp_path / "det"))
    assert _aligner(verify).spectrum == "auto"  # the environment names the detector
