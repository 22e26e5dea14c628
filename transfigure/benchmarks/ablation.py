"""`transfigure benchmark ablation`: the CycleGAN paper's ablation study and
baselines (Zhu et al. 2017, tables 2-5), with its successors CUT and FastCUT
(Park et al. 2020), reproduced on the built-in synthetic labels <-> photo
task in minutes on a CPU.

Every method is trained by the same loop with the same data, image size,
networks, iteration count and seeds; only the loss weights (and, for
pix2pix, the paired data) differ. Both directions are scored as in the
paper: photo -> labels by comparing the generated label maps with the
ground truth (nearest palette color), labels -> photo by the "FCN score":
a segmenter reads the generated photos and its labels are compared with
the input labels. The segmenter is the pix2pix photo -> labels model of the
same seed, trained on the real pairs; its score on the real test photos is
the ceiling of that column. CUT and FastCUT translate one way, so each, like
pix2pix, trains one run per direction.

Every method's cost is measured in the same invocation: seconds per training
iteration and the peak memory of the iterations, all methods one after the
other in fresh processes (`runs.isolated_training_costs`).

Folder layout under --out (everything the benchmark writes is in it):
  benchmark.json                 settings (the iteration count fixed by the first run), timings
  data/                          the synthetic dataset
  checkpoints/<method>_seed<S>/  one training run each (resumable, reused when finished)
  results/seed<S>/<method>/      translated test images, segmenter labels, scores.json
  grids/<method>.png             test samples, the same inputs for every method
  table.md, table.csv, index.html
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from ..config import Options, make_options
from ..data.images import image_to_tensor, list_images, load_image
from ..data.synthetic import load_palette, make_labels2photo
from ..devices import resolve_device
from ..evaluate.segmentation import score_label_folders
from ..evaluate.segmenter import Segmenter, score_photos
from ..nets import run_padded
from ..nets.features import FeatureWeightsError
from ..runner import RunOptions
from ..translate import LoadedGenerator, load_generator, translate_files
from ..visuals import save_visuals_grid
from .runs import (BenchmarkResult, RunOutcome, cached_scores, close_invocation, format_duration,
                   isolated_training_costs, log, mean_spread, open_folder, run_options, save_record,
                   settle_iterations, train_run)
from .speed import machine
from ..errors import UsageError

DATA_SEED = 0                  # one dataset for every method and seed
MIN_ITERATIONS = 200           # below this no method learns the task at 64 px
DEFAULT_ITERATIONS = 1000        # iterations per run unless --iterations or --budget: the same table on every machine
GRID_ROWS = 6
METRICS = ("pixel_acc", "class_acc", "mean_iou")
METRIC_NAMES = {"pixel_acc": "per-pixel acc", "class_acc": "per-class acc", "mean_iou": "mean IoU"}
DIRECTIONS = {"p2l": "photo → labels", "l2p": "labels → photo (FCN score)"}

# Networks and optimisation shared by every method: the demo's small nets
# (see DESIGN.md, feasibility figures). Same generator for pix2pix as for
# the unpaired methods, so the comparison is about the losses alone.
SHARED = {
    "netG": "resnet_3blocks", "ngf": 16, "ndf": 16, "netD": "basic", "norm": "instance", "no_dropout": True,
    "init_type": "normal", "init_gain": 0.02, "lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "batch_size": 1,
    "preprocess": "resize_and_crop", "num_threads": 0, "lr_policy": "linear", "display_freq": 0,
    "no_antialias": True, "no_antialias_up": True,
}
# The paper's CycleGAN objective; identity loss off, as in its Cityscapes experiments.
UNPAIRED = {"model": "cycle_gan", "dataset_mode": "unaligned", "gan_mode": "lsgan", "pool_size": 50,
            "lambda_A": 10.0, "lambda_B": 10.0, "lambda_GAN": 1.0, "lambda_identity": 0.0,
            "lambda_pixel": 0.0, "lambda_feature": 0.0}
# CUT's objectives on the same networks. PatchNCE reads the shared generator's layers in the
# roles of the paper's 0,4,8,12,16 on resnet_9blocks: the input, the two downsampling convs,
# the first and the last residual block.
NCE_LAYERS = "0,4,7,10,12"
CUT_OPTIONS = {"model": "cut", "CUT_mode": "CUT", "dataset_mode": "unaligned", "gan_mode": "lsgan",
               "nce_layers": NCE_LAYERS}
FASTCUT_OPTIONS = {**CUT_OPTIONS, "CUT_mode": "FastCUT"}
# pix2pix's own objective (vanilla GAN + L1 x 100, no pool) on the aligned pairs.
PAIRED = {"model": "pix2pix", "dataset_mode": "aligned", "gan_mode": "vanilla", "pool_size": 0, "lambda_L1": 100.0,
          "lambda_identity": 0.0}

# The CycleGAN paper's Cityscapes figures (tables 1-3), for reference only: another
# dataset, 256 px networks and 200 epochs. (pixel acc, class acc, mean IoU)
PAPER_CITYSCAPES = {
    "cyclegan": {"p2l": (0.58, 0.22, 0.16), "l2p": (0.52, 0.17, 0.11)},
    "pix2pix": {"p2l": (0.85, 0.40, 0.32), "l2p": (0.71, 0.25, 0.18)},
}


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    options: dict
    paired: bool = False
    one_sided: bool = False     # one generator, one direction per run (CUT)

    def runs(self) -> list[tuple[str, dict]]:
        """(run name stem, options) of the trainings this method needs per seed."""
        if self.paired or self.one_sided:  # one generator per direction
            return [(f"{self.key}_AtoB", {**self.options, "direction": "AtoB"}),
                    (f"{self.key}_BtoA", {**self.options, "direction": "BtoA"})]
        return [(self.key, self.options)]


def methods(feature_net: str = "vgg16:relu3_3", feature_weights: str = "", pixel_weight: float = 10.0,
            feature_weight: float = 10.0) -> list[Method]:
    """The table's methods, in the paper's order: the paired upper bound, CycleGAN, its ablations, baselines."""
    return [
        Method("pix2pix", "pix2pix (paired, upper bound)", PAIRED, paired=True),
        Method("cyclegan", "CycleGAN", UNPAIRED),
        Method("cycle_alone", "cycle alone", {**UNPAIRED, "lambda_GAN": 0.0}),
        Method("gan_alone", "GAN alone", {**UNPAIRED, "lambda_A": 0.0, "lambda_B": 0.0}),
        Method("gan_forward", "GAN + forward cycle", {**UNPAIRED, "lambda_B": 0.0}),
        Method("gan_backward", "GAN + backward cycle", {**UNPAIRED, "lambda_A": 0.0}),
        Method("pixel_gan", "pixel loss + GAN (SimGAN)",
               {**UNPAIRED, "lambda_A": 0.0, "lambda_B": 0.0, "lambda_pixel": pixel_weight}),
        Method("feature_gan", "feature loss + GAN",
               {**UNPAIRED, "lambda_A": 0.0, "lambda_B": 0.0, "lambda_feature": feature_weight,
                "feature_net": feature_net, "feature_weights": feature_weights}),
        Method("cut", "CUT", CUT_OPTIONS, one_sided=True),
        Method("fastcut", "FastCUT", FASTCUT_OPTIONS, one_sided=True),
    ]


# --------------------------------------------------------------------------- settings

def _settings(task, size, n_train, n_test, overrides, feature_net, feature_weights) -> dict:
    return {"task": task, "size": int(size), "n_train": int(n_train), "n_test": int(n_test),
            "data_seed": DATA_SEED, "overrides": dict(sorted((overrides or {}).items())),
            "feature_net": feature_net, "feature_weights": feature_weights}


# --------------------------------------------------------------------------- timing

def _measure_costs(methods_: list[Method], out: Path, size: int, overrides: dict) -> dict:
    """Seconds per iteration and peak memory (MiB) of one training run of each method,
    measured together in fresh processes; a method that cannot run gets its reason."""
    runs = {m.key: run_options(SHARED, m.runs()[0][1], f"{m.runs()[0][0]}_cost", 0, out, size, 1, overrides)
            for m in methods_}
    costs = {}
    measured = isolated_training_costs(runs)
    for m in methods_:
        value = measured[m.key]
        if isinstance(value, str):
            costs[m.key] = {"error": value}
            log(f"  {m.label}: cannot run ({value})")
            continue
        seconds, peak = value
        costs[m.key] = {"s_per_iter": round(seconds, 5), "peak_mib": None if peak is None else round(peak / 2**20, 1)}
        memory = "" if peak is None else f", {peak / 2**20:.0f} MiB at the peak"
        log(f"  {m.label}: {seconds * 1000:.0f} ms per iteration{memory}")
    return costs


def settle_costs(methods_: list[Method], out: Path, size: int, overrides: dict, record: dict) -> dict:
    """The costs of every method of this invocation, all measured in one invocation: the
    folder's recorded ones when they cover these methods, else all of them measured now."""
    recorded = record.get("cost") or {}
    if {m.key for m in methods_} <= set(recorded.get("methods", {})):
        return recorded
    log("Measuring each method's time per iteration and peak memory (one run each, in fresh processes)...")
    device = resolve_device()
    record["cost"] = {"methods": _measure_costs(methods_, out, size, overrides),
                      "machine": machine(device), "measured": time.strftime("%Y-%m-%d %H:%M")}
    save_record(out, record)
    return record["cost"]


# --------------------------------------------------------------------------- training

# --------------------------------------------------------------------------- evaluation

def _generator(out: Path, run: str, direction: str | None) -> LoadedGenerator:
    return load_generator(name=run, checkpoints_dir=str(out / "checkpoints"), direction=direction)


def evaluate_pair(to_photo: LoadedGenerator, to_labels: LoadedGenerator, segmenter: Segmenter, data: Path,
                  colors, folder: Path, device) -> dict:
    """Both directions of one method: generated label maps against the ground
    truth, and the segmenter's reading of generated photos against the input labels."""
    labels, photos = list_images(data / "testA"), list_images(data / "testB")
    translate_files(to_labels, photos, folder / "photo2label", RunOptions.reference(device),
                    batch_size=16, overwrite=True,
                    progress=False)
    translate_files(to_photo, labels, folder / "label2photo", RunOptions.reference(device),
                    batch_size=16, overwrite=True,
                    progress=False)
    return {"p2l": score_label_folders(folder / "photo2label", data / "testA", colors),
            "l2p": score_photos(segmenter, folder / "label2photo", data / "testA", colors,
                                folder / "label2photo_segmented", device=device)}


def _untrained(opt: Options) -> tuple[LoadedGenerator, LoadedGenerator]:
    """The CycleGAN generators as the run of this seed starts them (a floor)."""
    from ..methods import create_method
    from ..train import seed_everything

    seed_everything(opt.seed, False)
    method = create_method(make_options({**opt.to_dict(), "lambda_feature": 0.0}), torch.device("cpu"))
    g_a, g_b = method.translator("AtoB").eval(), method.translator("BtoA").eval()
    return (LoadedGenerator(g_a, opt.input_nc, opt.output_nc, "untrained G_A"),
            LoadedGenerator(g_b, opt.output_nc, opt.input_nc, "untrained G_B"))


class _Identity(torch.nn.Module):
    def forward(self, x):
        return x


# --------------------------------------------------------------------------- grids

@torch.inference_mode()
def write_grid(to_photo: LoadedGenerator, to_labels: LoadedGenerator, data: Path, path: Path) -> None:
    """The first GRID_ROWS test pairs: labels -> generated photo, photo -> generated labels, ground truth."""
    labels, photos = list_images(data / "testA")[:GRID_ROWS], list_images(data / "testB")[:GRID_ROWS]
    real_a = torch.stack([image_to_tensor(load_image(p, 3)) for p in labels])
    real_b = torch.stack([image_to_tensor(load_image(p, 3)) for p in photos])
    save_visuals_grid({"labels (input)": real_a,
                       "generated photo": run_padded(to_photo.net.cpu().eval(), real_a),
                       "photo (input)": real_b,
                       "generated labels": run_padded(to_labels.net.cpu().eval(), real_b),
                       "labels (ground truth)": real_a}, path, max_rows=GRID_ROWS)


GRID_COLUMNS = "labels (input) | generated photo | photo (input) | generated labels | labels (ground truth)"


# --------------------------------------------------------------------------- table

@dataclass
class Row:
    key: str
    label: str
    kind: str                                       # "method", "floor" or "ceiling"
    per_seed: dict = field(default_factory=dict)    # seed -> {"p2l": scores, "l2p": scores}
    cost: dict = field(default_factory=dict)        # {"s_per_iter", "peak_mib"} of one training run
    reason: str = ""                                # why a method has no scores
    train_s: dict = field(default_factory=dict)     # seed -> training seconds
    paper: dict = field(default_factory=dict)


def _values(row: Row, direction: str, metric: str) -> list[float]:
    return [s[direction][metric] for s in row.per_seed.values()
            if s.get(direction) is not None and not math.isnan(s[direction][metric])]


def _cell(row: Row, direction: str, metric: str) -> str:
    ms = mean_spread(_values(row, direction, metric))
    if ms is None:
        return "—"
    mean, spread = ms
    return f"{mean:.3f} ± {spread:.3f}" if len(row.per_seed) > 1 else f"{mean:.3f}"


COST_HEADS = ("s / iteration (× CycleGAN)", "peak memory, MiB")


def _cost_cells(row: Row, rows: list[Row]) -> list[str]:
    """Seconds per iteration (and the ratio to CycleGAN's), peak memory."""
    seconds = row.cost.get("s_per_iter")
    if seconds is None:
        return ["—", "—"]
    reference = next((r.cost.get("s_per_iter") for r in rows if r.key == "cyclegan"), None)
    ratio = f" ({seconds / reference:.2f}×)" if reference else ""
    peak = row.cost.get("peak_mib")
    return [f"{seconds:.3f}{ratio}", "—" if peak is None else f"{peak:.0f}"]


def cost_note(cost: dict) -> str:
    m = cost.get("machine", {})
    where = m.get("device", "?") + (f" ({', '.join(m['flags'])}; {m.get('threads')} thread(s))"
                                    if m.get("flags") is not None and "threads" in m else "")
    return (f"Time per iteration and peak memory: one training run of each method (CUT and FastCUT: the labels → "
            "photo run; they train one run per direction, where CycleGAN's one run trains both), 8 timed "
            f"iterations after 3 warm-up ones; all methods measured together, the time in one fresh process and "
            f"the memory in another, on {where}, "
            f"{cost.get('measured', '?')}. Peak memory: what the iterations added to the process (activations, "
            "gradients, optimizer state; on a CPU the resident set, on CUDA the allocator's peak).")


def _paper_cell(row: Row, direction: str) -> str:
    p = row.paper.get(direction)
    return " / ".join(f"{v:.2f}" for v in p) if p else ""


def ordering_checks(rows: list[Row], seeds: list[int]) -> list[tuple[int, str, bool | None]]:
    """The paper's photo -> labels mean IoU ordering, per seed: (seed, claim, holds; None = not measured)."""
    by_key = {r.key: r for r in rows}
    claims = [("pix2pix", "cyclegan"), ("cyclegan", "gan_alone"), ("cyclegan", "cycle_alone")]
    out = []
    for seed in seeds:
        for hi, lo in claims:
            a, b = by_key.get(hi), by_key.get(lo)
            va = a.per_seed.get(seed, {}).get("p2l") if a else None
            vb = b.per_seed.get(seed, {}).get("p2l") if b else None
            text = f"{a.label if a else hi} > {b.label if b else lo}"
            out.append((seed, text, None if va is None or vb is None else va["mean_iou"] > vb["mean_iou"]))
    return out


def table_markdown(rows: list[Row], seeds: list[int], iterations: int) -> str:
    head = ["method"] + [f"{DIRECTIONS[d]}: {METRIC_NAMES[m]}" for d in DIRECTIONS for m in METRICS] + \
           [*COST_HEADS, "paper, Cityscapes: photo → labels", "paper, Cityscapes: labels → photo"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for r in rows:
        label = r.label
        if r.reason:
            notes.append(r.reason)
            label += f" [{len(notes)}]"
        cells = [_cell(r, d, m) for d in DIRECTIONS for m in METRICS] + _cost_cells(r, rows)
        lines.append("| " + " | ".join([label, *cells, _paper_cell(r, "p2l"), _paper_cell(r, "l2p")]) + " |")
    spread = "mean ± half range (max − min)/2 over" if len(seeds) > 1 else "one run,"
    text = "\n".join(lines) + "\n\n"
    text += (f"{spread} seeds {', '.join(map(str, seeds))}; {iterations} iterations per run. The last two "
             "columns are the CycleGAN paper's figures (pixel / class acc / mean IoU) on Cityscapes at 256 px — "
             "another dataset, for reference only, not comparable number for number.\n")
    for i, note in enumerate(notes, 1):
        text += f"\n[{i}] {note}"
    if notes:
        text += "\n"
    # Per seed: the numbers the ordering claims rest on.
    text += "\nPer seed, mean IoU (photo → labels / labels → photo):\n\n"
    text += "| method | " + " | ".join(f"seed {s}" for s in seeds) + " |\n|---|" + "---|" * len(seeds) + "\n"
    for r in rows:
        cells = []
        for s in seeds:
            sc = r.per_seed.get(s)
            if not sc:
                cells.append("—")
                continue
            p2l = f"{sc['p2l']['mean_iou']:.3f}" if sc.get("p2l") else "—"
            l2p = f"{sc['l2p']['mean_iou']:.3f}" if sc.get("l2p") else "—"
            cells.append(f"{p2l} / {l2p}")
        text += f"| {r.label} | " + " | ".join(cells) + " |\n"
    text += "\nThe paper's photo → labels ordering, per seed:\n\n"
    for seed, claim, holds in ordering_checks(rows, seeds):
        verdict = "not measured" if holds is None else ("holds" if holds else "does NOT hold")
        text += f"- seed {seed}: {claim}: {verdict}\n"
    return text


def write_csv(rows: list[Row], seeds: list[int], path: Path) -> None:
    fields = ["method", "label", "kind", "seed"] + [f"{d}_{m}" for d in DIRECTIONS for m in METRICS] + \
             ["train_seconds", "seconds_per_iteration", "peak_memory_mib", "note"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    fmt = lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"
    for r in rows:
        for s in seeds:
            sc = r.per_seed.get(s, {})
            vals = [fmt(sc[d][m]) if sc.get(d) else "" for d in DIRECTIONS for m in METRICS]
            w.writerow([r.key, r.label, r.kind, s, *vals, fmt(r.train_s.get(s)), fmt(r.cost.get("s_per_iter")),
                        fmt(r.cost.get("peak_mib")), r.reason])
        for stat in ("mean", "half_range"):
            vals = []
            for d in DIRECTIONS:
                for m in METRICS:
                    ms = mean_spread(_values(r, d, m))
                    vals.append("" if ms is None else fmt(ms[0] if stat == "mean" else ms[1]))
            w.writerow([r.key, r.label, r.kind, stat, *vals, "", "", "", r.reason])
    ckpt.atomic_write_text(buf.getvalue(), path)


def _html_table(rows: list[Row], seeds: list[int]) -> str:
    h = html.escape
    head = ("<tr><th rowspan=2>method</th>" + "".join(f"<th colspan=3>{h(DIRECTIONS[d])}</th>" for d in DIRECTIONS)
            + "".join(f"<th rowspan=2>{h(c)}</th>" for c in COST_HEADS)
            + "<th colspan=2 class=paper>CycleGAN paper, Cityscapes<br>(another dataset; reference only)</th></tr>"
            + "<tr>" + "".join(f"<th>{METRIC_NAMES[m]}</th>" for _ in DIRECTIONS for m in METRICS)
            + "<th class=paper>photo → labels</th><th class=paper>labels → photo</th></tr>")
    body, notes = "", []
    for r in rows:
        label = h(r.label)
        if r.reason:
            notes.append(r.reason)
            label += f" <sup>[{len(notes)}]</sup>"
        cls = "" if r.kind == "method" else " class=ref"
        body += (f"<tr{cls}><td>{label}</td>" + "".join(f"<td>{h(_cell(r, d, m))}</td>"
                                                         for d in DIRECTIONS for m in METRICS)
                 + "".join(f"<td>{h(c)}</td>" for c in _cost_cells(r, rows))
                 + f"<td class=paper>{_paper_cell(r, 'p2l')}</td><td class=paper>{_paper_cell(r, 'l2p')}</td></tr>")
    foot = "".join(f"<p class=note>[{i}] {h(n)}</p>" for i, n in enumerate(notes, 1))
    return f"<table>{head}{body}</table>{foot}"


def write_page(path: Path, rows: list[Row], seeds: list[int], grids: list[tuple[str, str]], info: dict,
               table_md: str) -> None:
    h = html.escape
    checks = "".join(f"<li>seed {s}: {h(c)}: <b>{'not measured' if ok is None else ('holds' if ok else 'does NOT hold')}"
                     f"</b></li>" for s, c, ok in ordering_checks(rows, seeds))
    per_seed = "".join(
        f"<tr><td>{h(r.label)}</td>" + "".join(
            f"<td>{r.per_seed[s]['p2l']['mean_iou']:.3f} / {r.per_seed[s]['l2p']['mean_iou']:.3f}</td>"
            if r.per_seed.get(s, {}).get("p2l") and r.per_seed[s].get("l2p") else
            (f"<td>{r.per_seed[s]['p2l']['mean_iou']:.3f} / —</td>" if r.per_seed.get(s, {}).get("p2l") else
             (f"<td>— / {r.per_seed[s]['l2p']['mean_iou']:.3f}</td>" if r.per_seed.get(s, {}).get("l2p") else
              "<td>—</td>")) for s in seeds) + "</tr>"
        for r in rows)
    figures = "".join(f"<figure><figcaption>{h(label)}</figcaption><img src='{h(src)}' alt='{h(label)}'></figure>"
                      for label, src in grids)
    settings = "".join(f"<tr><td>{h(k)}</td><td>{h(str(v))}</td></tr>" for k, v in info["settings"].items())
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>transfigure: CycleGAN paper ablations on synthetic labels &lt;-&gt; photos</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} td:first-child{{text-align:left}}
.paper{{color:#777;font-style:italic}} tr.ref td{{background:#f4f4f4}} .note{{font-size:90%;color:#555}}
figure{{display:inline-block;margin:0 1em 1em 0}} img{{image-rendering:pixelated;width:{info['grid_width']}px}}</style>
</head><body>
<h1>The CycleGAN paper's ablations and baselines, and CUT, on the synthetic labels &lt;-&gt; photos task</h1>
<p>Every method trained by the same loop on the same {info['settings']['n_train']} training images
({info['settings']['size']}x{info['settings']['size']} px), with the same networks, {info['iterations']} iterations per
run and seeds {', '.join(map(str, seeds))}; only the losses differ. Scores on {info['settings']['n_test']} held-out test
pairs. photo → labels: generated label maps against the ground truth (nearest palette color). labels → photo
(FCN score): the segmenter (pix2pix photo → labels trained on the real pairs, same seed) reads the generated photos, its
labels are compared with the input labels. Cells: {h(info['spread'])}.</p>
{_html_table(rows, seeds)}
<h2>Per seed: mean IoU, photo → labels / labels → photo</h2>
<table><tr><th>method</th>{''.join(f'<th>seed {s}</th>' for s in seeds)}</tr>{per_seed}</table>
<h2>The paper's photo → labels ordering</h2><ul>{checks}</ul>
<h2>Samples (seed {seeds[0]}, the same test inputs for every method)</h2>
<p>columns: {h(GRID_COLUMNS)}</p>
{figures}
<h2>Time and settings</h2>
<p>{h(info['time_text'])}</p>
<table>{settings}</table>
<h2>Table as Markdown</h2><pre>{h(table_md)}</pre>
</body></html>
"""
    ckpt.atomic_write_text(page, path)


# --------------------------------------------------------------------------- the benchmark


def run_ablation(out: str | Path, task: str = "labels2photo", budget_s: float | None = None, seeds: int = 2,
                 size: int = 64, n_train: int = 1000, n_test: int = 100, iterations: int | None = None,
                 overrides: dict | None = None, feature_net: str = "vgg16:relu3_3", feature_weights: str = "",
                 only: list[str] | None = None, threads: int | None = None,
                 progress: bool = True, costs_only: bool = False) -> BenchmarkResult:
    """Train and score every method x seed; write table.md, table.csv and index.html in OUT.

    `overrides` apply to every run's options (e.g. smaller networks); `only`
    restricts the methods (keys of `methods()`; pix2pix is always trained, it
    is the segmenter). A rerun with the same OUT reuses finished runs and
    continues interrupted ones. `threads`: torch CPU threads while it runs
    (default: 1 up to 64 px, where batch-1 steps of these small nets gain
    nothing from a second thread and one thread keeps timings steady on a
    shared machine; else torch's default). `costs_only`: measure every method's time per
    iteration and peak memory, write costs.md, train nothing (e.g. at another --size)."""
    previous_threads = torch.get_num_threads()
    if threads is None:
        threads = 1 if size <= 64 else previous_threads
    if threads < 1:
        raise UsageError("--threads must be at least 1")
    torch.set_num_threads(threads)
    try:
        return _run_ablation(out, task, budget_s, seeds, size, n_train, n_test, iterations, overrides, feature_net,
                             feature_weights, only, progress, costs_only)
    finally:
        torch.set_num_threads(previous_threads)


def _run_ablation(out, task, budget_s, seeds, size, n_train, n_test, iterations, overrides, feature_net,
                  feature_weights, only, progress, costs_only) -> BenchmarkResult:
    started = time.perf_counter()
    if task != "labels2photo":
        raise UsageError(f"--task {task!r}: only labels2photo is available")
    if seeds < 1:
        raise UsageError("--seeds must be at least 1")
    if iterations is not None and iterations < 1:
        raise UsageError("--iterations must be at least 1")
    out = Path(out)
    overrides = dict(overrides or {})
    settings = _settings(task, size, n_train, n_test, overrides, feature_net, feature_weights)
    all_methods = methods(feature_net, feature_weights)
    if only:
        unknown = sorted(set(only) - {m.key for m in all_methods})
        if unknown:
            raise UsageError(f"--only {', '.join(unknown)}: unknown method(s); choose from "
                             f"{', '.join(m.key for m in all_methods)}")
        all_methods = [m for m in all_methods if m.key in only or m.key == "pix2pix"]
    # Check the options of every run before anything is written.
    for m in all_methods:
        for stem, options in m.runs():
            run_options(SHARED, options, stem, 0, out, size, 1, overrides)
    record = open_folder(out, settings)
    seed_list = list(range(seeds))

    data = out / "data"
    log(f"Synthetic {task} data ({n_train} training pairs, {n_test} test pairs, {size} px) in {data}")
    make_labels2photo(data, size=size, n_train=n_train, n_test=n_test, seed=DATA_SEED, progress=progress)
    names, colors = load_palette(data)

    if costs_only:
        return _write_costs(out, all_methods, settle_costs(all_methods, out, size, overrides, record), record, started,
                            settings)

    costs = settle_costs(all_methods, out, size, overrides, record)
    unavailable: dict[str, str] = {}

    def measure() -> dict:
        """For --budget: seconds per iteration of each method, all its runs, from the measured costs."""
        timing = {}
        for m in all_methods:
            cost = costs["methods"][m.key]
            if "s_per_iter" in cost:
                timing[m.key] = cost["s_per_iter"] * len(m.runs())
            elif cost["error"].startswith(f"{FeatureWeightsError.__name__}: "):
                unavailable[m.key] = cost["error"].split(": ", 1)[1]
        return timing

    iterations = settle_iterations(out, record, iterations, budget_s, len(seed_list), MIN_ITERATIONS, measure,
                                   DEFAULT_ITERATIONS)

    device = resolve_device()
    rows = {m.key: Row(m.key, m.label, "method", paper={d: PAPER_CITYSCAPES[m.key][d] for d in DIRECTIONS}
                       if m.key in PAPER_CITYSCAPES else {}, cost=costs["methods"].get(m.key, {}))
            for m in all_methods}
    runs_total = sum(len(m.runs()) for m in all_methods) * len(seed_list)
    done, complete = 0, True
    for seed in seed_list:
        segmenter = None
        for m in all_methods:
            row = rows[m.key]
            if m.key in unavailable:
                row.reason = f"not run: {unavailable[m.key]}"
                done += len(m.runs())
                log(f"[{done}/{runs_total}] {m.label}, seed {seed}: not run (see above)")
                continue
            outcomes = []
            for stem, options in m.runs():
                done += 1
                name = f"{stem}_seed{seed}"
                opt = run_options(SHARED, options, name, seed, out, size, iterations, overrides, n_train=n_train)
                log(f"[{done}/{runs_total}] {m.label}, seed {seed} ({name})")
                try:
                    outcome = train_run(opt, iterations, progress)
                except FeatureWeightsError as e:
                    outcome = RunOutcome("unavailable", reason=str(e))
                outcomes.append(outcome)
                if outcome.status == "unavailable":
                    log(f"    cannot run: {outcome.reason}")
                    break
                verb = "trained" if outcome.trained_now else "reusing the finished run:"
                log(f"    {verb} {outcome.total_steps} iterations, {outcome.train_s:.0f} s of training"
                    + ("" if outcome.status == "finished" else " (interrupted)"))
                if outcome.status != "finished":
                    break
            if any(o.status == "unavailable" for o in outcomes):
                row.reason = f"not run: {outcomes[-1].reason}"
                continue
            if any(o.status != "finished" for o in outcomes):
                complete = False
                break
            row.train_s[seed] = sum(o.train_s for o in outcomes)
            run_names = [f"{stem}_seed{seed}" for stem, _ in m.runs()]
            if m.paired or m.one_sided:
                to_photo, to_labels = _generator(out, run_names[0], None), _generator(out, run_names[1], None)
            else:
                to_photo, to_labels = _generator(out, run_names[0], "AtoB"), _generator(out, run_names[0], "BtoA")
            if m.key == "pix2pix":
                segmenter = Segmenter(to_labels.net, f"pix2pix photo->labels, seed {seed}")
            key = {"iterations": iterations, "steps": [o.total_steps for o in outcomes],
                   "segmenter": f"pix2pix_BtoA_seed{seed}"}
            folder = out / "results" / f"seed{seed}" / m.key
            row.per_seed[seed] = cached_scores(
                folder, key, lambda: evaluate_pair(to_photo, to_labels, segmenter, data, colors, folder, device))
            s = row.per_seed[seed]
            log(f"    photo → labels mean IoU {s['p2l']['mean_iou']:.3f}, labels → photo (FCN) mean IoU "
                f"{s['l2p']['mean_iou']:.3f}")
            if seed == seed_list[0]:
                write_grid(to_photo, to_labels, data, out / "grids" / f"{m.key}.png")
        if not complete:
            break
        if segmenter is not None:
            _reference_rows(rows, seed, segmenter, data, colors, out, iterations, overrides, size, device)

    ordered = [rows[m.key] for m in all_methods] + [rows[k] for k in ("untrained", "identity", "real") if k in rows]
    wall = close_invocation(out, record, started, complete)
    if not complete:
        return BenchmarkResult(out, ordered, iterations, False, wall)
    _write_outputs(out, ordered, seed_list, iterations, settings, record, wall, all_methods, costs)
    return BenchmarkResult(out, ordered, iterations, True, wall)


def _write_costs(out: Path, all_methods: list[Method], costs: dict, record: dict, started: float,
                 settings: dict) -> BenchmarkResult:
    """costs.md: each method's time per iteration and peak memory, nothing trained."""
    rows = [Row(m.key, m.label, "method", cost=costs["methods"].get(m.key, {})) for m in all_methods]
    lines = ["| method | " + " | ".join(COST_HEADS) + " |", "|---|---|---|"]
    lines += [f"| {r.label} | " + " | ".join(_cost_cells(r, rows)) + " |" for r in rows]
    errors = [f"- {r.label}: {r.cost['error']}" for r in rows if "error" in r.cost]
    text = (f"# Time per iteration and peak memory, synthetic {settings['task']} at {settings['size']} px\n\n"
            + "\n".join(lines) + "\n\n" + ("Not measured:\n" + "\n".join(errors) + "\n\n" if errors else "")
            + f"Settings: {json.dumps(settings['overrides'])} on top of the table's shared networks. "
            + cost_note(costs) + "\n")
    ckpt.atomic_write_text(text, out / "costs.md")
    print()
    print(text)
    print(f"Wrote {out / 'costs.md'}")
    return BenchmarkResult(out, rows, 0, True, close_invocation(out, record, started, True))


def _reference_rows(rows: dict, seed: int, segmenter: Segmenter, data: Path, colors, out: Path, iterations: int,
                    overrides: dict, size: int, device) -> None:
    """Floors (untrained generator, identity mapping) and the segmenter's ceiling (real photos)."""
    folder = out / "results" / f"seed{seed}"
    key = {"iterations": iterations, "segmenter": f"pix2pix_BtoA_seed{seed}"}
    opt = run_options(SHARED, UNPAIRED, "untrained", seed, out, size, iterations, overrides)
    g_a, g_b = _untrained(opt)
    rows.setdefault("untrained", Row("untrained", "untrained generator (floor)", "floor"))
    rows["untrained"].per_seed[seed] = cached_scores(
        folder / "untrained", {**key, "overrides": overrides},
        lambda: evaluate_pair(g_a, g_b, segmenter, data, colors, folder / "untrained", device))
    identity = LoadedGenerator(_Identity(), 3, 3, "identity")
    rows.setdefault("identity", Row("identity", "identity mapping (floor)", "floor"))
    rows["identity"].per_seed[seed] = cached_scores(
        folder / "identity", key,
        lambda: evaluate_pair(identity, identity, segmenter, data, colors, folder / "identity", device))
    rows.setdefault("real", Row("real", "real photos (segmenter's ceiling)", "ceiling"))
    rows["real"].per_seed[seed] = cached_scores(
        folder / "real", key,
        lambda: {"p2l": None, "l2p": score_photos(segmenter, data / "testB", data / "testA", colors,
                                                  folder / "real" / "testB_segmented", device=device)})
    log(f"  references, seed {seed}: untrained {rows['untrained'].per_seed[seed]['p2l']['mean_iou']:.3f}, "
        f"identity {rows['identity'].per_seed[seed]['p2l']['mean_iou']:.3f} (photo → labels mean IoU); "
        f"segmenter on real photos {rows['real'].per_seed[seed]['l2p']['mean_iou']:.3f}")


def _write_outputs(out: Path, rows: list[Row], seeds: list[int], iterations: int, settings: dict, record: dict,
                   wall: float, all_methods: list[Method], costs: dict) -> None:
    train_total = sum(sum(r.train_s.values()) for r in rows)
    time_text = (f"This invocation: {format_duration(wall)} wall time. All invocations on this folder: "
                 f"{format_duration(record['wall_s'])}. Training time of all runs (from their checkpoints): "
                 f"{format_duration(train_total)}. Threads: {torch.get_num_threads()}. {cost_note(costs)}")
    md = table_markdown(rows, seeds, iterations)
    md_full = (f"# CycleGAN paper ablations, synthetic {settings['task']} ({settings['size']} px, "
               f"{settings['n_train']} training / {settings['n_test']} test pairs)\n\n{md}\n{time_text}\n")
    ckpt.atomic_write_text(md_full, out / "table.md")
    write_csv(rows, seeds, out / "table.csv")
    grids = [(m.label, f"grids/{m.key}.png") for m in all_methods if (out / "grids" / f"{m.key}.png").is_file()]
    spread = "mean ± half range (max − min)/2 over seeds" if len(seeds) > 1 else "one seed"
    shown = {**settings, "iterations per run": iterations, "seeds": ", ".join(map(str, seeds)),
             "networks": f"{SHARED['netG']} (ngf {SHARED['ngf']}), PatchGAN {SHARED['netD']} (ndf {SHARED['ndf']}), "
                         f"{SHARED['norm']} norm, no dropout, for every method",
             "unpaired objective": "LSGAN, image pool 50, cycle weights 10, identity loss 0",
             "pix2pix objective": "vanilla GAN + L1 x 100 on the aligned pairs, conditional PatchGAN",
             "CUT / FastCUT objective": f"LSGAN + PatchNCE on layers {NCE_LAYERS} (256 patches, tau 0.07, MLP head "
                                        "256), identity NCE and lambda_NCE 1 (CUT) / flips and lambda_NCE 10 "
                                        "(FastCUT); no pool; one run per direction",
             "schedule": f"Adam lr {SHARED['lr']} (beta1 {SHARED['beta1']}), constant, batch 1",
             "timing (s per iteration)": json.dumps(record.get("timing", {}))}
    info = {"settings": shown, "iterations": iterations, "spread": spread, "time_text": time_text,
            "grid_width": 5 * (settings["size"] + 2) * 2}
    write_page(out / "index.html", rows, seeds, grids, info, md)
    print()
    print(md)
    print(time_text)
    print(f"Wrote {out / 'table.md'}, {out / 'table.csv'} and {out / 'index.html'}")
