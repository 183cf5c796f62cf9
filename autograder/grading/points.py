"""Points of every graded check: the one table that all front ends follow.

A graded function's points are the sum of its checks; the hidden-test cell of
that function in the source notebook carries the same total (a kit test
compares them). Check names:

- ``values``: outputs against the reference on seeded random inputs of
  ordinary sizes, float32 and float64, dtype and device kept, inputs not
  modified, and float64 computed in float64;
- ``edge_cases``: the same on the degenerate sizes (N = 1, D = 1): a
  function right on ordinary inputs and wrong only there loses this small
  share, not its values points; also the limits of a parameter (a mask as
  large as the image, a temperature near 0, a single bin);
- ``gradients``: gradients against the reference's;
- ``errors``: the SPEC's invalid arguments raise ``ValueError``;
- ``gradients`` also covers what must stay out of autograd: no gradient into
  MoCo's keys and queue, no graph built into the key encoder by the momentum
  update, no graph kept in the queue by the keys it stores;
- ``vectorized``: no Python loop over the batch, timed against the reference
  and a loop in one run (for ``hamming_permutations``, which loops over the
  permutations it picks by design: no Python loop over the ``T!``
  candidates, timed the same way);
- ``stability``: large inputs (scores of hundreds or thousands) give the
  finite value the formula defines: no overflow of ``exp`` to inf or nan;
- ``randomness``: a random function draws anew on every call, and each
  component the SPEC names has its probability and strength, judged by the
  distribution of many seeded draws on probe images that isolate it.
  For ``hamming_permutations``: the same generator seed gives the same set,
  and the random start is drawn from the generator (seeds differ, sets
  differ; no generator, torch's global one).
"""
from __future__ import annotations

POINTS: dict[str, dict[str, dict[str, float]]] = {
    "01_pretext_tasks": {
        "rotate_batch": {"values": 1.25, "edge_cases": 0.25, "errors": 0.25},
        "context_pairs": {"values": 1.5, "edge_cases": 0.25, "errors": 0.25, "vectorized": 0.5},
        "hamming_permutations": {"values": 1.25, "edge_cases": 0.25, "errors": 0.25, "randomness": 0.5,
                                 "vectorized": 0.25},
        "tile_images": {"values": 1, "edge_cases": 0.25, "errors": 0.25},
        "shuffle_tiles": {"values": 1.25, "vectorized": 0.5},
    },
    "02_generative_pretext": {
        "center_mask": {"values": 0.75, "edge_cases": 0.25},
        "masked_mse": {"values": 0.75, "errors": 0.25, "gradients": 0.25},
        "encode_ab": {"values": 1, "vectorized": 0.5},
        "rebalance_weights": {"values": 1, "edge_cases": 0.25},
        "colorization_loss": {"values": 1, "gradients": 0.5},
        "annealed_mean": {"values": 1, "edge_cases": 0.25},
        "propagate_colors": {"values": 1.25, "edge_cases": 0.25, "gradients": 0.25, "vectorized": 0.5},
    },
    "03_simclr": {
        "compute_train_transform": {"values": 1, "randomness": 1},
        "sim": {"values": 0.75, "edge_cases": 0.25},
        "simclr_loss_naive": {"values": 2.5, "edge_cases": 0.5},
        "compute_sim_matrix": {"values": 1.25, "edge_cases": 0.25, "vectorized": 0.5},
        "sim_positive_pairs": {"values": 1.25, "edge_cases": 0.25, "vectorized": 0.5},
        "simclr_loss_vectorized": {"values": 1.75, "edge_cases": 0.25, "gradients": 1, "vectorized": 1},
    },
    "04_moco": {
        "momentum_update": {"values": 1.25, "edge_cases": 0.5, "gradients": 0.25},
        "enqueue": {"values": 1.25, "edge_cases": 0.25, "errors": 0.25, "gradients": 0.25},
        "moco_logits": {"values": 1.25, "edge_cases": 0.25, "gradients": 0.5, "vectorized": 0.5},
        "moco_loss": {"values": 1, "edge_cases": 0.25, "gradients": 0.25},
        "batch_shuffle": {"values": 0.5, "randomness": 1},
        "batch_unshuffle": {"values": 0.5},
    },
    "05_cpc": {
        "cpc_scores": {"values": 1.5, "edge_cases": 0.5, "gradients": 0.5, "vectorized": 1},
        "cpc_infonce": {"values": 1.25, "edge_cases": 0.25, "stability": 0.75, "gradients": 0.75},
        "cpc_loss": {"values": 1.5, "edge_cases": 0.25, "errors": 0.75, "gradients": 1},
    },
}

DEPENDS: dict[str, dict[str, tuple[str, ...]]] = {
    "03_simclr": {
        "simclr_loss_naive": ("sim",),
        "simclr_loss_vectorized": ("compute_sim_matrix", "sim_positive_pairs"),
    },
    "04_moco": {
        "moco_loss": ("moco_logits",),
    },
    "05_cpc": {
        "cpc_loss": ("cpc_scores", "cpc_infonce"),
    },
}
"""The graded functions each graded function is *meant* to call (the notebook's text says so).

While a function's values and gradients are checked, these, and only these,
are the reference versions; every other name the student's code uses is the
student's own. Declared here, not read from the student's code, so that a
function cannot hand its work to the reference of another graded function.
"""

NOTEBOOKS = ("01_pretext_tasks", "02_generative_pretext", "03_simclr", "04_moco", "05_cpc")
"""The released notebooks, in course order; only those in POINTS are graded so far."""


def function_points(notebook: str, function: str) -> float:
    """Total points of one graded function."""
    return float(sum(POINTS[notebook][function].values()))


def graded_functions(notebook: str) -> list[str]:
    """The graded functions of ``notebook``, in notebook order."""
    return list(POINTS.get(notebook, {}))


def dependencies(notebook: str) -> dict[str, tuple[str, ...]]:
    """``{function: the graded functions it may call}`` for every graded function of ``notebook``."""
    table = DEPENDS.get(notebook, {})
    return {f: table.get(f, ()) for f in graded_functions(notebook)}


def all_functions() -> dict[str, str]:
    """``{function: notebook}`` over every graded notebook."""
    return {f: nb for nb, table in POINTS.items() for f in table}
