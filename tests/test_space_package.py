"""The Space as `hfr-hf push --space` would upload it builds on its own: a fresh virtual environment installs its
requirements.txt (the package index and the folder's own files only), its app.py starts and answers a verify."""

from __future__ import annotations

import os
import subprocess
import venv

import pytest

from hfr_hf.cli import main

from .conftest import REPO_ROOT, running_space


@pytest.fixture(scope="module")
def pushed_space(tmp_path_factory):
    folder = tmp_path_factory.mktemp("space-push") / "dry"
    argv = ["push", "org/edgeface-demo", "--space", str(REPO_ROOT / "spaces/edgeface-hfr"), "--model-repo", "org/m"]
    assert main([*argv, "--dry-run", str(folder)]) == 0
    return folder


def test_the_pushed_space_carries_the_package_and_names_its_model(pushed_space):
    from huggingface_hub import SpaceCard

    wheels = list((pushed_space / "wheels").glob("hfr_hf-*-py3-none-any.whl"))
    assert len(wheels) == 1
    requirement = f"./wheels/{wheels[0].name}[space]"
    assert requirement in (pushed_space / "requirements.txt").read_text().splitlines()
    assert "hfr-hf[space]" not in (pushed_space / "requirements.txt").read_text().splitlines()
    assert SpaceCard.load(pushed_space / "README.md").data.models == ["org/m"]


def test_the_pushed_space_installs_in_a_fresh_environment_and_verifies(pushed_space, xxs_folder, assets, tmp_path):
    from gradio_client import Client, handle_file

    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    install = [python, "-m", "pip", "install", "-q", "--retries", "0", "--timeout", "15", "-r", "requirements.txt"]
    # torch pinned to the CPU build these machines carry (an unpinned torch is a multi-GB CUDA download here; the
    # Hub gets its CPU build from the requirements' extra index, which is not reachable from here).
    install += ["-c", str(REPO_ROOT / "constraints.txt")]
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(install, cwd=pushed_space, capture_output=True, text=True, env=clean, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    where = subprocess.run(
        [python, "-c", "import hfr_hf; print(hfr_hf.__file__)"],
        capture_output=True,
        text=True,
        cwd=pushed_space,
        env=clean,
    )
    assert str(env_dir) in where.stdout, where.stderr  # the wheel's copy, not this checkout
    env = {"HFR_HF_MODEL": str(xxs_folder), "HFR_HF_ADAPTERS": "none", "GRADIO_TEMP_DIR": str(tmp_path / "g")}
    log = tmp_path / "space.log"
    with running_space(python, pushed_space / "app.py", env, log, cwd=pushed_space, base_env=clean) as url:
        client = Client(url, verbose=False)
        photos = assets / "faces/deepface"
        score = client.predict(
            handle_file(str(photos / "img1.jpg")),
            handle_file(str(photos / "img2.jpg")),
            "vis",
            "1e-2",
            "",
            "",
            api_name="/verify",
        )
    assert score[3].startswith("### Same person") and score[2] > 0.3
