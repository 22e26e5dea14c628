"""`transfigure benchmark cartoon`: CartoonGAN, the improved CartoonGAN and
CycleGAN (also with CartoonGAN's initialization phase, and with edge-smoothed
cartoons as extra fakes) on the synthetic photo -> cartoon task, as in the
study that proposed the improved variant, in minutes on a CPU.

Every method trains on the same unpaired data (photos; cartoons of other
scenes) with the same image size, batch size, generator width and depth and
iteration count; each keeps its own objective, normalization and activation.
Outputs for held-out test photos are compared with the ground-truth cartoons
of the same scenes (edge F1 and CIE76 color error), and their feature
statistics with the training cartoons (style) and photos (content kept) by
FID and KID computed with a small network trained on synthetic scenes
(`evaluate.synthetic_features`): those are not Inception FIDs and are
labelled so.

Content networks (VGG19 conv4_4 for CartoonGAN and CycleGAN's init phase,
ResNet-101 layer2 for the improved variant) use ImageNet weights when
torchvision can load them; offline without them (`--content_weights auto`)
every method uses a small network the benchmark trains to label synthetic
scenes (`nets.scene_content`), and the table says so. Random ImageNet
architectures (`--content_weights random`) hold no content: CartoonGAN
collapsed with them.

Folder layout under --out:
  benchmark.json                 settings, the iteration count fixed by the first run, timings
  data/                          the synthetic dataset (trainB_smooth/: edge-smoothed cartoons)
  feature_net.pt                 the evaluation feature network
  content_net.pt                 the content network trained on synthetic scenes (offline)
  checkpoints/<method>_seed<S>/  one training run each (resumable, reused when finished)
  results/seed<S>/<method>/      translated test photos, scores.json
  grid.png                       the same test photos through every method
  table.md, table.csv, index.html
"""
from __future__ import annotations

import csv
import html
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from ..data.edges import smooth_edges_folder
from ..data.images import image_to_tensor, list_images, load_image
from ..data.synthetic import make_photo2cartoon
from ..devices import resolve_device
from ..evaluate.cartoon import score_cartoon_folders
from ..evaluate.fid import FolderFeatures, distances
from ..evaluate.synthetic_features import VERSION as FEATURE_VERSION, feature_network, train_feature_net
from ..nets import run_padded, scene_content
from ..nets.features import RANDOM_WEIGHTS, FeatureWeightsError, build_feature_extractor
from ..nets.spec import GeneratorSpec
from ..runner import RunOptions
from ..translate import LoadedGenerator, load_generator, translate_files
from ..visuals import save_visuals_grid
from .runs import (BenchmarkResult, cached_scores, close_invocation, format_duration, log, mean_spread, open_folder,
                   run_options, seconds_per_iteration, settle_iterations, train_run)
from ..errors import UsageError

DATA_SEED = 0
MIN_ITERATIONS = 300
DEFAULT_ITERATIONS = 1200        # iterations per run unless --iterations or --budget: the same table on every machine
GRID_ROWS = 6
BLOCKS = 4                     # residual blocks of every generator (the papers use 8 and 9 at 256 px)

# Shared by every method: the same data, sizes and optimiser.
SHARED = {"ngf": 16, "ndf": 16, "batch_size": 4, "dataset_mode": "unaligned", "no_dropout": True,
          "init_type": "normal", "init_gain": 0.02, "lr": 2e-4, "beta1": 0.5, "beta2": 0.999,
          "preprocess": "resize_and_crop", "num_threads": 0, "lr_policy": "linear", "display_freq": 0}
# CartoonGAN as published (preset cartoongan): batch norm, ReLU, vanilla GAN with the
# edge-promoting discriminator, L1 on VGG19 conv4_4 x 10; one init epoch here (of ~10).
CARTOONGAN = {"model": "cartoongan", "netG": f"cartoongan_{BLOCKS}blocks", "netD": "cartoongan", "norm": "batch",
              "activation": "relu", "gan_mode": "vanilla", "content_net": "vgg19:conv4_4", "lambda_content": 10.0,
              "init_epochs": 1}
IMPROVED = {**CARTOONGAN, "norm": "instance", "activation": "leaky_relu", "activation_slope": 0.01, "gan_mode": "lsgan",
            "content_net": "resnet101:layer2"}
# CycleGAN as published (its ResNet generator, PatchGAN, LSGAN, pool 50, cycle 10, identity 0.5).
CYCLEGAN = {"model": "cycle_gan", "netG": f"resnet_{BLOCKS}blocks", "netD": "basic", "norm": "instance",
            "gan_mode": "lsgan", "pool_size": 50, "lambda_A": 10.0, "lambda_B": 10.0, "lambda_identity": 0.5,
            "content_net": "vgg19:conv4_4", "init_epochs": 0, "edge_smoothing": False}

# The study's Inception FIDs against animation frames / against photos (reference only: other data, other scale).
STUDY_FID = {"cyclegan": (108.69, 76.13), "cartoongan": (100.30, 80.96), "improved": (95.50, 81.91)}


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    options: dict


def methods() -> list[Method]:
    return [
        Method("cartoongan", "CartoonGAN", CARTOONGAN),
        Method("improved", "improved CartoonGAN", IMPROVED),
        Method("cyclegan", "CycleGAN", CYCLEGAN),
        Method("cyclegan_init", "CycleGAN + init phase", {**CYCLEGAN, "init_epochs": 1}),
        Method("cyclegan_edges", "CycleGAN + edge smoothing", {**CYCLEGAN, "edge_smoothing": True}),
    ]


METRICS = {  # key: (column title, better)
    "edge_f1": ("edge F1 vs ground truth", "higher"),
    "color_error": ("color error ΔE vs ground truth", "lower"),
    "fid_cartoons": ("FID-syn vs cartoons (style)", "lower"),
    "fid_photos": ("FID-syn vs photos (content)", "lower"),
    "kid_cartoons": ("KID-syn vs cartoons", "lower"),
}


# --------------------------------------------------------------------------- content networks

SCENE_CONTENT_NET = f"{scene_content.MODEL_NAME}:features"
CONTENT_MODES = ("auto", "imagenet", "synthetic", "random")


def resolve_content_nets(mode: str, scene_net_path: Path) -> dict[str, list[str]]:
    """{content net spec of a method: [content net spec used, its weights option value]}.
    mode: 'imagenet' (fail if missing), 'synthetic' (the scene-trained network for every
    method), 'random' (fixed random ImageNet architectures: the setting that collapsed),
    or 'auto' (ImageNet when loadable, else the scene-trained network)."""
    if mode not in CONTENT_MODES:
        raise UsageError(f"--content_weights {mode!r}: choose {', '.join(CONTENT_MODES)}")
    chosen = {}
    for spec in sorted({m.options["content_net"] for m in methods()}):
        if mode in ("random", "synthetic"):
            chosen[spec] = [spec, RANDOM_WEIGHTS] if mode == "random" else [SCENE_CONTENT_NET, str(scene_net_path)]
            continue
        try:
            build_feature_extractor(spec, None, "--content_weights")
            chosen[spec] = [spec, ""]
        except FeatureWeightsError as e:
            if mode == "imagenet":
                raise
            log(f"  {spec}: ImageNet weights unavailable ({str(e).split('. Either')[0]}); using the content network "
                "trained on synthetic scenes")
            chosen[spec] = [SCENE_CONTENT_NET, str(scene_net_path)]
    return chosen


def _with_content_net(options: dict, nets: dict[str, list[str]]) -> dict:
    spec, weights = nets[options["content_net"]]
    return {**options, "content_net": spec, "content_weights": weights}


def _content_text(nets: dict[str, list[str]]) -> str:
    def used(spec, weights):
        if spec == SCENE_CONTENT_NET:
            return "a small network trained here to label synthetic scenes (offline stand-in, not ImageNet)"
        return "fixed random weights (ImageNet weights unused)" if weights == RANDOM_WEIGHTS else "ImageNet"
    return ", ".join(f"{spec}: {used(*nets[spec])}" for spec in nets)


# --------------------------------------------------------------------------- evaluation

def evaluate_method(generator, data: Path, folder: Path, features: FolderFeatures, device) -> dict:
    """Translate the test photos and score them against ground truth and both training domains."""
    translate_files(generator, list_images(data / "testA"), folder / "cartoons", RunOptions.reference(device),
                    batch_size=16,
                    overwrite=True, progress=False, eval_mode=True)
    return score_output_folder(folder / "cartoons", data, features)


def score_output_folder(images: Path, data: Path, features: FolderFeatures) -> dict:
    """Edge F1 and color error against the ground truth; FID/KID-syn against the training
    cartoons and photos (their features computed once per benchmark, the outputs' once)."""
    scores = score_cartoon_folders(images, data / "testB")
    fake = features(images)
    to_cartoons = distances(features(data / "trainB", keep=True), fake, features.extractor)
    to_photos = distances(features(data / "trainA", keep=True), fake, features.extractor, kid=False)
    return {**scores, "fid_cartoons": to_cartoons["fid"], "kid_cartoons": to_cartoons["kid_mean"],
            "fid_photos": to_photos["fid"]}


@torch.inference_mode()
def write_grid(generators: dict, data: Path, path: Path) -> None:
    photos = torch.stack([image_to_tensor(load_image(p, 3)) for p in list_images(data / "testA")[:GRID_ROWS]])
    truth = torch.stack([image_to_tensor(load_image(p, 3)) for p in list_images(data / "testB")[:GRID_ROWS]])
    columns = {"photo": photos}
    for label, g in generators.items():
        columns[label] = run_padded(g.net.cpu().eval(), photos)
    columns["ground truth"] = truth
    save_visuals_grid(columns, path, max_rows=GRID_ROWS)


def untrained_rows(all_methods: list[Method], weights: dict, seeds: list[int], out: Path, size: int, iterations: int,
                   overrides: dict, n_train: int, data: Path, features: FolderFeatures, device) -> list[Row]:
    """Floors: each generator architecture as its runs start (initialised from the run's
    seed), scored like the trained ones. Methods sharing an architecture share a row."""
    from ..methods import create_method
    from ..train import seed_everything

    groups: dict[GeneratorSpec, list[Method]] = {}
    for m in all_methods:
        opt = run_options(SHARED, _with_content_net(m.options, weights), m.key, 0, out, size, iterations, overrides,
                          n_train=n_train)
        groups.setdefault(GeneratorSpec.from_options(opt), []).append(m)  # the same net, the same start
    rows = []
    for members in groups.values():
        first = members[0]
        row = Row(f"untrained_{first.key}", f"untrained generator ({', '.join(m.label for m in members)})",
                  "reference")
        for seed in seeds:
            opt = run_options(SHARED, _with_content_net(first.options, weights), f"{first.key}_untrained", seed, out,
                              size, iterations, overrides, n_train=n_train)
            folder = out / "results" / f"seed{seed}" / row.key

            def evaluate():
                seed_everything(opt.seed, False)
                net = create_method(opt, torch.device("cpu")).translator("AtoB").eval()
                generator = LoadedGenerator(net, opt.input_nc, opt.output_nc, "untrained")
                return evaluate_method(generator, data, folder, features, device)

            row.per_seed[seed] = cached_scores(folder, {"feature_net": FEATURE_VERSION, "overrides": overrides},
                                               evaluate)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- table

@dataclass
class Row:
    key: str
    label: str
    kind: str                                       # "method" or "reference"
    per_seed: dict = field(default_factory=dict)    # seed -> scores
    train_s: dict = field(default_factory=dict)
    reason: str = ""


def _cell(row: Row, metric: str) -> str:
    values = [s[metric] for s in row.per_seed.values() if metric in s]
    ms = mean_spread(values)
    if ms is None:
        return "—"
    digits = 3 if metric == "edge_f1" else 2
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}" if len(values) > 1 else f"{ms[0]:.{digits}f}"


def _study_cell(row: Row) -> str:
    fid = STUDY_FID.get(row.key)
    return f"{fid[0]:.2f} / {fid[1]:.2f}" if fid else ""


def table_markdown(rows: list[Row], seeds: list[int], iterations: int, weights_text: str) -> str:
    head = ["method"] + [f"{title} ({better} is better)" for title, better in METRICS.values()] + \
           ["training time", "study: Inception FID vs animation / vs photos (real data)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        train = format_duration(sum(r.train_s.values()) / max(1, len(r.train_s))) if r.train_s else ""
        label = r.label + (f" ({r.reason})" if r.reason else "")
        lines.append("| " + " | ".join([label, *(_cell(r, m) for m in METRICS), train, _study_cell(r)]) + " |")
    spread = "mean ± half range (max − min)/2 over seeds" if len(seeds) > 1 else "one seed,"
    return ("\n".join(lines) + "\n\n"
            f"{spread} {', '.join(map(str, seeds))}; {iterations} iterations per run. FID-syn/KID-syn use a small "
            "network trained on synthetic scenes, not Inception: compare them within this table only. The study's "
            "columns are Inception FIDs on real photos and animation frames, for reference. Content networks: "
            f"{weights_text}.\n")


def write_csv(rows: list[Row], seeds: list[int], path: Path) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "label", "kind", "seed", *METRICS, "train_seconds", "note"])
    for r in rows:
        for s in seeds:
            sc = r.per_seed.get(s, {})
            w.writerow([r.key, r.label, r.kind, s, *(f"{sc[m]:.4f}" if m in sc else "" for m in METRICS),
                        f"{r.train_s[s]:.1f}" if s in r.train_s else "", r.reason])
    ckpt.atomic_write_text(buf.getvalue(), path)


def write_page(path: Path, rows: list[Row], table_md: str, info: dict) -> None:
    h = html.escape
    head = "".join(f"<th>{h(title)}<br><small>{better} is better</small></th>" for title, better in METRICS.values())
    best = {}
    for m, (_, better) in METRICS.items():
        values = [(mean_spread([s[m] for s in r.per_seed.values() if m in s]) or (None,))[0]
                  for r in rows if r.kind == "method"]
        values = [v for v in values if v is not None]
        if values:
            best[m] = max(values) if better == "higher" else min(values)
    body = ""
    for r in rows:
        cells = ""
        for m in METRICS:
            ms = mean_spread([s[m] for s in r.per_seed.values() if m in s])
            mark = r.kind == "method" and ms is not None and ms[0] == best.get(m)
            cells += f"<td>{'<b>' if mark else ''}{h(_cell(r, m))}{'</b>' if mark else ''}</td>"
        body += (f"<tr{'' if r.kind == 'method' else ' class=ref'}><td>{h(r.label)}"
                 f"{' (' + h(r.reason) + ')' if r.reason else ''}</td>{cells}<td class=paper>{_study_cell(r)}</td></tr>")
    settings = "".join(f"<tr><td>{h(k)}</td><td>{h(str(v))}</td></tr>" for k, v in info["settings"].items())
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>transfigure: CartoonGAN vs CycleGAN on synthetic photo → cartoon</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} td:first-child{{text-align:left}}
.paper{{color:#777;font-style:italic}} tr.ref td{{background:#f4f4f4}}
img{{image-rendering:pixelated;width:{info['grid_width']}px}}</style></head><body>
<h1>CartoonGAN, the improved CartoonGAN and CycleGAN on the synthetic photo → cartoon task</h1>
<p>{h(info['intro'])} Best method value in bold.</p>
<table><tr><th>method</th>{head}<th class=paper>study: Inception FID<br>vs animation / vs photos</th></tr>{body}</table>
<h2>Samples (seed {info['seed']}, the same test photos through every method)</h2>
<img src="grid.png" alt="photo, each method's cartoon, ground truth">
<p>columns: {h(info['grid_columns'])}</p>
<h2>Time and settings</h2><p>{h(info['time_text'])}</p><table>{settings}</table>
<h2>Table as Markdown</h2><pre>{h(table_md)}</pre>
</body></html>
"""
    ckpt.atomic_write_text(page, path)


# --------------------------------------------------------------------------- the benchmark


def run_cartoon(out: str | Path, budget_s: float | None = None, seeds: int = 1, size: int = 64,
                n_train: int = 400, n_test: int = 200, iterations: int | None = None, content_weights: str = "auto",
                overrides: dict | None = None, feature_steps: int = 600, content_steps: int = 500,
                only: list[str] | None = None,
                threads: int | None = None, progress: bool = True) -> BenchmarkResult:
    """Train and score every method x seed; write table.md, table.csv, index.html and grid.png in OUT.
    `overrides` apply to every run's options (e.g. smaller networks); `feature_steps`
    trains the evaluation network, `content_steps` the offline content network. A rerun with the same OUT reuses finished runs
    and continues interrupted ones."""
    previous_threads = torch.get_num_threads()
    threads = threads or previous_threads
    if threads < 1:
        raise UsageError("--threads must be at least 1")
    torch.set_num_threads(threads)
    try:
        return _run(Path(out), budget_s, seeds, size, n_train, n_test, iterations, content_weights,
                    dict(overrides or {}), feature_steps, content_steps, only, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _run(out, budget_s, seeds, size, n_train, n_test, iterations, content_weights, overrides, feature_steps,
         content_steps, only, progress) -> BenchmarkResult:
    started = time.perf_counter()
    if seeds < 1:
        raise UsageError("--seeds must be at least 1")
    if iterations is not None and iterations < 1:
        raise UsageError("--iterations must be at least 1")
    if n_test < 2 or n_train < 2:
        raise UsageError("--n_train and --n_test must be at least 2 (FID needs two images)")
    all_methods = methods()
    if only:
        unknown = sorted(set(only) - {m.key for m in all_methods})
        if unknown:
            raise UsageError(f"--only {', '.join(unknown)}: unknown method(s); choose from "
                             f"{', '.join(m.key for m in all_methods)}")
        all_methods = [m for m in all_methods if m.key in only]
    settings = {"task": "photo2cartoon", "size": size, "n_train": n_train, "n_test": n_test, "data_seed": DATA_SEED,
                "content_weights": content_weights, "overrides": dict(sorted(overrides.items())),
                "feature_steps": feature_steps, "content_steps": content_steps}
    for m in all_methods:  # check every run's options before anything is written
        run_options(SHARED, {**m.options, "content_weights": RANDOM_WEIGHTS}, m.key, 0, out, size, 1, overrides)
    record = open_folder(out, settings)

    data = out / "data"
    log(f"Synthetic photo2cartoon data ({n_train} training photos and cartoons, {n_test} test pairs, {size} px) "
        f"in {data}")
    make_photo2cartoon(data, size=size, n_train=n_train, n_test=n_test, seed=DATA_SEED, progress=progress)
    log("Edge-smoothed training cartoons (CartoonGAN's extra fakes)")
    smooth_edges_folder(data / "trainB", data / "trainB_smooth", progress=progress)
    log("Evaluation feature network (trained on synthetic scenes)")
    feature_net_path = train_feature_net(out / "feature_net.pt", size=size, seed=DATA_SEED, steps=feature_steps,
                                         progress=progress)

    content_net_path = out / "content_net.pt"
    if isinstance(record.get("content_nets"), dict):
        weights = record["content_nets"]
    else:
        log(f"Content networks (--content_weights {content_weights}):")
        weights = resolve_content_nets(content_weights, content_net_path)
        record["content_nets"] = weights
    if any(spec == SCENE_CONTENT_NET for spec, _ in weights.values()):
        log("Content network trained on synthetic scenes (its own scenes and objective, not the evaluation's)")
        scene_content.train_scene_content_net(content_net_path, size=size, seed=DATA_SEED, steps=content_steps,
                                              progress=progress)
    log(f"  {_content_text(weights)}")

    seed_list = list(range(seeds))
    def measure() -> dict:
        timing = {}
        for m in all_methods:
            opt = run_options(SHARED, _with_content_net(m.options, weights), f"{m.key}_timing", 0, out, size, 1,
                              overrides, n_train=n_train)
            timing[m.key] = seconds_per_iteration(opt)
            log(f"  {m.label}: {timing[m.key] * 1000:.0f} ms per iteration")
        return timing

    iterations = settle_iterations(out, record, iterations, budget_s, len(seed_list), MIN_ITERATIONS, measure,
                                   DEFAULT_ITERATIONS)

    device = resolve_device()
    features = FolderFeatures(feature_network().name, str(feature_net_path), device=device)
    rows = {m.key: Row(m.key, m.label, "method") for m in all_methods}
    complete, done, total = True, 0, len(all_methods) * len(seed_list)
    for seed in seed_list:
        generators = {}
        for m in all_methods:
            done += 1
            name = f"{m.key}_seed{seed}"
            opt = run_options(SHARED, _with_content_net(m.options, weights), name, seed, out, size, iterations,
                              overrides, n_train=n_train)
            log(f"[{done}/{total}] {m.label}, seed {seed} ({name})")
            outcome = train_run(opt, iterations, progress)
            log(f"    {'trained' if outcome.trained_now else 'reusing the finished run:'} {outcome.total_steps} "
                f"iterations, {outcome.train_s:.0f} s of training"
                + ("" if outcome.status == "finished" else " (interrupted)"))
            if outcome.status != "finished":
                complete = False
                break
            rows[m.key].train_s[seed] = outcome.train_s
            generator = load_generator(name=name, checkpoints_dir=str(out / "checkpoints"), direction="AtoB")
            generators[m.label] = generator
            folder = out / "results" / f"seed{seed}" / m.key
            key = {"iterations": iterations, "steps": outcome.total_steps, "feature_net": FEATURE_VERSION}
            s = rows[m.key].per_seed[seed] = cached_scores(
                folder, key, lambda: evaluate_method(generator, data, folder, features, device))
            log(f"    edge F1 {s['edge_f1']:.3f}, color error {s['color_error']:.2f}, FID-syn vs cartoons "
                f"{s['fid_cartoons']:.2f}, vs photos {s['fid_photos']:.2f}")
        if not complete:
            break
        if seed == seed_list[0]:
            write_grid(generators, data, out / "grid.png")

    refs = [Row("photos", "test photos unchanged (floor)", "reference"),
            Row("truth", "ground-truth cartoons (ceiling)", "reference")]
    if complete:
        for row, folder in zip(refs, (data / "testA", data / "testB")):
            row.per_seed[0] = cached_scores(out / "results" / "references" / row.key, {"feature_net": FEATURE_VERSION},
                                            lambda: score_output_folder(folder, data, features))
        refs = untrained_rows(all_methods, weights, seed_list, out, size, iterations, overrides, n_train, data,
                              features, device) + refs
    ordered = [rows[m.key] for m in all_methods] + refs
    wall = close_invocation(out, record, started, complete)
    if not complete:
        return BenchmarkResult(out, ordered, iterations, False, wall)

    train_total = sum(sum(r.train_s.values()) for r in ordered)
    time_text = (f"This invocation: {format_duration(wall)} wall time. All invocations on this folder: "
                 f"{format_duration(record['wall_s'])}. Training time of all runs: {format_duration(train_total)}. "
                 f"Threads: {torch.get_num_threads()}.")
    md = table_markdown(ordered, seed_list, iterations, _content_text(weights))
    ckpt.atomic_write_text(f"# CartoonGAN vs CycleGAN, synthetic photo → cartoon ({size} px, {n_train} training "
                           f"images per domain, {n_test} test pairs)\n\n{md}\n{time_text}\n", out / "table.md")
    write_csv(ordered, seed_list, out / "table.csv")
    shown = {**settings, "iterations per run": iterations, "seeds": ", ".join(map(str, seed_list)),
             "shared": json.dumps(SHARED), "generators": f"{BLOCKS} residual blocks, ngf {SHARED['ngf']}",
             **{m.label: json.dumps(m.options) for m in all_methods},
             "content networks": _content_text(weights),
             "timing (s per iteration)": json.dumps(record.get("timing", {}))}
    intro = (f"Every method trained on the same {n_train} photos and {n_train} cartoons of other scenes "
             f"({size}x{size} px, batch {SHARED['batch_size']}), {iterations} iterations per run; scores on "
             f"{n_test} held-out test photos against the ground-truth cartoons of the same scenes, and against the "
             "training cartoons and photos by FID/KID with a feature network trained on synthetic scenes "
             "(FID-syn, KID-syn: not Inception, comparable within this table only).")
    write_page(out / "index.html", ordered, md,
               {"settings": shown, "time_text": time_text, "intro": intro, "seed": seed_list[0],
                "grid_columns": " | ".join(["photo", *(m.label for m in all_methods), "ground truth"]),
                "grid_width": (len(all_methods) + 2) * (size + 2) * 2})
    print()
    print(md)
    print(time_text)
    print(f"Wrote {out / 'table.md'}, {out / 'table.csv'} and {out / 'index.html'}")
    return BenchmarkResult(out, ordered, iterations, True, wall)
