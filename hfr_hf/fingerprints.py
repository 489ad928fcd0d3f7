"""Fingerprints of model weights: the same weights give the same SHA-256 on any device, whichever class holds them
(`EdgeFaceModel` or the transformers-free `EdgeFaceNetwork`), so galleries and adapters can check what made them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch

__all__ = ["weights_fingerprint"]


def weights_fingerprint(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of named tensors: names, shapes and float32 values, in name order."""
    digest = hashlib.sha256()
    for key, tensor in sorted(tensors.items()):
        values = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{key}:{tuple(values.shape)};".encode())
        digest.update(values.numpy().tobytes())
    return digest.hexdigest()
