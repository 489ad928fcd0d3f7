"""Shared fixtures. Real weights and faces come from one setting, HFR_HF_ASSETS (default ../shared/assets
beside the repository); tests that need them skip when it is missing, or fail when HFR_HF_REQUIRE_ASSETS=1
(as in CI)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# The first lines of a script run in a fresh process where `hfr_hf` cannot be imported, as on the Hub, where a
# model repository's own files are all there is; the script stops if the block does not hold.
HFR_HF_BLOCKED = """
import importlib.abc, sys

class BlockHfrHf(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "hfr_hf" or name.startswith("hfr_hf."):
            raise ImportError("hfr_hf is blocked in this process")

sys.meta_path.insert(0, BlockHfrHf())
try:
    import hfr_hf  # noqa: F401
    raise SystemExit("hfr_hf was importable")
except ImportError:
    pass
"""

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(
    os.environ.get("HFR_HF_ASSETS", REPO_ROOT.parent / "shared" / "assets")
).resolve()  # absolute: tests link to it
TESTED_VARIANTS = ["xxs", "xs", "xs_gamma_06", "s_gamma_05"]


@pytest.fixture(scope="session")
def assets() -> Path:
    """The shared assets folder, or skip (fail under HFR_HF_REQUIRE_ASSETS=1) when it is absent."""
    if not (ASSETS / "golden" / "inputs.safetensors").is_file():
        message = f"shared assets not found at {ASSETS} (set HFR_HF_ASSETS)"
        if os.environ.get("HFR_HF_REQUIRE_ASSETS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return ASSETS


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks gain nothing from intra-op threads, and on a busy 2-core machine they spin (4x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_config():
    from hfr_hf import EdgeFaceConfig

    return EdgeFaceConfig(
        variant=None,
        image_size=32,
        depths=(1, 1, 2, 1),
        dims=(8, 16, 24, 32),
        heads=(2, 2, 2, 2),
        kernel_sizes=(3, 3, 3, 3),
        embedding_size=16,
    )


# Identities no detector training in the tests sees: the held-out renders are made from them.
HELD_OUT = tuple(f"*/att/s{i}/*" for i in range(31, 41)) + tuple(f"*/yale/subject{i}*" for i in (13, 14, 15))


@pytest.fixture(scope="session")
def reduced_detector(assets, tmp_path_factory) -> Path:
    """The cross-spectral detector, trained once per session by the project's own `train_detector` as the README
    trains it, reduced (two renders per photo, two epochs): a base training, whose faces then label the real LWIR
    images of the PUJ split's train people for the second, self-trained one (with scikit-image's face-free photos,
    mined samples, O-Net bootstrapped on 2000 face-free scenes, a 3x landmark loss, mirror averaging), then the
    landmark network of thermal faces from its O-Net. About 25 min on a shared 2-core machine; trained weights are
    never committed."""
    import dataclasses
    import subprocess
    import sys

    from hfr_hf.alignment.detector_training import DetectorTrainingConfig, train_detector

    reuse = os.environ.get("HFR_HF_TEST_DETECTOR")  # a folder `hfr-hf train-detector` made with this same recipe
    if reuse:
        return Path(reuse)
    root = tmp_path_factory.mktemp("detector")
    faces = assets / "faces"
    folders = [faces / "yale", faces / "att", faces / "deepface"]
    # MTCNN's own pyramid (step 0.709, from the full image): with the recipe's 0.6 and halvings, one training of
    # this reduced recipe ranked one T360 probe of 52 wrong (README, "A cheaper pyramid")
    base = DetectorTrainingConfig(
        renders_per_image=2, negative_scenes=150, epochs=2, exclude=HELD_OUT, scale_factor=0.709, halving_pyramid=False
    )
    train_detector(folders, root / "base", base, progress=False)
    photos = root / "face_free"
    script = Path(__file__).resolve().parents[1] / "scripts" / "face_free_photos.py"
    subprocess.run([sys.executable, str(script), str(photos)], check=True, capture_output=True)
    config = dataclasses.replace(
        base,
        negative_photos=(str(photos),),
        landmark_weight=3.0,
        mined_renders=3,
        bootstrap_scenes=2000,
        mirror_average=True,
        real_thermal=str(assets / "thermal"),
        real_thermal_labeller=str(root / "base"),
    )
    train_detector(folders, root / "self_trained", config, progress=False)
    landmarks = dataclasses.replace(
        config, networks=("lnet",), init_detector=str(root / "self_trained"), learning_rate=3e-4, bootstrap_scenes=0
    )
    train_detector(folders, root / "reduced", landmarks, progress=False)
    return root / "reduced"


@pytest.fixture(scope="session")
def xxs_folder(assets, tmp_path_factory) -> Path:
    """EdgeFace-XXS converted from the official int8 checkpoint, once per session."""
    from hfr_hf.convert import convert_checkpoint
    from hfr_hf.hub import converted_model_card

    checkpoint = assets / "weights/edgeface/edgeface_xxs_q.pt"
    return convert_checkpoint(checkpoint, tmp_path_factory.mktemp("models") / "xxs", model_card=converted_model_card)


@contextlib.contextmanager
def running_space(python: str, app: Path, env: dict, log: Path, cwd: Path | None = None, base_env: dict | None = None):
    """The Gradio Space `app` started by `python` on a free 127.0.0.1 port, with `env` added to `base_env` (default:
    this process's environment); yields its URL and stops it afterwards. The server's output goes to `log`, quoted
    when it fails to come up within 180 s."""
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_env = os.environ if base_env is None else base_env
    env = {**base_env, "GRADIO_SERVER_PORT": str(port), "OMP_NUM_THREADS": "1", **env}  # 1 thread: busy machine
    with open(log, "w") as out:
        server = subprocess.Popen([python, str(app)], env=env, stdout=out, stderr=out, cwd=cwd)
    url = f"http://127.0.0.1:{port}/"
    wait_s = 180
    deadline = time.monotonic() + wait_s
    try:
        while True:
            if server.poll() is not None:
                pytest.fail(f"The Space exited with code {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"The Space did not answer at {url} within {wait_s:.0f} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="session")
def space_url(xxs_folder, tmp_path_factory):
    """The Gradio Space (`python spaces/edgeface-hfr/app.py`) serving the converted EdgeFace-XXS on 127.0.0.1, as a
    separate process started once per session; its URL."""
    import sys

    env = {
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "HFR_HF_MODEL": str(xxs_folder),
        "HFR_HF_ADAPTERS": "none",
        "GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp("gradio")),
    }
    log = tmp_path_factory.mktemp("space") / "space.log"
    with running_space(sys.executable, REPO_ROOT / "spaces/edgeface-hfr/app.py", env, log) as url:
        yield url


@pytest.fixture(scope="session")
def xxs_onnx(xxs_folder, tmp_path_factory) -> Path:
    """EdgeFace-XXS exported to ONNX, once per session."""
    from hfr_hf.onnx_export import export_onnx

    return export_onnx(xxs_folder, tmp_path_factory.mktemp("onnx") / "xxs.onnx")
