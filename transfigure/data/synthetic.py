"""Synthetic Cityscapes-like labels <-> photo task.

Makes CycleGAN/pix2pix translation measurable on a CPU in minutes without any
pretrained network: photo->labels outputs are scored against the exact label
maps with `transfigure.evaluate.segmentation` (nearest palette color).

Each pair is drawn from its own generator seeded by (seed, split, index), so
the files are byte-identical across runs and the test set does not change
when n_train does.

Label colors are saturated and deliberately unlike the photos' class colors,
arranged so that snapping a photo's typical class color to the nearest label
color names a *different* class: an identity mapping (what "cycle loss
alone" tends to learn) must not score well (see DESIGN.md, feasibility notes).
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from ..errors import UsageError

CLASSES = ("sky", "building", "tree", "road", "car")
SKY, BUILDING, TREE, ROAD, CAR = range(len(CLASSES))
# Nearest label color to the photo's typical color: sky-blue -> cyan (building),
# grey buildings and dark road -> purple (tree), green trees -> orange/yellow.
PALETTE = np.array(
    [[255, 128, 0],    # sky: orange
     [0, 220, 220],    # building: cyan
     [160, 0, 200],    # tree: purple
     [255, 0, 128],    # road: magenta
     [220, 220, 0]],   # car: yellow (car photo hues avoid yellow, see _car_color)
    dtype=np.uint8)

TASK = "labels2photo"
VERSION = 1          # bump when the renderer changes: old folders are then refused
SPLITS = {"train": 0, "test": 1}
PALETTE_FILE = "palette.json"


def _smooth_noise(rng, size, cells):
    """Bilinearly upsampled Gaussian grid: blotchy low-frequency texture in ~[-1, 1]."""
    g = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    t = (np.arange(size, dtype=np.float32) + 0.5) * cells / size
    i = np.minimum(t.astype(int), cells - 1)
    f = (t - i)[None, :]
    fy = f.T
    top = g[i][:, i] * (1 - f) + g[i][:, i + 1] * f
    bot = g[i + 1][:, i] * (1 - f) + g[i + 1][:, i + 1] * f
    return top * (1 - fy) + bot * fy


def _car_color(rng):
    """Saturated random car color; hues near the yellow car label are skipped."""
    h = (rng.uniform(90, 390) % 360) / 60.0            # hue in sextants, 30-90 deg excluded
    s, v = rng.uniform(0.6, 1.0), rng.uniform(90, 230)
    x = 1 - abs(h % 2 - 1)
    rgb = [(1, x, 0), (x, 1, 0), (0, 1, x), (0, x, 1), (x, 0, 1), (1, 0, x)][int(h) % 6]
    return v * (1 - s + s * np.array(rgb, np.float32))


def make_pair(size=64, seed=0, split="train", index=0):
    """Render one pair: (label RGB uint8 HxWx3, photo RGB uint8 HxWx3, class map uint8 HxW)."""
    cls, _, photo = render_scene(size, seed, split, index)
    return PALETTE[cls], photo, cls


def render_scene(size=64, seed=0, split="train", index=0):
    """One street scene: (class map uint8 HxW, instance ids int32 HxW, photo uint8 HxWx3).
    Instance ids are unique within a class (sky and the first shape both use 0)."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    S = size
    y, x = (np.mgrid[0:S, 0:S].astype(np.float32) + 0.5) / S   # pixel centers in [0, 1]
    grain = rng.standard_normal((S, S)).astype(np.float32)   # shared fine texture
    # Shapes are painted back to front into a class map and an instance map; the
    # photo is then rendered per class in one vectorized pass over the visible
    # pixels, looking instance parameters up by id (an order of magnitude faster
    # than texturing every shape over the whole image).
    cls = np.full((S, S), SKY, np.uint8)
    inst = np.zeros((S, S), np.int32)
    params = []                                              # per instance: a tuple of floats

    def paint(mask, c, *p):
        cls[mask], inst[mask] = c, len(params)
        params.append(p)

    # Geometry: horizon with a slight tilt, vanishing point, road trapezoid whose
    # half-width at the bottom w decides between a street canyon and an open band.
    h0, tilt = rng.uniform(0.38, 0.55), rng.uniform(-0.06, 0.06)
    horizon = h0 + tilt * (x - 0.5)
    vx, w = rng.uniform(0.3, 0.7), rng.uniform(0.35, 1.2)
    edge = h0 + np.abs(x - vx) / w * (1 - h0)              # road edge line, y at column x
    paint(y >= horizon, ROAD)

    # Buildings: a row of rectangles, lower near the vanishing point (farther
    # away), standing on the road edge so that the road reads as a trapezoid.
    x0 = rng.uniform(-0.1, 0.05)
    while x0 < 1:
        bw = rng.uniform(0.08, 0.3)
        if rng.random() < 0.8:
            height = rng.uniform(0.05, 0.15) + rng.uniform(0.1, 0.5) * abs(x0 + bw / 2 - vx)
            top = max(h0 - height, 0.1)
            grey = rng.uniform(85, 175)
            warm = rng.uniform(0, 35) if rng.random() < 0.5 else 0.0  # brick/brown or concrete
            paint((x >= x0) & (x < x0 + bw) & (y >= top) & (y < np.maximum(edge, horizon + 0.02)),
                  BUILDING, grey + warm, grey + warm * 0.4, grey - warm * 0.5, x0, top,
                  rng.integers(3, 6, endpoint=True), rng.integers(3, 6, endpoint=True))
        x0 += bw

    # Trees: ragged crowns near the horizon on a trunk, beside the road, in front of buildings.
    lobes = 0.15 * _smooth_noise(rng, S, 8)
    trunk = np.zeros((S, S), bool)
    for _ in range(rng.integers(0, 5, endpoint=True)):
        cx = vx + rng.choice([-1, 1]) * rng.uniform(0.1, 0.6)
        rx = rng.uniform(0.05, 0.14)
        ry = rx * rng.uniform(0.9, 1.5)
        cy = max(h0 + tilt * (cx - 0.5) - rng.uniform(0.0, 0.12), 0.1 + ry)
        crown = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1 + lobes
        stem = (np.abs(x - cx) < max(rx * 0.15, 0.6 / S)) & (y >= cy) & (y < cy + ry + rng.uniform(0.02, 0.07))
        trunk = (trunk | stem) & ~crown
        paint(crown | stem, TREE, rng.uniform(25, 80), rng.uniform(85, 145), rng.uniform(15, 60), cy, ry)

    # Cars: small rectangles on the road, sized by depth; they never reach the
    # bottom rows so every label map keeps some road.
    for _ in range(rng.integers(0, 4, endpoint=True)):
        yb = h0 + rng.uniform(0.1, 0.9) * (1 - h0)
        d = (yb - h0) / (1 - h0)
        cw = (0.28 * d + 0.04) * rng.uniform(0.8, 1.2)
        ch = cw * rng.uniform(0.45, 0.65)
        xc = vx + rng.uniform(-0.7, 0.7) * w * d
        paint((np.abs(x - xc) < cw / 2) & (y < yb) & (y >= yb - ch), CAR, *_car_color(rng), xc, cw, yb - ch, ch)

    P = np.zeros((len(params), 8), np.float32)
    for i, p in enumerate(params):
        P[i, :len(p)] = p
    photo = np.empty((S, S, 3), np.float32)

    # Sky: vertical gradient from deep blue to a pale horizon, optional clouds.
    top = np.array([rng.uniform(60, 110), rng.uniform(110, 160), rng.uniform(200, 245)], np.float32)
    low = np.array([rng.uniform(150, 200), rng.uniform(185, 220), rng.uniform(225, 250)], np.float32)
    t = np.clip(y / h0, 0, 1)[..., None]
    photo[:] = top * (1 - t) + low * t
    if rng.random() < 0.6:
        cloud = np.clip(_smooth_noise(rng, S, 4) - rng.uniform(0.2, 0.8), 0, 1)[..., None]
        photo[:] = photo * (1 - cloud) + 235 * cloud

    # Road: dark grey, blotchy, with dashed lane marks in perspective.
    m = cls == ROAD
    g = rng.uniform(55, 95) + 3 * grain[m]
    photo[m] = np.stack([g, g + 1, g + 4], -1) * (1 + 0.12 * _smooth_noise(rng, S, 6)[m])[:, None]
    depth = np.maximum(y - horizon, 1e-3)                   # distance below the horizon
    lane_x = vx + rng.uniform(-0.12, 0.12) * depth / (1 - h0)  # line from the vanishing point
    dash = np.mod(rng.uniform(0, 1) + 0.25 / depth, 1) < 0.5  # dashes shrink toward the horizon
    photo[m & dash & (depth > 0.06) & (np.abs(x - lane_x) < 0.004 + 0.02 * depth)] = \
        rng.choice([[225, 225, 215], [230, 200, 60]])

    # Buildings: grey/brown walls with a grid of dark or lit windows (pixel units, visible at 32 px).
    m = cls == BUILDING
    q = P[inst[m]]
    wall = q[:, :3] * (1 + 0.05 * grain[m])[:, None]
    u, v, px, py = (x[m] - q[:, 3]) * S, (y[m] - q[:, 4]) * S, q[:, 5], q[:, 6]
    win = (np.mod(u, px) >= 1) & (np.mod(u, px) < px - 0.5) & (np.mod(v, py) >= 1) & (np.mod(v, py) < py - 1)
    lit = (rng.random((16, 16)) < 0.25)[(v // py).astype(int) % 16, (u // px).astype(int) % 16]
    wall[win] = np.where(lit[win, None], [210.0, 190, 120], [45.0, 55, 75])
    photo[m] = wall

    # Trees: leafy noise, darker toward the bottom of the crown; brown trunks.
    m = cls == TREE
    q = P[inst[m]]
    shade = 1 - 0.35 * np.clip((y[m] - q[:, 3] + q[:, 4]) / (2 * q[:, 4]), 0, 1)
    photo[m] = q[:, :3] * (shade * (1 + 0.3 * _smooth_noise(rng, S, 12)[m] + 0.12 * grain[m]))[:, None]
    photo[trunk & m] = [90, 65, 40]

    # Cars: saturated body, dark windows on top, wheels at the bottom corners.
    m = cls == CAR
    q = P[inst[m]]
    body = q[:, :3] * (1 + 0.06 * grain[m])[:, None]
    rel = (y[m] - q[:, 5]) / q[:, 6]                         # 0 at the roof, 1 at the wheels
    body[rel < 0.35] = [70, 90, 110]
    body[(rel > 0.8) & (np.abs(x[m] - q[:, 3]) > q[:, 4] * 0.2)] = [25, 25, 25]
    photo[m] = body

    # Per-image lighting: brightness, color tint, directional shading, sensor noise.
    light = rng.uniform(0.75, 1.15) * rng.uniform(0.92, 1.08, 3)
    ramp = 1 + rng.uniform(-0.2, 0.2) * (x - 0.5) + rng.uniform(-0.15, 0.15) * (y - 0.5)
    photo = photo * light * ramp[..., None] + rng.uniform(2, 6) * rng.standard_normal((S, S, 3))
    photo = np.clip(np.rint(photo), 0, 255).astype(np.uint8)
    return cls, inst, photo


def _params(task, size, n_train, n_test, seed):
    return {"task": task, "version": VERSION, "size": size, "seed": seed,
            "n_train": n_train, "n_test": n_test}


def _expected(n_train, n_test, aligned=True):
    """{folder: [file names]}: the unaligned layout, and the aligned one when asked."""
    names = {s: [f"{i:05d}.png" for i in range(n)] for s, n in (("train", n_train), ("test", n_test))}
    return {f"{s}{ab}": names[s] for s in names for ab in ("A", "B") + (("",) if aligned else ())}


def _write_dataset(out_dir, task, size, n_train, n_test, seed, meta, write_pair, aligned, progress) -> dict:
    """Shared by the synthetic tasks: refuse foreign folders, reuse a complete
    dataset made with the same parameters, write palette.json first (so an
    interrupted run is recognised and redone), then every pair in parallel.
    `write_pair(out, params, split, index)` writes one pair's files."""
    if size < 8 or n_train < 0 or n_test < 0:
        raise UsageError(f"need size >= 8 and counts >= 0, got size={size}, n_train={n_train}, n_test={n_test}")
    out = Path(out_dir)
    params = _params(task, int(size), int(n_train), int(n_test), int(seed))
    expected = _expected(params["n_train"], params["n_test"], aligned)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        hint = "choose another --out or delete that folder"
        try:
            old = json.loads((out / PALETTE_FILE).read_text())
        except (OSError, ValueError):
            raise FileExistsError(f"{out} is not empty and holds no synthetic dataset; {hint}") from None
        old_params = {k: old.get(k) for k in params} if isinstance(old, dict) else {}
        if old_params != params:
            diff = ", ".join(f"{k}={old_params.get(k)!r} (asked {v!r})"
                             for k, v in params.items() if old_params.get(k) != v)
            raise FileExistsError(f"{out} holds a synthetic dataset with other parameters ({diff}); {hint}")
        if all(set(files) <= set(os.listdir(out / d)) if (out / d).is_dir() else False
               for d, files in expected.items()):
            return _summary(out, params, expected, reused=True)

    for d in expected:
        (out / d).mkdir(parents=True, exist_ok=True)
    (out / PALETTE_FILE).write_text(json.dumps({**meta, **params}, indent=2) + "\n")

    jobs = [(s, i) for s, n in (("train", params["n_train"]), ("test", params["n_test"])) for i in range(n)]
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(jobs), desc=f"synthetic {task}", unit="pair")
        except ImportError:
            pass
    # Threads overlap PNG encoding and file creation (both release the GIL); every
    # pair has its own generator and files, so the output does not depend on order.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for _ in pool.map(lambda job: write_pair(out, params, *job), jobs):
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return _summary(out, params, expected, reused=False)


def make_labels2photo(out_dir, size=64, n_train=1000, n_test=100, seed=0, progress=True) -> dict:
    """Write the labels<->photo dataset into out_dir and return a summary.

    Layouts: unaligned trainA/ trainB/ testA/ testB/ (A = label maps, B = photos,
    one file name per pair) and aligned train/ test/ (A|B side by side, width
    2*size), plus palette.json. PNG only: label maps must stay flat colors.

    An out_dir that is non-empty and not a synthetic dataset made with the same
    parameters is refused (FileExistsError); nothing is ever deleted. With the
    same parameters an existing complete dataset is reused as is (summary
    "reused": True); an incomplete one (interrupted run) is written again.
    """
    def write_pair(out, params, split, i):
        labels, photo, _ = make_pair(params["size"], params["seed"], split, i)
        name = f"{i:05d}.png"
        Image.fromarray(labels).save(out / f"{split}A" / name)
        Image.fromarray(photo).save(out / f"{split}B" / name)
        Image.fromarray(np.concatenate([labels, photo], axis=1)).save(out / split / name)

    meta = {"classes": [{"name": n, "color": c.tolist()} for n, c in zip(CLASSES, PALETTE)],
            "A": "labels", "B": "photos"}
    return _write_dataset(out_dir, TASK, size, n_train, n_test, seed, meta, write_pair, True, progress)


OUTLINE = np.array([28, 24, 32], np.float32)


def cartoon_of_scene(cls: np.ndarray, inst: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """The cartoon a scene's photo should become: every object in one flat,
    brighter and more saturated color (the mean of its photo pixels), with dark
    outlines where objects meet. No texture, shading or noise."""
    key = cls.astype(np.int64) * 100_000 + inst
    ids, index = np.unique(key, return_inverse=True)
    index = index.reshape(key.shape)
    counts = np.bincount(index.ravel(), minlength=len(ids))[:, None]
    means = np.stack([np.bincount(index.ravel(), photo[..., c].ravel().astype(np.float64), len(ids))
                      for c in range(3)], 1) / counts
    grey = means.mean(1, keepdims=True)
    flat = np.clip((grey + 1.5 * (means - grey)) * 1.1 + 8, 0, 255)  # cartoon palette: saturated, bright
    cartoon = flat[index]
    boundary = np.zeros(key.shape, bool)
    boundary[:, 1:] |= key[:, 1:] != key[:, :-1]
    boundary[1:, :] |= key[1:, :] != key[:-1, :]
    cartoon[boundary] = OUTLINE
    return np.rint(cartoon).astype(np.uint8)


def make_photo2cartoon(out_dir, size=64, n_train=1000, n_test=100, seed=0, progress=True) -> dict:
    """Write the photo -> cartoon task: trainA/ photos and trainB/ cartoons of
    OTHER scenes (unpaired, as real cartoon data is), testA/ photos and testB/
    their ground-truth cartoons (same file name) to measure outputs against.
    Same refusal/reuse rules as make_labels2photo."""
    def write_pair(out, params, split, i):
        name = f"{i:05d}.png"
        cls, inst, photo = render_scene(params["size"], params["seed"], split, i)
        Image.fromarray(photo).save(out / f"{split}A" / name)
        if split == "train":  # a different scene, so no training photo has its cartoon
            cls, inst, photo = render_scene(params["size"], params["seed"], split, CARTOON_SCENE_OFFSET + i)
        Image.fromarray(cartoon_of_scene(cls, inst, photo)).save(out / f"{split}B" / name)

    return _write_dataset(out_dir, "photo2cartoon", size, n_train, n_test, seed,
                          {"A": "photos", "B": "cartoons"}, write_pair, False, progress)


CARTOON_SCENE_OFFSET = 10_000_000


def scene_tensors(size: int, seed: int, first_index: int, count: int):
    """Training scenes `first_index` ... + count - 1 as tensors: photos and their cartoons
    [N, 3, S, S] in [-1, 1], class maps [N, S, S] (for the small networks that learn
    from rendered scenes)."""
    import torch

    photos, cartoons, classes = [], [], []
    for i in range(count):
        cls, inst, photo = render_scene(size, seed, "train", first_index + i)
        photos.append(photo)
        cartoons.append(cartoon_of_scene(cls, inst, photo))
        classes.append(cls)

    def tensor(images):
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return tensor(photos), tensor(cartoons), torch.from_numpy(np.stack(classes)).long()


def _summary(out, params, expected, reused):
    return {**params, "out_dir": str(out), "classes": list(CLASSES), "reused": reused,
            "palette": str(out / PALETTE_FILE), "paths": {d: str(out / d) for d in expected}}


def load_palette(path_or_dataset_dir) -> tuple[list[str], np.ndarray]:
    """(class names, colors uint8 [C, 3]) from a palette.json or a folder holding one."""
    p = Path(path_or_dataset_dir)
    if p.is_dir():
        p = p / PALETTE_FILE
    if not p.is_file():
        raise FileNotFoundError(f"no palette file at {p} (expected a dataset folder with {PALETTE_FILE})")
    classes = json.loads(p.read_text()).get("classes")
    if not classes:
        raise UsageError(f"{p} lists no classes")
    names = [c["name"] for c in classes]
    colors = np.array([c["color"] for c in classes], dtype=np.uint8).reshape(-1, 3)
    return names, colors
