"""Gradio Space: cross-spectral face verification and identification with EdgeFace and xEdgeFace adapters.

Run locally (offline, no analytics) from the repository root:

    python spaces/edgeface-hfr/app.py            # http://127.0.0.1:7860; HFR_HF_MODEL / HFR_HF_ADAPTERS choose the model

The logic lives in `hfr_space.py`; this file only lays out the page and turns `SpaceError`s into messages.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import uuid
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: it reads this at import


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates an arena of its own and seldom hands freed memory back from it; Gradio
    runs requests on a pool of up to 40 threads, so the server's memory grew with the number of concurrent users
    (measured with scripts/load_space.py: 0.8 GB at 1 user, 1.9 GB at 16). Two arenas, as the Space has two cores;
    before any thread starts. No effect off glibc."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        pass


limit_malloc_arenas()
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from gradio.utils import get_upload_folder  # noqa: E402
from hfr_space import (  # noqa: E402
    FAR_LABELS,
    FARS,
    MAX_GALLERY,
    SPECTRA,
    SPECTRUM_LABELS,
    UNREADABLE,
    FaceEngine,
    SpaceError,
    add_click,
    read_image,
)
from PIL import Image  # noqa: E402

logger = logging.getLogger("edgeface-hfr")

MAX_FILE_SIZE = "10mb"
CONCURRENCY = 2  # two requests run at once (two CPU cores); the rest wait in the queue
QUEUE_SIZE = 32

EXPLANATION = """
**What the number means.** The score is the cosine similarity of the two 512-d face embeddings: 1 for identical
embeddings, around 0 for unrelated faces. With visible-light photos EdgeFace-XXS gives about 0.8 for two images of
the same person and about 0.05 for different people (AT&T faces). Cross-spectral scores (thermal or NIR probe
against a visible reference) are lower for everyone, which is why thresholds are calibrated per probe spectrum.
The decision accepts when score ≥ threshold; the threshold at FAR 1 % is the score that 1 % of impostor pairs of
the calibration set reach, so about 1 in 100 comparisons of different people would be wrongly accepted
(0.1 %: 1 in 1,000, at the cost of rejecting more genuine pairs).

**When no face is found** (common on thermal images): click the centre of the image-left eye, then the other eye,
on the uploaded image (a third click starts over), or type `x1, y1; x2, y2` — or five points (eyes, nose tip, mouth
corners) — in pixels of the uploaded image. The aligned crop shows whether the points were right.

Uploads are limited to 10 MB, downscaled to 1024 pixels on the longer side, and deleted from the server within two hours.
"""


def as_file(image: np.ndarray) -> str:
    """An image returned to the page as a PNG of its own, under a fresh name in Gradio's cache (served from there
    and deleted on the cache's schedule). Returned as an array, Gradio would name it by a hash of its content and
    rewrite that one file for every request returning the same image, while another client may still be
    downloading it: under load, identical crops (two requests with the same photo) came back half-written."""
    path = Path(get_upload_folder()) / "returned" / f"{uuid.uuid4().hex}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")
    return str(path)


def image_input(label: str, elem_id: str) -> gr.Image:
    """An image upload whose unreadable files end in a readable message instead of a server error.

    type="filepath" + image_mode=None: the function gets the uploaded file untouched (16-bit thermal TIFFs keep
    their range; gradio's RGB conversion would clip them), and `hfr_space.read_image` decodes it."""
    image = gr.Image(label=label, type="filepath", image_mode=None, format="png", height=360, elem_id=elem_id)
    preprocess = image.preprocess

    def readable_preprocess(payload):  # wraps the instance's method: a subclass would make gradio write a .pyi
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Exception:  # PIL raises various types for files that are not images
            name = getattr(payload, "orig_name", None) or "The uploaded file"
            raise gr.Error(f"{name} {UNREADABLE}") from None

    image.preprocess = readable_preprocess
    return image


def image_with_eye_centres(label: str, elem_id: str, whose: str) -> tuple[gr.Image, gr.Textbox]:
    """An image upload and the box for its eye centres (typed, or filled by two clicks on the image)."""
    image = image_input(label, elem_id)
    points = gr.Textbox(
        label=f"{whose} eye centres (optional)",
        placeholder="click both eyes on the image, or type x1, y1; x2, y2",
        elem_id=f"{elem_id}-points",
    )
    return image, points


def readable_errors(function):
    """Show `SpaceError`s as they are; anything unexpected as one sentence (the traceback goes to the log)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except gr.Error:
            raise
        except SpaceError as error:
            raise gr.Error(str(error)) from None
        except Exception as error:
            logger.exception("request failed")
            raise gr.Error(
                f"Something went wrong while processing this request ({type(error).__name__}); try other images."
            ) from None

    return wrapper


def build_demo(engine: FaceEngine) -> gr.Blocks:
    """The page around a loaded `FaceEngine`."""

    @readable_errors
    def prepare_upload(image):
        """Show every upload as an 8-bit PNG (TIFF, PGM and 16-bit thermal images included), downscaled: the
        browser can draw it and clicked points are in its pixels."""
        if image is None:
            return None, ""
        return as_file(read_image(image)[0]), ""

    @readable_errors
    def add_point(image, text, evt: gr.SelectData):
        """A click on an image adds an eye centre; two make a landmark pair and show the aligned crop."""
        text, complete = add_click(text, float(evt.index[0]), float(evt.index[1]))
        if not complete:
            return text, gr.skip()
        return text, as_file(engine.align(image, text, "clicked").crop)

    @readable_errors
    def verify(reference, probe, spectrum, far, reference_points, probe_points):
        if reference is None or probe is None:
            raise SpaceError("Upload both a reference image and a probe image.")
        result = engine.verify(reference, probe, spectrum, far, reference_points, probe_points)
        verdict = "Same person" if result.accepted else "Different people"
        sign = "≥" if result.accepted else "<"
        decision = (
            f"### {verdict}\n"
            f"Score **{result.score:.4f}** {sign} threshold **{result.threshold.value:.4f}** at FAR {FAR_LABELS[far]} "
            f"({result.threshold.note}).  \n"
            f"Network: {result.network}; {SPECTRUM_LABELS[spectrum]} probe. Reference {result.reference.how}; probe {result.probe.how}.  \n"
            f"Alignment {1000 * result.timings['align_s']:.0f} ms, embedding {1000 * result.timings['embed_s']:.0f} ms."
        )
        return as_file(result.reference.crop), as_file(result.probe.crop), round(result.score, 4), decision

    @readable_errors
    def enrol(files, names):
        files = files or []
        entries, skipped = engine.enrol(files, (names or "").splitlines())
        people = len({e.name for e in entries})
        status = f"Enrolled {len(entries)} image{'s' * (len(entries) != 1)} of {people} people."
        if skipped:
            status += "  \nSkipped:  \n" + "  \n".join(f"- {line}" for line in skipped)
        return entries, [(as_file(e.crop), e.name) for e in entries], status

    @readable_errors
    def identify(gallery, probe, spectrum, far, probe_points):
        if not gallery:
            raise SpaceError("The gallery is empty: add images and press Enrol first.")
        if probe is None:
            raise SpaceError("Upload a probe image.")
        aligned = engine.align(probe, probe_points, "probe")
        matches, threshold = engine.identify(gallery, aligned, spectrum, far)
        rows = [[m.rank, m.name, round(m.score, 4), m.images, "yes" if m.accepted else "no"] for m in matches]
        note = (
            f"Ranked by each person's best score. 'match' means score ≥ {threshold.value:.4f} "
            f"(FAR {FAR_LABELS[far]}, {threshold.note}). "
            f"Network: {engine.network_label(spectrum)}; probe {aligned.how}."
        )
        return as_file(aligned.crop), rows, note

    spectra, fars = list(SPECTRA.items()), list(FARS.items())
    with gr.Blocks(
        title="EdgeFace cross-spectral face recognition",
        analytics_enabled=False,
        delete_cache=(1800, 3600),  # every 30 min, delete uploads and crops older than an hour
    ) as demo:
        gr.Markdown(
            "# Cross-spectral face recognition: EdgeFace + xEdgeFace\n"
            "Compare a visible-light photo with a visible, near-infrared or thermal face image, or search a small "
            "gallery. Faces are detected (MTCNN) and aligned to 112×112 before the network sees them."
        )
        gr.Markdown(engine.describe(), elem_id="model-info")
        with gr.Tab("Verify"):
            with gr.Row():
                with gr.Column():
                    reference, reference_points = image_with_eye_centres(
                        "Reference (visible light)", "reference", "Reference"
                    )
                with gr.Column():
                    probe, probe_points = image_with_eye_centres("Probe", "probe", "Probe")
            with gr.Row():
                spectrum = gr.Radio(spectra, value="vis", label="Probe spectrum", elem_id="spectrum")
                far = gr.Dropdown(fars, value="1e-2", label="False accept rate (FAR)", elem_id="far")
            verify_button = gr.Button("Verify", variant="primary", elem_id="verify-button")
            with gr.Row():
                reference_crop = gr.Image(label="Reference, aligned", format="png", interactive=False, height=224)
                probe_crop = gr.Image(label="Probe, aligned", format="png", interactive=False, height=224)
                with gr.Column():
                    score = gr.Number(label="Cosine similarity", precision=4, interactive=False, elem_id="score")
                    decision = gr.Markdown(elem_id="decision")
            gr.Markdown(EXPLANATION)
        with gr.Tab("Identify"):
            gallery_state = gr.State([])
            with gr.Row():
                with gr.Column():
                    gallery_files = gr.File(
                        label=f"Gallery images (visible light, up to {MAX_GALLERY})",
                        height=220,
                        file_count="multiple",
                        elem_id="gallery",
                    )
                    gallery_names = gr.Textbox(
                        label="Names, one per line in file order (optional: else from the file names, "
                        "alice_1.jpg → alice)",
                        lines=4,
                        elem_id="gallery-names",
                    )
                    enrol_button = gr.Button("Enrol", elem_id="enrol-button")
                with gr.Column():
                    enrolled = gr.Gallery(label="Enrolled faces", columns=6, height=260, format="png")
                    enrol_status = gr.Markdown(elem_id="enrol-status")
            with gr.Row():
                with gr.Column():
                    id_probe, id_points = image_with_eye_centres("Probe", "id-probe", "Probe")
                    with gr.Row():
                        id_spectrum = gr.Radio(spectra, value="vis", label="Probe spectrum")
                        id_far = gr.Dropdown(fars, value="1e-2", label="False accept rate (FAR)")
                    identify_button = gr.Button("Identify", variant="primary", elem_id="identify-button")
                with gr.Column():
                    id_crop = gr.Image(label="Probe, aligned", format="png", interactive=False, height=224)
                    ranking = gr.Dataframe(
                        headers=["rank", "name", "score", "images", "match"],
                        datatype=["number", "str", "number", "number", "str"],
                        interactive=False,
                        elem_id="ranking",
                    )
                    id_note = gr.Markdown()

        for image, points, crop in (
            (reference, reference_points, reference_crop),
            (probe, probe_points, probe_crop),
            (id_probe, id_points, id_crop),
        ):
            image.upload(prepare_upload, image, [image, points], api_name=False)
            image.select(add_point, [image, points], [points, crop], api_name=False)
            image.clear(lambda: "", None, points, api_name=False)
        verify_button.click(
            verify,
            [reference, probe, spectrum, far, reference_points, probe_points],
            [reference_crop, probe_crop, score, decision],
            api_name="verify",
        )
        enrol_button.click(
            enrol, [gallery_files, gallery_names], [gallery_state, enrolled, enrol_status], api_name="enrol"
        )
        identify_button.click(
            identify,
            [gallery_state, id_probe, id_spectrum, id_far, id_points],
            [id_crop, ranking, id_note],
            api_name="identify",
        )
    return demo


def launch(demo: gr.Blocks, **kwargs):
    """Queue and serve on this machine only; no share link, no analytics, uploads capped."""
    options = dict(server_name="127.0.0.1", max_file_size=MAX_FILE_SIZE, share=False, show_error=False)
    options.update(kwargs)
    return demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE).launch(**options)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    server = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    try:
        space_engine = FaceEngine()
    except SpaceError as error:
        sys.exit(f"Cannot start the Space: {error}")
    launch(build_demo(space_engine), server_name=server, server_port=port)
