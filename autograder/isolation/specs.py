"""Arguments that are not plain data, described for the child to build (see ``child_values.py``)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch


def mlp_spec(sizes: Iterable[int], state_dict: Mapping[str, Any] | None = None, *,
             seed: int | None = None, bias: bool = True, batchnorm: bool = False,
             requires_grad: bool = True) -> dict:
    """An argument the child builds into ``nn.Sequential(Linear, ReLU, ..., Linear)``.

    ``sizes`` = ``[d0, ..., dn]`` gives ``Linear(d0, d1)``, ..., ``Linear(dn-1, dn)``
    with ``ReLU`` between them, and with ``batchnorm`` a ``BatchNorm1d`` before
    each ``ReLU`` (a model with buffers: running statistics). ``state_dict``
    (tensors, e.g. ``model.state_dict()`` of the same architecture) replaces
    the default initialisation, which ``seed`` makes reproducible. With
    ``requires_grad=False`` its parameters do not require grad (a frozen
    model, like MoCo's key encoder).
    """
    spec: dict = {"__build__": "mlp", "sizes": list(sizes), "bias": bias}
    if batchnorm:
        spec["batchnorm"] = True
    if not requires_grad:
        spec["requires_grad"] = False
    if seed is not None:
        spec["seed"] = seed
    if state_dict is not None:
        spec["state_dict"] = dict(state_dict)
    return spec


def generator_spec(seed: int) -> dict:
    """An argument the child builds into ``torch.Generator().manual_seed(seed)``."""
    return {"__build__": "generator", "seed": seed}


def pil_image_spec(array: torch.Tensor) -> dict:
    """An argument that becomes a ``PIL.Image`` where the student's code runs (uint8 ``[H, W, 3]``)."""
    return {"__build__": "pil_image", "array": array}
