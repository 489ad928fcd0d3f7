"""What goes into a gallery: the embedder (model + adapter + alignment, and its fingerprint) and the list of
images to enrol (a folder per person, or a CSV)."""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Embedder", "EnrolmentList", "read_enrolment_list"]


def _adapter_fingerprint(model) -> str:
    """SHA-256 of the active adapter's weights, "" without one (a merged adapter is in the base fingerprint)."""
    active = getattr(model, "active_adapter", None)
    if not isinstance(active, str):
        return ""
    digest = hashlib.sha256()
    marker = f".{active}."
    for key, tensor in sorted(model.state_dict().items()):
        if ".ln_tuning_layers." in key and marker in key:
            values = tensor.detach().to("cpu").float().contiguous()
            digest.update(f"{key.replace(marker, '.')}:{tuple(values.shape)};".encode())
            digest.update(values.numpy().tobytes())
    return digest.hexdigest()


@dataclass
class Embedder:
    """A model (with its adapter, if any) that turns image files into normalised embeddings for a gallery."""

    model: object
    processor: object
    align: str = "auto"
    aligner: object = None
    fingerprint: dict = field(init=False)

    def __post_init__(self):
        from ..edgeface_layers import EdgeFaceNetwork

        if isinstance(self.model, EdgeFaceNetwork):  # loaded without transformers: plain weights, no adapter
            from ..fingerprints import weights_fingerprint

            self.fingerprint = {"model": weights_fingerprint(self.model.state_dict()), "adapter": ""}
            return
        from ..adapters import base_fingerprint

        self.fingerprint = {"model": base_fingerprint(self.model), "adapter": _adapter_fingerprint(self.model)}

    @classmethod
    def load(
        cls,
        model: str | os.PathLike,
        adapter: str | os.PathLike | None = None,
        align: str = "auto",
        device: str = "cpu",
        **kwargs,
    ):
        """From a model folder or Hub id and an optional xEdgeFace adapter folder (`align`: see
        `hfr_hf.inference.face_crops`)."""
        from ..inference import load_model

        if Path(model).suffix == ".onnx":
            raise ValueError(
                f"{model} is an ONNX file, but a gallery fingerprints the torch weights that embed its faces; give the "
                "model folder it was exported from."
            )
        network, processor = load_model(model, device, light=not adapter)  # PEFT adapts the transformers model
        if adapter:
            from ..adapters import load_adapter

            network = load_adapter(network, adapter).eval()
        return cls(network, processor, align, **kwargs)

    @property
    def embedding_size(self) -> int:
        return int(self.model.config.embedding_size)

    def embed(self, images, batch_size: int = 64, skip_unusable: bool = False, progress: bool = True):
        """(embeddings, used, failed): the embeddings of the usable images, the indices of those images and one line
        per unusable image. Without `skip_unusable`, any unusable image raises one `UnusableImagesError` naming all."""
        from ..images import UnusableImagesError
        from ..inference import embed_images, face_crops

        if not skip_unusable:
            vectors = embed_images(
                self.model,
                self.processor,
                images,
                batch_size,
                progress=progress,
                align=self.align,
                aligner=self.aligner,
            )
            return vectors, list(range(len(images))), []
        crops, used, failed = [], [], []
        for i, image in enumerate(images):
            try:
                crops.extend(face_crops([image], self.processor, self.align, self.aligner))
                used.append(i)
            except UnusableImagesError as error:
                failed.extend(error.failed)
        if not crops:
            return np.zeros((0, self.embedding_size), np.float32), used, failed
        vectors = embed_images(self.model, self.processor, crops, batch_size, progress=progress, align="never")
        return vectors, used, failed


@dataclass
class EnrolmentList:
    identities: list[str]
    paths: list[Path]
    spectra: list[str]


def read_enrolment_list(source: str | os.PathLike, spectrum: str = "visible") -> EnrolmentList:
    """The images to enrol from a folder with one subfolder per person (the subfolder's name is the identity) or
    a CSV with columns `identity,path[,spectrum]` (paths relative to the CSV's folder)."""
    from ..images import list_images

    source = Path(source)
    ids, paths, spectra = [], [], []
    if source.is_dir():
        people = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
        for person in people:
            for image in list_images(person):
                ids.append(person.name)
                paths.append(image)
                spectra.append(spectrum)
        if not paths:
            raise ValueError(f"{source} has no subfolders of images; give one subfolder per person, or a CSV.")
    elif source.is_file():
        with open(source, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"identity", "path"} <= set(reader.fieldnames):
                raise ValueError(f"{source} needs a header with columns identity and path (and optionally spectrum).")
            for row in reader:
                ids.append(row["identity"])
                path = Path(row["path"])
                paths.append(path if path.is_absolute() else source.parent / path)
                spectra.append(row.get("spectrum") or spectrum)
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} images listed in {source} do not exist: {', '.join(missing[:5])}.")
        if not paths:
            raise ValueError(f"{source} lists no images.")
    else:
        raise FileNotFoundError(f"{source} does not exist; give a folder with one subfolder per person, or a CSV.")
    return EnrolmentList(ids, paths, spectra)
