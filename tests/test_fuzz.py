"""Hostile input, fuzzed (hypothesis): random bytes under image names, truncated and huge images, arrays of every
dtype and shape (zero-size, NaN, infinity), CSVs with missing, extra and wrongly typed columns, paths that climb
out of the root. Each either gives a valid result or ends in the project's own error (ValueError, AlignmentError,
SpaceError, FileNotFoundError) with a sentence; never another exception, a hang, a file written outside the output
folder or a path outside the root. `pytest tests/test_fuzz.py --hypothesis-show-statistics` counts the cases."""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from hfr_hf.alignment import AlignmentError, FaceAligner
from hfr_hf.alignment.folder import read_landmarks_csv
from hfr_hf.evaluation import Scores, check_files, read_protocol, read_scores, write_scores
from hfr_hf.image_processing_edgeface import EdgeFaceImageProcessor
from hfr_hf.images import MAX_PIXELS, load_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spaces/edgeface-hfr"))

from hfr_space import FaceEngine, SpaceError, read_image  # noqa: E402

# Deterministic (the same cases in CI every time), no example database written into the repository, no deadline
# (the CI machine is busy): only the number of cases bounds the time.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def assert_sentence(error: BaseException) -> None:
    """A message a person can act on: words, ending as a sentence does, no bare repr of an exception. The outcome
    is counted (`--hypothesis-show-statistics` lists the events)."""
    message = str(error).strip()
    assert len(message.split()) >= 4 and message[-1] in ".?", f"{type(error).__name__}: {message!r}"
    event(f"refused: {type(error).__name__}")


def accepted() -> None:
    event("accepted")


def image_bytes(image: np.ndarray, format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=format)
    return buffer.getvalue()


def png_header(width: int, height: int, payload: bytes = b"") -> bytes:
    """A PNG that claims `width`×`height` (8-bit RGB) in its header, with `payload` deflated as its only data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(payload)) + chunk(b"IEND", b"")


FACE = np.asarray(Image.effect_mandelbrot((64, 64), (-2, -1.5, 1, 1.5), 100).convert("RGB"))  # no assets needed
IMAGE_NAMES = st.sampled_from(["a.png", "a.jpg", "a.jpeg", "a.tiff", "a.bmp", "a.pgm", "a.webp", "a.gif", "noext"])


@st.composite
def hostile_files(draw) -> bytes:
    """Random bytes, a real image cut short or with bytes flipped, or a PNG claiming any size."""
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "huge"]))
    if kind == "random":
        return draw(st.binary(max_size=2048))
    if kind == "huge":
        side = st.integers(0, 2**31 - 1)
        return png_header(draw(side), draw(side), draw(st.binary(max_size=64)))
    data = image_bytes(FACE, draw(st.sampled_from(["PNG", "JPEG", "TIFF", "BMP", "WEBP"])))
    if kind == "truncated":
        return data[: draw(st.integers(0, len(data) - 1))]
    position = draw(st.integers(0, len(data) - 1))
    return data[:position] + bytes([data[position] ^ draw(st.integers(1, 255))]) + data[position + 1 :]


ANY_DTYPE = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    st.just(np.dtype(object)),
    st.just(np.dtype("U3")),
    st.just(np.dtype("datetime64[s]")),
)
ANY_ARRAY = hnp.arrays(ANY_DTYPE, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9))


# ------------------------------------------------------------------------------------------------ image files


@FUZZ
@given(data=hostile_files(), name=IMAGE_NAMES)
def test_image_files_load_or_are_refused_with_a_sentence(tmp_path_factory, data, name):
    path = tmp_path_factory.mktemp("files") / name
    path.write_bytes(data)
    try:
        image = load_image(path)
    except ValueError as error:
        assert_sentence(error)
        return
    accepted()
    assert image.width * image.height <= MAX_PIXELS
    assert EdgeFaceImageProcessor()(image, return_tensors="np").pixel_values.shape == (1, 3, 112, 112)


# -------------------------------------------------------------------------------------------- image processor


@FUZZ
@given(array=ANY_ARRAY)
def test_the_processor_takes_any_array_or_refuses_it(array):
    try:
        pixels = EdgeFaceImageProcessor()(array, return_tensors="np").pixel_values
    except ValueError as error:
        assert_sentence(error)
        return
    accepted()
    assert pixels.shape == (len(array) if array.ndim == 4 else 1, 3, 112, 112) and np.isfinite(pixels).all()
    assert array.size > 0 and -1.0 <= pixels.min() and pixels.max() <= 1.0


# ---------------------------------------------------------------------------------------------------- aligner

COORDINATE = st.floats(allow_nan=True, allow_infinity=True) | st.floats(-10, 80)


@st.composite
def near_a_face(draw) -> list[tuple[float, float]]:
    """The template's 5 (or 2) points scaled, moved and jittered: faces, near-faces and broken faces."""
    from hfr_hf.alignment.aligner import ARCFACE_TEMPLATE

    scale, dx, dy = draw(st.floats(0.05, 1.5)), draw(st.floats(-40, 60)), draw(st.floats(-40, 60))
    jitter = st.floats(-12, 12)
    points = [(x * scale + dx + draw(jitter), y * scale + dy + draw(jitter)) for x, y in ARCFACE_TEMPLATE]
    return points[:2] if draw(st.booleans()) else points


@FUZZ
@given(
    points=st.lists(st.tuples(COORDINATE, COORDINATE), max_size=7) | near_a_face(),
    shape=st.tuples(st.integers(0, 140), st.integers(0, 140)),
)
def test_from_landmarks_aligns_a_face_or_refuses(points, shape):
    image = np.asarray(Image.fromarray(FACE).resize((max(shape[1], 1), max(shape[0], 1))))[: shape[0], : shape[1]]
    try:
        face = FaceAligner().from_landmarks(image, np.asarray(points, np.float64).reshape(-1, 2))
    except ValueError as error:  # AlignmentError for the points, ValueError for an empty image
        assert_sentence(error)
        return
    accepted()
    assert face.crop.shape == (112, 112, 3) and face.crop.dtype == np.uint8
    inside = (face.landmarks >= 0) & (face.landmarks <= [shape[1] - 1, shape[0] - 1])
    assert inside.all() and len(points) in (2, 5)


@FUZZ
@given(landmarks=st.one_of(ANY_ARRAY, st.lists(st.one_of(st.floats(), st.text(max_size=3), st.none()), max_size=11)))
def test_from_landmarks_refuses_what_is_not_points(landmarks):
    try:
        FaceAligner().from_landmarks(FACE, landmarks)
    except AlignmentError as error:
        assert_sentence(error)
        return
    accepted()


# ---------------------------------------------------------------------------------------------- CSV readers

CELL = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.text(max_size=8),
    st.sampled_from(["", "nan", "inf", "-inf", "1e999", "same", "0", "1", "yes", "gallery", "probe", "../../x.png"]),
)


@st.composite
def csv_text(draw, columns: list[str], valid: list[list[str]] = ()) -> str:
    """A header drawn from `columns` (some missing, some extra, any order) or one of the `valid` headers, and rows
    of any length (or of the header's, as a well-formed file has)."""
    any_header = st.lists(st.sampled_from([*columns, "extra", "", "path"]), min_size=0, max_size=len(columns) + 2)
    header = draw(any_header | st.sampled_from(valid) if valid else any_header)
    width = st.integers(0, len(header) + 2) | st.just(len(header))
    rows = draw(st.lists(width.flatmap(lambda n: st.lists(CELL, min_size=n, max_size=n)), max_size=6))
    lines = [",".join(header)] + [",".join(row) for row in rows]
    text = "\n".join(lines)
    if draw(st.booleans()):
        text += draw(st.text(max_size=20))  # stray bytes: quotes, NUL, other line ends
    return text


LANDMARK_COLUMNS = ["path", "x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4", "x5", "y5"]


@FUZZ
@given(
    text=csv_text(LANDMARK_COLUMNS, [LANDMARK_COLUMNS, LANDMARK_COLUMNS[:5]]), raw=st.binary(max_size=64) | st.just(b"")
)
def test_landmark_csv_reads_or_is_refused(tmp_path_factory, text, raw):
    path = tmp_path_factory.mktemp("landmarks") / "landmarks.csv"
    path.write_bytes(text.encode("utf-8", "surrogatepass") + raw)
    try:
        table = read_landmarks_csv(path)
    except ValueError as error:
        assert_sentence(error)
        return
    accepted()
    for values in table.values():
        assert len(values) in (4, 10) and np.isfinite(values).all()


PROTOCOL_COLUMNS = ["path_a", "path_b", "label", "identity_a", "identity_b", "fold", "identity", "modality", "split"]
PROTOCOL_HEADERS = [
    ["path_a", "path_b", "label"],
    ["path_a", "path_b", "identity_a", "identity_b", "fold"],
    ["path", "identity", "modality", "split"],
]


@FUZZ
@given(text=csv_text(PROTOCOL_COLUMNS, PROTOCOL_HEADERS), raw=st.binary(max_size=64) | st.just(b""))
def test_protocols_read_or_are_refused(tmp_path_factory, text, raw):
    path = tmp_path_factory.mktemp("protocols") / "protocol.csv"
    path.write_bytes(text.encode("utf-8", "surrogatepass") + raw)
    try:
        protocol = read_protocol(path)
    except ValueError as error:
        assert_sentence(error)
        return
    accepted()
    assert protocol.kind in ("verification", "identification")


PATH_PART = st.sampled_from(["..", ".", "a.png", "sub", "link", "/", "/etc", "passwd", "", "\x00", "x" * 300, "~"])


@FUZZ
@given(paths=st.lists(st.lists(PATH_PART, min_size=1, max_size=6).map("/".join), min_size=1, max_size=5))
def test_protocol_paths_never_leave_the_root(tmp_path_factory, paths):
    base = tmp_path_factory.mktemp("root")
    root = base / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(b"")
    (root / "sub" / "a.png").write_bytes(b"")
    (base / "a.png").write_bytes(b"")  # reachable with .. only
    (root / "link").symlink_to(base, target_is_directory=True)  # a link out of the root
    try:
        files = check_files(paths, root)
    except (ValueError, FileNotFoundError) as error:
        assert_sentence(error)
        return
    accepted()
    for file in files:
        assert file.resolve().is_relative_to(root.resolve()) and file.is_file()


SCORE_COLUMNS = ["probe_reference_id", "probe_subject_id", "probe_key", "bio_ref_reference_id", "bio_ref_subject_id"]


@FUZZ
@given(
    text=st.one_of(
        csv_text([*SCORE_COLUMNS, "bio_ref_key", "score"], [[*SCORE_COLUMNS, "bio_ref_key", "score"]]),
        st.lists(CELL, max_size=12).map(" ".join),
    ),
    raw=st.binary(max_size=64) | st.just(b""),
    name=st.sampled_from(["scores.csv", "scores.txt", "scores"]),
)
def test_score_files_read_or_are_refused(tmp_path_factory, text, raw, name):
    path = tmp_path_factory.mktemp("scores") / name
    path.write_bytes(text.encode("utf-8", "surrogatepass") + raw)
    try:
        scores = read_scores(path)
    except ValueError as error:
        assert_sentence(error)
        return
    accepted()
    assert np.isfinite(scores.score).all() and len(scores.probe_key) == len(scores)


KEY = st.text(max_size=6)


@FUZZ
@given(
    rows=st.lists(st.tuples(KEY, KEY, KEY, KEY, st.floats(allow_nan=True, allow_infinity=True)), max_size=5),
    name=st.sampled_from(["s.csv", "s.txt"]),
)
def test_score_files_round_trip_or_are_refused_leaving_nothing(tmp_path_factory, rows, name):
    folder = tmp_path_factory.mktemp("written")
    columns = [[row[k] for row in rows] for k in range(4)]
    scores = Scores(*columns, np.asarray([row[4] for row in rows], np.float64))
    try:
        write_scores(folder / name, scores)
    except ValueError as error:
        assert_sentence(error)
        assert list(folder.iterdir()) == []  # nothing half-written
        return
    accepted()
    assert [p.name for p in folder.iterdir()] == [name]
    back = read_scores(folder / name)
    assert back.probe_subject_id == scores.probe_subject_id and back.bio_ref_subject_id == scores.bio_ref_subject_id
    np.testing.assert_array_equal(back.score, scores.score)


# ------------------------------------------------------------------------------------------- the Space's upload


@FUZZ
@given(data=hostile_files(), name=IMAGE_NAMES)
def test_space_uploads_read_or_are_refused(tmp_path_factory, data, name):
    path = tmp_path_factory.mktemp("uploads") / name
    path.write_bytes(data)
    try:
        rgb, scale = read_image(str(path))
    except SpaceError as error:
        assert_sentence(error)
        return
    accepted()
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8 and 0 < scale <= 1


@FUZZ
@given(array=ANY_ARRAY)
def test_space_takes_any_array_or_refuses_it(array):
    try:
        rgb, _ = read_image(array)
    except SpaceError as error:
        assert_sentence(error)
        return
    accepted()
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8 and rgb.size > 0


@pytest.fixture(scope="module")
def engine(xxs_folder):
    return FaceEngine(xxs_folder, adapters="none")


POINTS_TEXT = st.one_of(
    st.none(),
    near_a_face().map(lambda points: "; ".join(f"{x:.1f}, {y:.1f}" for x, y in points)),
    st.text(max_size=30),
    st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.floats(-20, 140), max_size=11).map(
        lambda values: "; ".join(f"{v!r}" for v in values)
    ),
)


@settings(FUZZ, max_examples=100)
@given(
    image=st.one_of(ANY_ARRAY, st.tuples(st.integers(1, 140), st.integers(1, 140)).map(lambda s: FACE[: s[0], : s[1]])),
    points=st.one_of(POINTS_TEXT, ANY_ARRAY),
)
def test_space_align_gives_a_face_crop_or_a_sentence(engine, image, points):
    try:
        aligned = engine.align(image, points, role="probe")
    except SpaceError as error:
        assert_sentence(error)
        return
    accepted()
    assert aligned.crop.shape == (112, 112, 3) and aligned.crop.dtype == np.uint8


# ------------------------------------------------------------------------------------------- folder alignment

NAME_PART = st.text("ab._- é0", min_size=1, max_size=6).filter(lambda part: part not in (".", ".."))


@settings(FUZZ, max_examples=60)
@given(
    files=st.dictionaries(
        st.lists(NAME_PART, min_size=1, max_size=3).map("/".join), hostile_files() | st.just(b"face"), max_size=5
    ),
    extra_keys=st.lists(st.sampled_from(["../outside.png", "/etc/passwd", "../../x.png", "a/../../y.png"]), max_size=2),
    points=near_a_face(),
)
def test_align_folder_writes_only_inside_the_output_folder(tmp_path_factory, files, extra_keys, points):
    """Hostile names (dots, spaces, accents, a file and a folder of one name) and contents, landmark rows for
    every image and for paths that climb out: crops, CSV and nothing else land under the output folder, and a bad
    image is a row of the CSV, not a stop."""
    from hfr_hf.alignment.folder import align_folder

    from .test_alignment import FakeDetector

    base = tmp_path_factory.mktemp("align")
    source, output = base / "in", base / "out"
    source.mkdir()
    written = {}
    for relative, data in files.items():
        path = source / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image_bytes(FACE, "PNG") if data == b"face" else data)
            written[relative] = path
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue  # a file and a folder of one name: the file system refuses, as it should
    landmarks = {relative: [v for p in points for v in p] for relative in [*written, *extra_keys]}
    before = {p for p in base.rglob("*")}
    detector = FakeDetector(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))  # finds nothing
    try:
        report = align_folder(source, output, FaceAligner(detector=detector), landmarks, progress=False)
    except ValueError as error:  # names that cannot be told apart: refused before writing
        assert_sentence(error)
        assert {p for p in base.rglob("*")} == before
        return
    accepted()
    new = {p for p in base.rglob("*")} - before
    assert all(p.resolve().is_relative_to(output.resolve()) for p in new)
    assert set(report.aligned) | set(report.failed) <= set(written) and (output / "alignment.csv").is_file()
