"""Galleries that persist: enrol once, add and remove people, search probes through a FAISS index, and say
"not enrolled" for strangers at a calibrated false positive identification rate.

`store` (the gallery on disk and its search), `index` (exact, or IVF-PQ fast-scan FAISS index, by size),
`enrolment` (the embedder and its fingerprint, the list of images to enrol), `commands` (enrol, identify,
write results: what the CLI and the Space call).
"""

from .commands import EnrolmentReport, enroll, enroll_shards, identify, open_or_create, write_identifications
from .enrolment import Embedder, EnrolmentList, read_enrolment_list
from .index import EXACT_LIMIT, build_index
from .store import FUSIONS, Candidate, Gallery, GalleryError, Identification

__all__ = [
    "EXACT_LIMIT",
    "FUSIONS",
    "Candidate",
    "Embedder",
    "EnrolmentList",
    "EnrolmentReport",
    "Gallery",
    "GalleryError",
    "Identification",
    "build_index",
    "enroll",
    "enroll_shards",
    "identify",
    "open_or_create",
    "read_enrolment_list",
    "write_identifications",
]
