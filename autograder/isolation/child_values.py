"""Values in and out of the child: argument specs built into objects, results made plain.

Arguments are plain channel values, except that a dict with a ``"__build__"``
key is replaced by an object from :data:`BUILDERS` (``{"__build__": "mlp",
...}``, ``{"__build__": "generator", "seed": 0}``). Results and arguments sent
back turn ``nn.Module`` into its ``state_dict()`` (tensors, in registration
order) and ``torch.Generator`` into its ``get_state()`` tensor.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import torch

import channel  # the child's files import each other by bare names


class RequestError(Exception):
    """The grader's request is malformed (reported with kind ``"request"``)."""


# --------------------------------------------------------------------------- builders


def _build_mlp(spec: dict) -> torch.nn.Sequential:
    """``{"sizes": [d0, d1, ..., dn], "bias": bool=True, "batchnorm": bool=False, "requires_grad": bool=True,
    "seed": int|None, "state_dict": {str: Tensor}|None}`` -> ``Sequential(Linear(d0, d1), [BatchNorm1d(d1)], ReLU(), ...,
    Linear(dn-1, dn))``; ``seed`` seeds the default init, ``state_dict`` replaces it."""
    check_keys(spec, "mlp", required={"sizes"}, optional={"bias", "batchnorm", "requires_grad", "seed", "state_dict"})
    sizes, bias, batchnorm = spec["sizes"], spec.get("bias", True), spec.get("batchnorm", False)
    requires_grad = spec.get("requires_grad", True)
    seed, state = spec.get("seed"), spec.get("state_dict")
    if type(sizes) is not list or len(sizes) < 2 or \
            any(type(n) is not int or n < 1 for n in sizes):
        raise RequestError(f"mlp: sizes must be a list of at least 2 positive ints, got {sizes!r}")
    if type(bias) is not bool or type(batchnorm) is not bool or type(requires_grad) is not bool or \
            (seed is not None and type(seed) is not int) or (state is not None and type(state) is not dict):
        raise RequestError("mlp: bias, batchnorm and requires_grad must be bools, seed an int, state_dict a dict")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        layers: list[torch.nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            if i:
                layers += [torch.nn.BatchNorm1d(n_in)] if batchnorm else []
                layers.append(torch.nn.ReLU())
            layers.append(torch.nn.Linear(n_in, n_out, bias=bias))
        model = torch.nn.Sequential(*layers)
    if state is not None:
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, KeyError) as e:
            raise RequestError(f"mlp: state_dict does not fit sizes {sizes}: {e}") from None
    model.requires_grad_(requires_grad)
    return model


def _build_generator(spec: dict) -> torch.Generator:
    """``{"seed": int}`` -> a CPU ``torch.Generator`` seeded with it."""
    check_keys(spec, "generator", required={"seed"}, optional=set())
    if type(spec["seed"]) is not int:
        raise RequestError(f"generator: seed must be an int, got {spec['seed']!r}")
    return torch.Generator().manual_seed(spec["seed"])


def _build_pil_image(spec: dict) -> Any:
    """``{"array": uint8 Tensor [H, W, 3] or [H, W]}`` -> a ``PIL.Image`` (RGB or L)."""
    check_keys(spec, "pil_image", required={"array"}, optional=set())
    array = spec["array"]
    if type(array) is not torch.Tensor or array.dtype != torch.uint8 or array.dim() not in (2, 3) \
            or (array.dim() == 3 and array.shape[2] != 3):
        raise RequestError("pil_image: array must be a uint8 tensor [H, W, 3] or [H, W]")
    from PIL import Image

    return Image.fromarray(array.numpy())


BUILDERS: dict[str, Callable[[dict], Any]] = {
    "mlp": _build_mlp,
    "generator": _build_generator,
    "pil_image": _build_pil_image,
}
"""Kinds of ``{"__build__": kind, ...}`` argument specs the child can turn into objects."""


def check_keys(spec: dict, what: str, required: set, optional: set) -> None:
    keys = set(spec) - {"__build__"}
    if not required <= keys or not keys <= required | optional:
        raise RequestError(f"{what}: expected keys {sorted(required)} and optionally "
                           f"{sorted(optional)}, got {sorted(keys)}")


def build(value: Any, depth: int = 0) -> Any:
    """``value`` with every ``{"__build__": kind, ...}`` dict replaced by its object."""
    if depth > channel.DEFAULT_MAX_DEPTH:
        raise RequestError("arguments nested too deeply")
    if type(value) is dict and "__build__" in value:
        builder = BUILDERS.get(value["__build__"]) if type(value["__build__"]) is str else None
        if builder is None:
            raise RequestError(f"unknown __build__ kind {value['__build__']!r}; known: "
                               f"{', '.join(BUILDERS)}")
        return builder(value)
    if type(value) in (list, tuple):
        return type(value)(build(v, depth + 1) for v in value)
    if type(value) is dict:
        return {k: build(v, depth + 1) for k, v in value.items()}
    return value


def _tv_tensor_types() -> set:
    """torchvision's tensor subclasses (Image, Video, Mask, ...) if torchvision is loaded."""
    tv = sys.modules.get("torchvision.tv_tensors")
    if tv is None:
        return set()
    return {v for v in vars(tv).values() if isinstance(v, type) and issubclass(v, torch.Tensor)}


def export(value: Any, depth: int = 0) -> Any:
    """``value`` with modules as ``state_dict()`` and generators as ``get_state()``.

    Other objects are left for :func:`channel.encode` to accept or refuse.
    """
    if depth > channel.DEFAULT_MAX_DEPTH:
        return value  # the encoder reports the depth
    if isinstance(value, torch.nn.Module):
        return dict(value.state_dict())
    if type(value) in _tv_tensor_types():  # torchvision's ToImage() gives these; send plain tensors
        return torch.Tensor.as_subclass(value, torch.Tensor)
    if type(value) is torch.Generator:
        return value.get_state()
    if type(value) in (list, tuple):
        return type(value)(export(v, depth + 1) for v in value)
    if type(value) is dict:
        return {k: export(v, depth + 1) for k, v in value.items()}
    return value


def attached(value: Any) -> bool | None:
    """Whether an argument is attached to autograd after a call (``report_graph``): for a tensor,
    ``requires_grad``; for a module, whether any parameter is not a leaf (an in-place update built a graph
    into it) or any buffer requires grad; ``None`` for anything else."""
    if isinstance(value, torch.Tensor):
        return bool(value.requires_grad)
    if isinstance(value, torch.nn.Module):
        return any(p.grad_fn is not None for p in value.parameters()) or any(b.requires_grad for b in value.buffers())
    return None
