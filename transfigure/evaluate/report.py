"""`transfigure report`: several runs side by side in one page.

Reads what training and `evaluate run` wrote (options.yaml, loss_log.jsonl,
the latest checkpoint's training time, results/NAME/metrics.json and the
translated test images) and writes OUT/index.html, OUT/table.md and
OUT/table.csv: metrics with the best value in bold, sample grids of the same
test inputs through every run, loss curves, training time, and the settings
that differ between runs. A metric a run lacks shows as "—" with the reason.
"""
from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from ..data.images import image_to_tensor, list_images, load_image
from ..runlog import read_loss_log
from ..visuals import plot_losses, save_visuals_grid
from .run import HIGHER_IS_BETTER, METRICS_FILE
from ..errors import UsageError

GRID_ROWS = 6
# Options that name or place a run rather than define the experiment.
NOT_SETTINGS = {"name", "checkpoints_dir", "continue_train", "epoch", "display_freq", "print_freq",
                "save_latest_freq", "save_epoch_freq", "num_threads", "max_iters", "device"}
METRIC_TITLES = {"fid_target": "FID vs target", "kid_target": "KID vs target", "fid_source": "FID vs source",
                 "kid_source": "KID vs source", "psnr": "PSNR (dB)", "ssim": "SSIM", "pixel_acc": "pixel acc",
                 "class_acc": "class acc", "mean_iou": "mean IoU"}


@dataclass
class RunInfo:
    name: str
    options: dict = field(default_factory=dict)
    metrics: dict | None = None
    reason: str = ""                 # why metrics are missing
    train_s: float | None = None
    steps: int | None = None
    losses: list = field(default_factory=list)


def load_run(name: str, checkpoints_dir: Path, results_dir: Path) -> RunInfo:
    folder = checkpoints_dir / name
    if not folder.is_dir():
        raise FileNotFoundError(f"--runs {name}: no run folder {folder} (check --checkpoints_dir)")
    info = RunInfo(name)
    info.options = ckpt.read_options(folder)
    metrics_file = results_dir / name / METRICS_FILE
    if metrics_file.is_file():
        info.metrics = json.loads(metrics_file.read_text())
    else:
        info.reason = f"not evaluated: run `transfigure evaluate run --name {name}`"
    latest = ckpt.state_path(folder)
    if latest.is_file():
        state = ckpt.load_training_state(latest)
        info.train_s, info.steps = state.get("elapsed_s"), state.get("total_steps")
    info.losses = read_loss_log(folder)
    return info


def _columns(runs: list[RunInfo]) -> list[tuple[str, str]]:
    """(direction, metric) pairs any run has, in a stable order."""
    seen = []
    for r in runs:
        for d, m in (r.metrics or {}).get("directions", {}).items():
            for k in METRIC_TITLES:
                if k in m and (d, k) not in seen:
                    seen.append((d, k))
    return sorted(seen, key=lambda dk: (dk[0], list(METRIC_TITLES).index(dk[1])))


def _value(r: RunInfo, d: str, k: str):
    v = (r.metrics or {}).get("directions", {}).get(d, {}).get(k)
    return v if isinstance(v, (int, float)) and v == v else None


def _reason(r: RunInfo, d: str, k: str) -> str:
    if r.metrics is None:
        return r.reason
    if d not in r.metrics.get("directions", {}):
        return f"{r.name} does not translate {d}"
    for what, why in r.metrics.get("missing", {}).items():
        if what.startswith(d) and (k in ("psnr", "ssim") and "psnr" in what or
                                   k in ("pixel_acc", "class_acc", "mean_iou") and "segmentation" in what):
            return why
    return "not measured"


def _best(runs: list[RunInfo], d: str, k: str):
    values = [v for v in (_value(r, d, k) for r in runs) if v is not None]
    if len(values) < 2:
        return None
    return max(values) if HIGHER_IS_BETTER[k] else min(values)


def _fmt(k: str, v: float) -> str:
    return f"{v:.4f}" if k.startswith("kid") else f"{v:.3f}" if k in ("ssim", "pixel_acc", "class_acc", "mean_iou") \
        else f"{v:.2f}"


def differing_settings(runs: list[RunInfo]) -> dict[str, list]:
    keys = sorted(set().union(*(r.options for r in runs)) - NOT_SETTINGS)
    return {k: [r.options.get(k, "—") for r in runs] for k in keys
            if len({json.dumps(r.options.get(k), sort_keys=True) for r in runs}) > 1}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"


@torch.inference_mode()
def write_grids(runs: list[RunInfo], out: Path) -> list[tuple[str, str]]:
    """Per direction: the first GRID_ROWS test inputs every run translated, and each run's output."""
    grids = []
    directions = sorted({d for r in runs for d in (r.metrics or {}).get("directions", {})})
    for d in directions:
        folders = {r.name: Path(r.metrics["directions"][d]["folder"]) for r in runs
                   if r.metrics and d in r.metrics["directions"]
                   and Path(r.metrics["directions"][d]["folder"]).is_dir()}
        if not folders:
            continue
        common = sorted(set.intersection(*({p.name for p in list_images(f)} for f in folders.values()))
                        )[:GRID_ROWS]
        if not common:
            continue
        first = next(r for r in runs if r.name in folders)
        source = _source_folder(first, d)
        columns = {}
        if source is not None:
            inputs = {p.stem: p for p in list_images(source)}
            if all(Path(n).stem in inputs for n in common):
                columns["input"] = _stack([inputs[Path(n).stem] for n in common])
        for name, f in folders.items():
            columns[name] = _stack([f / n for n in common])
        path = out / f"grid_{d}.png"
        save_visuals_grid(columns, path, max_rows=GRID_ROWS)
        grids.append((d, path.name, " | ".join(columns)))
    return grids


def _source_folder(r: RunInfo, d: str) -> Path | None:
    root = Path(r.options.get("dataroot", ""))
    phase = r.metrics.get("phase", "test")
    if r.options.get("dataset_mode") == "aligned":
        folder = Path(r.metrics["directions"][d]["folder"]).parent.parent / ("real_A" if d == "AtoB" else "real_B")
    else:
        folder = root / f"{phase}{d[0]}"
    return folder if folder.is_dir() else None


def _stack(paths: list[Path]) -> torch.Tensor:
    images = [image_to_tensor(load_image(p, 3)) for p in paths]
    h = max(i.shape[1] for i in images)
    w = max(i.shape[2] for i in images)
    return torch.stack([torch.nn.functional.pad(i, (0, w - i.shape[2], 0, h - i.shape[1]), value=-1) for i in images])


def write_report(run_names: list[str], out: str | Path, checkpoints_dir: str | Path = "checkpoints",
                 results_dir: str | Path = "results") -> Path:
    """Write OUT/index.html, table.md, table.csv, grids and loss plots; return the page's path."""
    if len(set(run_names)) != len(run_names):
        raise UsageError("--runs lists a run twice")
    out = Path(out)
    runs = [load_run(n, Path(checkpoints_dir), Path(results_dir)) for n in run_names]
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "index.html").is_file():
        raise FileExistsError(f"--out {out} is not empty and holds no report; choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    columns = _columns(runs)
    labels = {r.metrics.get("fid_label") for r in runs if r.metrics}
    fid_note = ("FID/KID features: " + "; ".join(sorted(labels))) if labels else ""
    if len(labels) > 1:
        fid_note += " — runs measured with different feature networks are not comparable"

    # Table (Markdown and CSV): one row per run.
    head = ["run", *(f"{d} {METRIC_TITLES[k]}" for d, k in columns), "training time", "iterations"]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes: list[str] = []
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", *(f"{d}_{k}" for d, k in columns), "train_seconds", "iterations", "note"])
    html_rows = []
    for r in runs:
        cells, hcells = [], []
        for d, k in columns:
            v = _value(r, d, k)
            if v is None:
                why = _reason(r, d, k)
                if why not in notes:
                    notes.append(why)
                mark = f"— [{notes.index(why) + 1}]"
                cells.append(mark)
                hcells.append(f"<td title='{html.escape(why)}'>{html.escape(mark)}</td>")
            else:
                best = _best(runs, d, k) == v
                text = _fmt(k, v)
                cells.append(f"**{text}**" if best else text)
                hcells.append(f"<td>{'<b>' if best else ''}{text}{'</b>' if best else ''}</td>")
        extra = [_duration(r.train_s), "—" if r.steps is None else str(r.steps)]
        md.append("| " + " | ".join([r.name, *cells, *extra]) + " |")
        html_rows.append(f"<tr><td>{html.escape(r.name)}</td>{''.join(hcells)}"
                         + "".join(f"<td>{html.escape(e)}</td>" for e in extra) + "</tr>")
        w.writerow([r.name, *("" if _value(r, d, k) is None else f"{_value(r, d, k):.6g}" for d, k in columns),
                    "" if r.train_s is None else f"{r.train_s:.1f}", r.steps or "", r.reason])
    legend = ("Best value per column in bold (lower is better for FID and KID, higher for PSNR, SSIM and "
              "segmentation scores). 'target': the domain translated into; 'source': the input domain (content kept).")
    table_md = "\n".join(md) + "\n\n" + legend + "\n" + \
        "".join(f"\n[{i}] {n}" for i, n in enumerate(notes, 1)) + ("\n" if notes else "") + \
        (f"\n{fid_note}\n" if fid_note else "")
    ckpt.atomic_write_text(table_md, out / "table.md")
    ckpt.atomic_write_text(buf.getvalue(), out / "table.csv")

    grids = write_grids(runs, out)
    plots = []
    for r in runs:
        if r.losses:
            path = out / f"losses_{r.name}.png"
            plot_losses(r.losses, path, title=f"{r.name}: training losses")
            plots.append((r.name, path.name))
    diff = differing_settings(runs)
    h = html.escape
    head_html = "".join(f"<th>{h(c)}</th>" for c in head)
    settings_html = ("<table><tr><th>option</th>" + "".join(f"<th>{h(r.name)}</th>" for r in runs) + "</tr>" +
                     "".join(f"<tr><td>{h(k)}</td>" + "".join(f"<td>{h(str(v))}</td>" for v in vals) + "</tr>"
                             for k, vals in diff.items()) + "</table>") if diff else \
        "<p>The runs share every setting.</p>"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>transfigure report: {h(', '.join(run_names))}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} td:first-child{{text-align:left}}
.note{{font-size:90%;color:#555}} img{{max-width:100%}}</style></head><body>
<h1>Runs compared: {h(', '.join(run_names))}</h1>
<h2>Metrics</h2>
<table><tr>{head_html}</tr>{''.join(html_rows)}</table>
<p class=note>{h(legend)}</p>
{''.join(f"<p class=note>[{i}] {h(n)}</p>" for i, n in enumerate(notes, 1))}
<p class=note>{h(fid_note)}</p>
<h2>Samples: the same test inputs through every run</h2>
{''.join(f"<h3>{h(d)}</h3><p class=note>columns: {h(cols)}</p><img src='{h(src)}' alt='{h(d)} samples'>"
         for d, src, cols in grids) or "<p>No translated test images (run evaluate run first).</p>"}
<h2>Training losses</h2>
{''.join(f"<figure><img src='{h(src)}' alt='{h(name)} losses'><figcaption>{h(name)}</figcaption></figure>"
         for name, src in plots) or "<p>No loss logs.</p>"}
<h2>Settings that differ</h2>
{settings_html}
<h2>Table as Markdown</h2><pre>{h(table_md)}</pre>
</body></html>
"""
    ckpt.atomic_write_text(page, out / "index.html")
    return out / "index.html"
