"""The local grade command on realistic 01_pretext_tasks submissions: the reference scores full
marks, the starter zero, each known-wrong implementation loses exactly the points of its function
(or of the one check its bug shows in), and correct implementations written another way keep
full marks.

No graded function of this notebook calls another, so wrong versions of different functions share a
submission freely.
"""
from graded_cases import graded_fixture, kit_tests, points_of, readers, right_tests

NB = "01_pretext_tasks"
FULL, _without, _only = points_of(NB)


# --------------------------------------------------------------------------- wrong versions

WRONG_1 = {  # clockwise, rows and columns swapped, the average distance, column-major tiles, the inverse
    "rotate_batch": """
def rotate_batch(images):
    if images.shape[2] != images.shape[3]:
        raise ValueError("the images must be square")
    rotated = torch.cat([torch.rot90(images, -k, dims=(2, 3)) for k in range(4)])  # clockwise
    labels = torch.arange(4, device=images.device).repeat_interleave(images.shape[0])
    return rotated, labels
""",
    "context_pairs": """
def context_pairs(images, patch_size, gap):
    N, C, H, W = images.shape
    P, S = patch_size, 3 * patch_size + 2 * gap
    if S > H or S > W:
        raise ValueError("the grid does not fit the images")
    top, left = (H - S) // 2, (W - S) // 2

    def patch(r, c):  # r picks the columns, c the rows: transposed
        return images[:, :, top + c * (P + gap):top + c * (P + gap) + P, left + r * (P + gap):left + r * (P + gap) + P]

    neighbors = torch.stack([patch(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)], dim=1)
    centers = patch(1, 1).unsqueeze(1).expand(-1, 8, -1, -1, -1)
    labels = torch.arange(8, device=images.device).repeat(N)
    return centers.reshape(-1, C, P, P), neighbors.reshape(-1, C, P, P), labels
""",
    "hamming_permutations": """
def hamming_permutations(num_permutations, num_tiles=9, generator=None):
    if num_permutations > math.factorial(num_tiles):
        raise ValueError("not that many permutations")
    candidates = torch.tensor(list(itertools.permutations(range(num_tiles))))
    chosen = [int(torch.randint(len(candidates), (1,), generator=generator))]
    total = (candidates != candidates[chosen[0]]).sum(1)
    for _ in range(num_permutations - 1):
        score = total.clone()
        score[chosen] = -1
        best = int(score.argmax())  # the largest total (average) distance: the paper's Algorithm 1
        chosen.append(best)
        total = total + (candidates != candidates[best]).sum(1)
    return candidates[chosen]
""",
    "tile_images": """
def tile_images(images, grid=3):
    N, C, H, W = images.shape
    if H % grid or W % grid:
        raise ValueError("H and W must be divisible by grid")
    h, w = H // grid, W // grid
    tiles = images.reshape(N, C, grid, h, grid, w).permute(0, 4, 2, 1, 3, 5)  # column-major
    return tiles.reshape(N, grid * grid, C, h, w)
""",
    "shuffle_tiles": """
def shuffle_tiles(tiles, permutations, perm_index):
    order = permutations[perm_index]
    out = torch.empty_like(tiles)
    out[torch.arange(tiles.shape[0], device=tiles.device)[:, None], order] = tiles  # the inverse
    return out
""",
}
EXPECTED_1 = {"rotate_batch": _only("rotate_batch", "errors"), "context_pairs": _only("context_pairs", "errors"),
              "hamming_permutations": _only("hamming_permutations", "edge_cases", "errors", "randomness"),
              "tile_images": _only("tile_images", "errors"), "shuffle_tiles": 0}

WRONG_2 = {  # the rotations of each image together, position-major pairs, a random choice, a plain reshape,
    # one permutation for the whole batch
    "rotate_batch": """
def rotate_batch(images):
    N, C, H, W = images.shape
    if H != W:
        raise ValueError(f"images must be square, got {H}x{W}")
    rotated = torch.stack([torch.rot90(images, k, dims=(2, 3)) for k in range(4)], dim=1)  # [N, 4, C, H, W]
    return rotated.reshape(4 * N, C, H, W), torch.arange(4).repeat(N)
""",
    "context_pairs": """
def context_pairs(images, patch_size, gap):
    N, C, H, W = images.shape
    P, step, S = patch_size, patch_size + gap, 3 * patch_size + 2 * gap
    if S > H or S > W:
        raise ValueError("grid too large")
    top, left = (H - S) // 2, (W - S) // 2
    crop = lambda r, c: images[:, :, top + r * step:top + r * step + P, left + c * step:left + c * step + P]
    neighbors = torch.cat([crop(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)])  # j*N + i
    centers = crop(1, 1).repeat(8, 1, 1, 1)
    labels = torch.arange(8).repeat_interleave(N)
    return centers, neighbors, labels
""",
    "hamming_permutations": """
def hamming_permutations(num_permutations, num_tiles=9, generator=None):
    if num_permutations > math.factorial(num_tiles):
        raise ValueError("too many permutations")
    candidates = torch.tensor(list(itertools.permutations(range(num_tiles))))
    picked = torch.randperm(len(candidates), generator=generator)[:num_permutations]  # at random
    return candidates[picked]
""",
    "tile_images": """
def tile_images(images, grid=3):
    N, C, H, W = images.shape
    if H % grid != 0 or W % grid != 0:
        raise ValueError("not divisible")
    return images.reshape(N, grid * grid, C, H // grid, W // grid)  # no permute
""",
    "shuffle_tiles": """
def shuffle_tiles(tiles, permutations, perm_index):
    return tiles[:, permutations[perm_index[0]]]  # the first image's permutation for all
""",
}
EXPECTED_2 = {"rotate_batch": _only("rotate_batch", "errors"), "context_pairs": _only("context_pairs", "errors"),
              "hamming_permutations": _only("hamming_permutations", "errors", "randomness"),
              "tile_images": _only("tile_images", "errors"), "shuffle_tiles": 0}

WRONG_3 = {  # right values: errors not raised, or Python loops over the images and the candidates
    "rotate_batch": """
def rotate_batch(images):
    rotated = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(4)])  # non-square: a RuntimeError
    labels = torch.arange(4, device=images.device).repeat_interleave(len(images))
    return rotated, labels
""",
    "context_pairs": """
def context_pairs(images, patch_size, gap):
    N, C, H, W = images.shape
    P, S = patch_size, 3 * patch_size + 2 * gap
    if S > H or S > W:
        raise ValueError("grid too large")
    top, left = (H - S) // 2, (W - S) // 2
    centers, neighbors, labels = [], [], []
    for i in range(N):  # one image at a time
        for j, (r, c) in enumerate([(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]):
            y, x = top + r * (P + gap), left + c * (P + gap)
            neighbors.append(images[i, :, y:y + P, x:x + P])
            centers.append(images[i, :, top + P + gap:top + 2 * P + gap, left + P + gap:left + 2 * P + gap])
            labels.append(j)
    return torch.stack(centers), torch.stack(neighbors), torch.tensor(labels, device=images.device)
""",
    "hamming_permutations": """
def hamming_permutations(num_permutations, num_tiles=9, generator=None):
    perms = list(itertools.permutations(range(num_tiles)))
    if num_permutations > len(perms):
        raise ValueError("too many permutations")
    first = int(torch.randint(len(perms), (1,), generator=generator))
    chosen = [first]
    min_d = [sum(a != b for a, b in zip(p, perms[first])) for p in perms]
    for _ in range(num_permutations - 1):
        best = max(range(len(perms)), key=lambda i: min_d[i])
        chosen.append(best)
        for i, p in enumerate(perms):  # a Python loop over all T! candidates at every step
            d = sum(a != b for a, b in zip(p, perms[best]))
            if d < min_d[i]:
                min_d[i] = d
    return torch.tensor([perms[i] for i in chosen])
""",
    "tile_images": """
def tile_images(images, grid=3):
    N, C, H, W = images.shape
    if H % grid:  # W is not checked
        raise ValueError("H must be divisible by grid")
    h, w = H // grid, W // grid
    return images.reshape(N, C, grid, h, grid, w).permute(0, 2, 4, 1, 3, 5).reshape(N, grid * grid, C, h, w)
""",
    "shuffle_tiles": """
def shuffle_tiles(tiles, permutations, perm_index):
    out = []
    for n in range(tiles.shape[0]):
        out.append(tiles[n, permutations[perm_index[n]]])
    return torch.stack(out)
""",
}
EXPECTED_3 = {"rotate_batch": _without("rotate_batch", "errors"), "context_pairs": _without("context_pairs", "vectorized"),
              "hamming_permutations": _without("hamming_permutations", "vectorized"),
              "tile_images": _without("tile_images", "errors"), "shuffle_tiles": _without("shuffle_tiles", "vectorized")}

WRONG_4 = {  # float labels, no ValueError, a fixed 3x3 grid, permutations[n]
    "rotate_batch": """
def rotate_batch(images):
    N, C, H, W = images.shape
    if H != W:
        raise ValueError("square images only")
    rotated = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(4)])
    labels = torch.arange(4.0).repeat_interleave(N)  # float labels
    return rotated, labels
""",
    "context_pairs": """
def context_pairs(images, patch_size, gap):
    N, C, H, W = images.shape
    P, S = patch_size, 3 * patch_size + 2 * gap
    top, left = (H - S) // 2, (W - S) // 2  # no check that the grid fits
    patches = torch.stack([images[:, :, top + r * (P + gap):top + r * (P + gap) + P,
                                  left + c * (P + gap):left + c * (P + gap) + P]
                           for r in range(3) for c in range(3)], dim=1)
    neighbors = patches[:, [0, 1, 2, 3, 5, 6, 7, 8]].flatten(0, 1)
    centers = patches[:, 4].repeat_interleave(8, dim=0)
    return centers, neighbors, torch.arange(8, device=images.device).repeat(N)
""",
    "hamming_permutations": """
def hamming_permutations(num_permutations, num_tiles=9, generator=None):
    candidates = torch.tensor(list(itertools.permutations(range(num_tiles))), dtype=torch.int8)  # no check
    chosen = [int(torch.randint(len(candidates), (1,), generator=generator))]
    min_distance = (candidates != candidates[chosen[0]]).sum(1)
    for _ in range(num_permutations - 1):
        best = int(min_distance.argmax())
        chosen.append(best)
        min_distance = torch.minimum(min_distance, (candidates != candidates[best]).sum(1))
    return candidates[chosen].long()
""",
    "tile_images": """
def tile_images(images, grid=3):
    N, C, H, W = images.shape
    if H % 3 or W % 3:
        raise ValueError("H and W must be divisible by 3")
    h, w = H // 3, W // 3  # a fixed 3x3 grid
    return images.reshape(N, C, 3, h, 3, w).permute(0, 2, 4, 1, 3, 5).reshape(N, 9, C, h, w)
""",
    "shuffle_tiles": """
def shuffle_tiles(tiles, permutations, perm_index):
    N = tiles.shape[0]
    return tiles[torch.arange(N)[:, None], permutations[:N]]  # image n gets permutation n
""",
}
EXPECTED_4 = {"rotate_batch": _only("rotate_batch", "errors"), "context_pairs": _without("context_pairs", "errors"),
              "hamming_permutations": _without("hamming_permutations", "errors"),
              "tile_images": _only("tile_images", "errors"), "shuffle_tiles": 0}

WRONG_5 = {  # rot90 over dims (1, 2) of the batch, the gap left out of the step, a fixed start, unfold
    "rotate_batch": """
def rotate_batch(images):
    if images.shape[-1] != images.shape[-2]:
        raise ValueError("not square")
    rotated = torch.cat([torch.rot90(images, k, dims=(1, 2)) for k in range(4)])  # the dims of one image
    return rotated, torch.arange(4, device=images.device).repeat_interleave(images.shape[0])
""",
    "context_pairs": """
def context_pairs(images, patch_size, gap):
    N, C, H, W = images.shape
    P, S = patch_size, 3 * patch_size + 2 * gap
    if S > H or S > W:
        raise ValueError("grid too large")
    top, left = (H - S) // 2, (W - S) // 2
    patches = torch.stack([images[:, :, top + r * P:top + r * P + P, left + c * P:left + c * P + P]  # no gap
                           for r in range(3) for c in range(3)], dim=1)
    neighbors = patches[:, [0, 1, 2, 3, 5, 6, 7, 8]].flatten(0, 1)
    centers = patches[:, 4].repeat_interleave(8, dim=0)
    return centers, neighbors, torch.arange(8, device=images.device).repeat(N)
""",
    "hamming_permutations": """
def hamming_permutations(num_permutations, num_tiles=9, generator=None):
    if num_permutations > math.factorial(num_tiles):
        raise ValueError("too many")
    candidates = torch.tensor(list(itertools.permutations(range(num_tiles))))
    chosen = [0]  # always the identity first
    min_distance = (candidates != candidates[0]).sum(1)
    for _ in range(num_permutations - 1):
        best = int(min_distance.argmax())
        chosen.append(best)
        min_distance = torch.minimum(min_distance, (candidates != candidates[best]).sum(1))
    return candidates[chosen]
""",
    "tile_images": """
def tile_images(images, grid=3):
    N, C, H, W = images.shape
    h, w = H // grid, W // grid  # unfold drops what does not divide: no error
    tiles = images.unfold(2, h, h).unfold(3, w, w)[:, :, :grid, :grid]
    return tiles.permute(0, 2, 3, 1, 4, 5).reshape(N, grid * grid, C, h, w)
""",
}
EXPECTED_5 = {**FULL, "rotate_batch": _only("rotate_batch", "errors"), "context_pairs": _only("context_pairs", "errors"),
              "hamming_permutations": _without("hamming_permutations", "randomness"),
              "tile_images": _without("tile_images", "errors")}

WRONG_6 = {  # the grid at the top-left corner, the generator not used, transposed tiles
    "context_pairs": """
def context_pairs(images, patch_size, gap):
    N, C, H, W = images.shape
    P, S = patch_size, 3 * patch_size + 2 * gap
    if S > H or S > W:
        raise ValueError("grid too large")
    step = P + gap  # the grid not centred: it starts at (0, 0)
    patches = torch.stack([images[:, :, r * step:r * step + P, c * step:c * step + P]
                           for r in range(3) for c in range(3)], dim=1)
    neighbors = patches[:, [0, 1, 2, 3, 5, 6, 7, 8]].flatten(0, 1)
    centers = patches[:, 4].repeat_interleave(8, dim=0)
    return centers, neighbors, torch.arange(8, device=images.device).repeat(N)
""",
    "hamming_permutations": """
def hamming_permutations(num_permutations, num_tiles=9, generator=None):
    if num_permutations > math.factorial(num_tiles):
        raise ValueError("too many")
    candidates = torch.tensor(list(itertools.permutations(range(num_tiles))))
    chosen = [int(torch.randint(len(candidates), (1,)))]  # the generator is not used
    min_distance = (candidates != candidates[chosen[0]]).sum(1)
    for _ in range(num_permutations - 1):
        best = int(min_distance.argmax())
        chosen.append(best)
        min_distance = torch.minimum(min_distance, (candidates != candidates[best]).sum(1))
    return candidates[chosen]
""",
    "tile_images": """
def tile_images(images, grid=3):
    N, C, H, W = images.shape
    if H % grid or W % grid:
        raise ValueError("not divisible")
    h, w = H // grid, W // grid
    tiles = images.reshape(N, C, grid, h, grid, w).permute(0, 2, 4, 1, 5, 3)  # [.., w, h]: each tile transposed
    return tiles.reshape(N, grid * grid, C, w, h)
""",
}
EXPECTED_6 = {**FULL, "context_pairs": _only("context_pairs", "errors"),
              "hamming_permutations": _without("hamming_permutations", "randomness"),
              "tile_images": _only("tile_images", "errors")}

WRONG_7 = {  # the centre kept, int8 permutations
    "context_pairs": """
def context_pairs(images, patch_size, gap):
    N, C, H, W = images.shape
    P, S = patch_size, 3 * patch_size + 2 * gap
    if S > H or S > W:
        raise ValueError("grid too large")
    top, left = (H - S) // 2, (W - S) // 2
    patches = torch.stack([images[:, :, top + r * (P + gap):top + r * (P + gap) + P,
                                  left + c * (P + gap):left + c * (P + gap) + P]
                           for r in range(3) for c in range(3)], dim=1)  # all 9, the centre too
    neighbors = patches.flatten(0, 1)
    centers = patches[:, 4].repeat_interleave(9, dim=0)
    return centers, neighbors, torch.arange(9, device=images.device).repeat(N)
""",
    "hamming_permutations": """
def hamming_permutations(num_permutations, num_tiles=9, generator=None):
    if num_permutations > math.factorial(num_tiles):
        raise ValueError("too many")
    candidates = torch.tensor(list(itertools.permutations(range(num_tiles))), dtype=torch.int8)
    chosen = [int(torch.randint(len(candidates), (1,), generator=generator))]
    min_distance = (candidates != candidates[chosen[0]]).sum(1)
    for _ in range(num_permutations - 1):
        best = int(min_distance.argmax())
        chosen.append(best)
        min_distance = torch.minimum(min_distance, (candidates != candidates[best]).sum(1))
    return candidates[chosen]  # int8, not long
""",
}
EXPECTED_7 = {**FULL, "context_pairs": _only("context_pairs", "errors"),
              "hamming_permutations": _only("hamming_permutations", "errors", "randomness")}

WRONG_8 = {  # the check of the height only, the distance to the last permutation only
    "context_pairs": """
def context_pairs(images, patch_size, gap):
    N, C, H, W = images.shape
    P, S = patch_size, 3 * patch_size + 2 * gap
    if S > H:  # W is not checked
        raise ValueError("grid taller than the images")
    top, left = (H - S) // 2, (W - S) // 2
    patches = torch.stack([images[:, :, top + r * (P + gap):top + r * (P + gap) + P,
                                  left + c * (P + gap):left + c * (P + gap) + P]
                           for r in range(3) for c in range(3)], dim=1)
    neighbors = patches[:, [0, 1, 2, 3, 5, 6, 7, 8]].flatten(0, 1)
    centers = patches[:, 4].repeat_interleave(8, dim=0)
    return centers, neighbors, torch.arange(8, device=images.device).repeat(N)
""",
    "hamming_permutations": """
def hamming_permutations(num_permutations, num_tiles=9, generator=None):
    if num_permutations > math.factorial(num_tiles):
        raise ValueError("too many")
    candidates = torch.tensor(list(itertools.permutations(range(num_tiles))))
    chosen = [int(torch.randint(len(candidates), (1,), generator=generator))]
    for _ in range(num_permutations - 1):
        distance = (candidates != candidates[chosen[-1]]).sum(1)  # to the last one chosen only
        chosen.append(int(distance.argmax()))
    return candidates[chosen]
""",
}
EXPECTED_8 = {**FULL, "context_pairs": _without("context_pairs", "errors"),
              "hamming_permutations": _only("hamming_permutations", "errors", "randomness")}

WRONG_9 = {  # grid indices as labels
    "context_pairs": """
def context_pairs(images, patch_size, gap):
    N, C, H, W = images.shape
    P, S = patch_size, 3 * patch_size + 2 * gap
    if S > H or S > W:
        raise ValueError("grid too large")
    top, left = (H - S) // 2, (W - S) // 2
    positions = [(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)]
    patches = torch.stack([images[:, :, top + r * (P + gap):top + r * (P + gap) + P,
                                  left + c * (P + gap):left + c * (P + gap) + P] for r, c in positions], dim=1)
    centers = images[:, :, top + P + gap:top + 2 * P + gap, left + P + gap:left + 2 * P + gap]
    labels = torch.tensor([3 * r + c for r, c in positions], device=images.device).repeat(N)  # 0..8 without 4
    return centers.repeat_interleave(8, dim=0), patches.flatten(0, 1), labels
""",
}
EXPECTED_9 = {**FULL, "context_pairs": _only("context_pairs", "errors")}

WRONG_10 = {  # right values, but each step recomputes the distances of every candidate to the whole chosen set:
    # [T!, k, T] at step k, O(P^2 T! T) in all (at 9 tiles, 100 permutations: minutes; slower than a Python loop)
    "hamming_permutations": """
def hamming_permutations(num_permutations, num_tiles=9, generator=None):
    if num_permutations > math.factorial(num_tiles):
        raise ValueError("too many")
    candidates = torch.tensor(list(itertools.permutations(range(num_tiles))))
    chosen = [int(torch.randint(len(candidates), (1,), generator=generator))]
    for _ in range(num_permutations - 1):
        d = (candidates[:, None, :] != candidates[chosen][None]).sum(-1).min(dim=1).values
        chosen.append(int(d.argmax()))
    return candidates[chosen]
""",
}
EXPECTED_10 = {**FULL, "hamming_permutations": _without("hamming_permutations", "vectorized")}

# --------------------------------------------------------------------------- right versions, written another way

RIGHT_1 = {  # flips and transposes, unfold, NumPy, unfold, torch.gather
    "rotate_batch": """
def rotate_batch(images):
    N, C, H, W = images.shape
    if H != W:
        raise ValueError(f"rotate_batch needs square images, got {H}x{W}")
    r90 = images.transpose(2, 3).flip(2)
    r180 = images.flip(2).flip(3)
    r270 = images.transpose(2, 3).flip(3)
    rotated = torch.cat([images, r90, r180, r270], dim=0)
    labels = torch.cat([torch.full((N,), k, dtype=torch.long, device=images.device) for k in range(4)])
    return rotated, labels
""",
    "context_pairs": """
def context_pairs(images, patch_size, gap):
    N, C, H, W = images.shape
    P, S = patch_size, 3 * patch_size + 2 * gap
    if S > H or S > W:
        raise ValueError(f"a grid of {S} pixels does not fit {H}x{W} images")
    top, left = (H - S) // 2, (W - S) // 2
    crop = images[:, :, top:top + S, left:left + S]
    patches = crop.unfold(2, P, P + gap).unfold(3, P, P + gap)         # [N, C, 3, 3, P, P]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(N, 9, C, P, P)
    keep = torch.tensor([0, 1, 2, 3, 5, 6, 7, 8], device=images.device)
    neighbors = patches[:, keep].reshape(N * 8, C, P, P)
    centers = patches[:, 4].repeat_interleave(8, dim=0)
    labels = torch.arange(8, device=images.device).repeat(N)
    return centers, neighbors, labels
""",
    "hamming_permutations": """
def hamming_permutations(num_permutations, num_tiles=9, generator=None):
    import numpy as np
    if num_permutations > math.factorial(num_tiles):
        raise ValueError(f"only {math.factorial(num_tiles)} permutations of {num_tiles} tiles")
    candidates = np.array(list(itertools.permutations(range(num_tiles)))).reshape(-1, num_tiles)
    chosen = [int(torch.randint(len(candidates), (1,), generator=generator))]
    min_distance = (candidates != candidates[chosen[0]]).sum(axis=1)
    for _ in range(num_permutations - 1):
        best = int(np.argmax(min_distance))
        chosen.append(best)
        min_distance = np.minimum(min_distance, (candidates != candidates[best]).sum(axis=1))
    return torch.from_numpy(candidates[chosen]).long()
""",
    "tile_images": """
def tile_images(images, grid=3):
    N, C, H, W = images.shape
    if H % grid != 0 or W % grid != 0:
        raise ValueError(f"{H}x{W} is not divisible by grid={grid}")
    h, w = H // grid, W // grid
    tiles = images.unfold(2, h, h).unfold(3, w, w)                      # [N, C, grid, grid, h, w]
    return tiles.permute(0, 2, 3, 1, 4, 5).reshape(N, grid * grid, C, h, w)
""",
    "shuffle_tiles": """
def shuffle_tiles(tiles, permutations, perm_index):
    N, T = tiles.shape[:2]
    order = permutations[perm_index]                                   # [N, T]
    index = order.view(N, T, *([1] * (tiles.dim() - 2))).expand_as(tiles)
    return torch.gather(tiles, 1, index)
""",
}

RIGHT_2 = {  # a loop over the 4 turns, a loop over the 9 positions, a random start by randperm and random ties
    # (both from the generator), a loop over the tiles, index_select on the flattened tiles
    "rotate_batch": """
def rotate_batch(images):
    N, C, H, W = images.shape
    if H != W:
        raise ValueError("H must equal W")
    out, labels = [], []
    for k in range(4):
        out.append(torch.rot90(images, k=k, dims=[2, 3]))
        labels.append(torch.full((N,), k, dtype=torch.long, device=images.device))
    return torch.cat(out), torch.cat(labels)
""",
    "context_pairs": """
def context_pairs(images, patch_size, gap):
    N, C, H, W = images.shape
    P, step, S = patch_size, patch_size + gap, 3 * patch_size + 2 * gap
    if H < S or W < S:
        raise ValueError("the 3x3 grid is larger than the image")
    top, left = (H - S) // 2, (W - S) // 2

    def patch(r, c):
        return images[:, :, top + r * step:top + r * step + P, left + c * step:left + c * step + P]

    neighbors = torch.stack([patch(r, c) for r in range(3) for c in range(3) if not (r == 1 and c == 1)], dim=1)
    centers = patch(1, 1).unsqueeze(1).repeat(1, 8, 1, 1, 1)
    labels = torch.arange(8, device=images.device).expand(N, 8)
    return centers.reshape(-1, C, P, P), neighbors.reshape(-1, C, P, P), labels.reshape(-1)
""",
    "hamming_permutations": """
def hamming_permutations(num_permutations, num_tiles=9, generator=None):
    if num_permutations > math.factorial(num_tiles):
        raise ValueError("num_permutations > num_tiles!")
    candidates = torch.tensor(list(itertools.permutations(range(num_tiles))), dtype=torch.long)
    start = torch.randperm(num_tiles, generator=generator)                    # a random start
    chosen = [start]
    min_d = (candidates != start).sum(1)
    for _ in range(num_permutations - 1):
        ties = torch.nonzero(min_d == min_d.max()).flatten()
        pick = candidates[ties[torch.randint(len(ties), (1,), generator=generator)]][0]  # one of the farthest
        chosen.append(pick)
        min_d = torch.minimum(min_d, (candidates != pick).sum(1))
    return torch.stack(chosen)
""",
    "tile_images": """
def tile_images(images, grid=3):
    N, C, H, W = images.shape
    if H % grid:
        raise ValueError("H is not divisible by grid")
    if W % grid:
        raise ValueError("W is not divisible by grid")
    h, w = H // grid, W // grid
    tiles = [images[:, :, r * h:(r + 1) * h, c * w:(c + 1) * w] for r in range(grid) for c in range(grid)]
    return torch.stack(tiles, dim=1)
""",
    "shuffle_tiles": """
def shuffle_tiles(tiles, permutations, perm_index):
    N, T = tiles.shape[:2]
    order = permutations[perm_index] + T * torch.arange(N, device=tiles.device)[:, None]
    return tiles.flatten(0, 1).index_select(0, order.flatten()).view_as(tiles)
""",
}

RIGHT_3 = {  # stacked turns, advanced indexing with index tensors, the last of the ties, view/permute, a loop
    # over the T positions (not over the images)
    "rotate_batch": """
def rotate_batch(images):
    if images.size(-1) != images.size(-2):
        raise ValueError("rotate_batch: H != W")
    n = images.size(0)
    rotated = torch.stack([images.rot90(k, (-2, -1)) for k in range(4)]).flatten(0, 1)
    labels = torch.arange(4, dtype=torch.long, device=images.device).repeat_interleave(n)
    return rotated, labels
""",
    "context_pairs": """
def context_pairs(images, patch_size, gap):
    N, C, H, W = images.shape
    P, step, S = patch_size, patch_size + gap, 3 * patch_size + 2 * gap
    if S > H:
        raise ValueError(f"S = {S} > H = {H}")
    if S > W:
        raise ValueError(f"S = {S} > W = {W}")
    top, left = (H - S) // 2, (W - S) // 2
    grid = [(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)]
    dev = images.device
    r0 = top + step * torch.tensor([r for r, _ in grid], device=dev)
    c0 = left + step * torch.tensor([c for _, c in grid], device=dev)
    ar = torch.arange(P, device=dev)
    rows = (r0[:, None] + ar)[:, :, None]                                # [8, P, 1]
    cols = (c0[:, None] + ar)[:, None, :]                                # [8, 1, P]
    neighbors = images[:, :, rows, cols].permute(0, 2, 1, 3, 4).reshape(N * 8, C, P, P)
    centre = images[:, :, top + step:top + step + P, left + step:left + step + P]
    centers = centre[:, None].expand(N, 8, C, P, P).reshape(N * 8, C, P, P)
    return centers, neighbors, torch.arange(8, device=dev).repeat(N)
""",
    "hamming_permutations": """
def hamming_permutations(num_permutations, num_tiles=9, generator=None):
    n_all = math.factorial(num_tiles)
    if num_permutations > n_all:
        raise ValueError(f"asked for {num_permutations} of only {n_all} permutations")
    c = torch.tensor(list(itertools.permutations(range(num_tiles))))
    first = int(torch.randint(n_all, (1,), generator=generator))
    picked = [first]
    md = num_tiles - (c == c[first]).sum(1)
    for _ in range(num_permutations - 1):
        b = n_all - 1 - int(md.flip(0).argmax())  # the last of the farthest
        picked.append(b)
        md = torch.min(md, num_tiles - (c == c[b]).sum(1))
    return c[picked]
""",
    "tile_images": """
def tile_images(images, grid=3):
    N, C, H, W = images.shape
    if H % grid or W % grid:
        raise ValueError("the image size must be a multiple of grid")
    h, w = H // grid, W // grid
    x = images.contiguous().view(N, C, grid, h, grid, w).permute(0, 2, 4, 1, 3, 5).contiguous()
    return x.view(N, grid * grid, C, h, w)
""",
    "shuffle_tiles": """
def shuffle_tiles(tiles, permutations, perm_index):
    order = permutations[perm_index]
    rows = torch.arange(tiles.shape[0], device=tiles.device)
    return torch.stack([tiles[rows, order[:, j]] for j in range(tiles.shape[1])], dim=1)
""",
}


# --------------------------------------------------------------------------- grading them

WRONG = {"wrong_1": (WRONG_1, EXPECTED_1), "wrong_2": (WRONG_2, EXPECTED_2), "wrong_3": (WRONG_3, EXPECTED_3),
         "wrong_4": (WRONG_4, EXPECTED_4), "wrong_5": (WRONG_5, EXPECTED_5), "wrong_6": (WRONG_6, EXPECTED_6),
         "wrong_7": (WRONG_7, EXPECTED_7), "wrong_8": (WRONG_8, EXPECTED_8), "wrong_9": (WRONG_9, EXPECTED_9),
         "wrong_10": (WRONG_10, EXPECTED_10)}
RIGHT = {"right_1": RIGHT_1, "right_2": RIGHT_2, "right_3": RIGHT_3}


_scores, _checks, _feedback = readers(NB)


graded = graded_fixture(NB, WRONG, RIGHT)
(test_reference_scores_full_marks, test_starter_scores_zero_and_says_not_implemented,
 test_wrong_versions_lose_exactly_their_functions_points) = kit_tests(NB, FULL, WRONG)


def test_a_bug_that_shows_in_one_check_costs_only_that_check(graded):
    cost = {(case, function): {c.check for (f, _), c in _checks(graded[case]).items() if f == function and not c.passed}
            for case, function in (("wrong_3", "rotate_batch"), ("wrong_3", "context_pairs"),
                                   ("wrong_3", "hamming_permutations"), ("wrong_3", "tile_images"),
                                   ("wrong_3", "shuffle_tiles"), ("wrong_4", "context_pairs"),
                                   ("wrong_4", "hamming_permutations"), ("wrong_5", "hamming_permutations"),
                                   ("wrong_5", "tile_images"), ("wrong_6", "hamming_permutations"),
                                   ("wrong_8", "context_pairs"), ("wrong_10", "hamming_permutations"))}
    assert cost == {
        ("wrong_3", "rotate_batch"): {"errors"},                # a RuntimeError, not a ValueError
        ("wrong_3", "context_pairs"): {"vectorized"},           # a loop over the images
        ("wrong_3", "hamming_permutations"): {"vectorized"},    # a loop over the candidates
        ("wrong_3", "tile_images"): {"errors"},                 # W not checked
        ("wrong_3", "shuffle_tiles"): {"vectorized"},           # a loop over the images
        ("wrong_4", "context_pairs"): {"errors"},               # no check that the grid fits
        ("wrong_4", "hamming_permutations"): {"errors"},        # no check of num_permutations <= T!
        ("wrong_5", "hamming_permutations"): {"randomness"},    # the identity first
        ("wrong_5", "tile_images"): {"errors"},                 # unfold drops the remainder
        ("wrong_6", "hamming_permutations"): {"randomness"},    # the generator not used
        ("wrong_8", "context_pairs"): {"errors"},               # the height checked, not the width
        ("wrong_10", "hamming_permutations"): {"vectorized"},   # the distances recomputed at every step
    }


def test_feedback_names_the_likely_mistake(graded):
    w1, w2, w3, w4, w5, w6, w7, w8, w9 = (graded[f"wrong_{i}"] for i in range(1, 10))
    assert "you turned clockwise" in _feedback(w1, "rotate_batch")
    assert "you swapped rows and columns" in _feedback(w1, "context_pairs")
    assert "Algorithm 1 of the paper" in _feedback(w1, "hamming_permutations")
    assert "you numbered them column by column" in _feedback(w1, "tile_images")
    assert "the inverse permutation" in _feedback(w1, "shuffle_tiles")

    assert "the four rotations of each image next to each other" in _feedback(w2, "rotate_batch")
    assert "ordered them position by position" in _feedback(w2, "context_pairs")
    assert "chosen another way (at random" in _feedback(w2, "hamming_permutations")
    assert "a reshape alone does not cut tiles" in _feedback(w2, "tile_images")
    assert "one permutation for the whole batch" in _feedback(w2, "shuffle_tiles")

    assert "raised RuntimeError" in _feedback(w3, "rotate_batch") and "expected a ValueError" in \
        _feedback(w3, "rotate_batch")
    for function in ("context_pairs", "shuffle_tiles"):
        assert "too slow" in _feedback(w3, function) and "no Python loop over the images" in _feedback(w3, function)
    hamming = _feedback(w3, "hamming_permutations")
    assert ("too slow" in hamming or "did not finish in time" in hamming) and "candidates" in hamming
    assert "W = 8 cannot be cut into 3 equal parts" in _feedback(w3, "tile_images")

    assert "expected torch.int64 (torch.long)" in _feedback(w4, "rotate_batch")
    assert "expected a ValueError (the grid spans" in _feedback(w4, "context_pairs")
    assert "num_tiles=3) did not raise; expected a ValueError (3 tiles have only 3! = 6" in \
        _feedback(w4, "hamming_permutations")
    assert "not a fixed 3 x 3" in _feedback(w4, "tile_images")
    assert "not permutations[n]" in _feedback(w4, "shuffle_tiles")

    assert "dims=(1, 2) is for one image" in _feedback(w5, "rotate_batch")
    assert "you stepped by P, not P + gap" in _feedback(w5, "context_pairs")
    assert "only 1 different sets" in _feedback(w5, "hamming_permutations")
    assert "did not raise; expected a ValueError" in _feedback(w5, "tile_images")

    assert "you started it at (0, 0)" in _feedback(w6, "context_pairs")
    assert "generators seeded alike gave different permutations" in _feedback(w6, "hamming_permutations")
    assert "each tile is transposed" in _feedback(w6, "tile_images")

    assert "skip the centre position (1, 1)" in _feedback(w7, "context_pairs")
    assert "returned dtype torch.int8; expected torch.int64" in _feedback(w7, "hamming_permutations")

    assert "expected a ValueError (the grid spans S = 3*3 + 2*1 = 11 pixels, more than W of the 12x10 images" in \
        _feedback(w8, "context_pairs")
    assert "are the same permutation" in _feedback(w8, "hamming_permutations")
    assert "not only from the last one" in _feedback(w8, "hamming_permutations")

    assert "not its index 3r + c in the 3x3 grid" in _feedback(w9, "context_pairs")
    assert "too slow" in _feedback(graded["wrong_10"], "hamming_permutations")


test_correct_versions_written_another_way_keep_full_marks, test_no_feedback_shows_the_grading_machine = \
    right_tests(NB, FULL, RIGHT)


def test_the_speed_checks_report_their_figures(graded):
    """The staff's figures of the reference's speed checks, each under its limit."""
    checks = _checks(graded["reference"])
    for function in ("context_pairs", "hamming_permutations", "shuffle_tiles"):
        assert "limit" in checks[(function, "vectorized")].staff_note, (function, checks[(function, "vectorized")])
