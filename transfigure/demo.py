"""`transfigure demo`: synthetic data -> small CycleGAN -> translations -> a page.

The synthetic labels<->photo task has ground truth pairs, so the page can
show that the method learned: photo->label scores of the trained generator
beside those of the same generator untrained and of the identity mapping.
"""
from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .config import make_options
from .data.images import image_to_tensor, list_images, load_image
from .data.synthetic import load_palette, make_labels2photo
from .evaluate.segmentation import score_label_folders
from .methods import create_method
from .nets import run_padded
from .train import TrainResult, seed_everything, train
from .translate import LoadedGenerator, load_generator, translate_files
from .runlog import read_loss_log
from .runner import RunOptions
from .visuals import plot_losses, save_visuals_grid

GRID_ROWS = 8


def _score_generator(generator: LoadedGenerator, photos: list[Path], labels_dir: Path, out_dir: Path,
                     colors, progress: bool) -> dict:
    translate_files(generator, photos, out_dir, RunOptions(), batch_size=16, overwrite=True, progress=progress)
    return score_label_folders(out_dir, labels_dir, colors)


@torch.inference_mode()
def _write_grids(g_a: LoadedGenerator, g_b: LoadedGenerator, labels: list[Path], photos: list[Path],
                 out_dir: Path) -> list[tuple[str, str, list[str]]]:
    """Grids of the first test images; returns (title, file name, column names) per grid."""
    real_a = torch.stack([image_to_tensor(load_image(p, g_a.input_nc)) for p in labels[:GRID_ROWS]])
    real_b = torch.stack([image_to_tensor(load_image(p, g_b.input_nc)) for p in photos[:GRID_ROWS]])
    fake_b = run_padded(g_a.net, real_a)
    fake_a = run_padded(g_b.net, real_b)
    grids = [
        ("labels -> photo -> labels", "grid_AtoB.png",
         {"labels (input)": real_a, "photo (translated)": fake_b,
          "labels (reconstructed)": run_padded(g_b.net, fake_b)}),
        ("photo -> labels -> photo", "grid_BtoA.png",
         {"photo (input)": real_b, "labels (translated)": fake_a,
          "photo (reconstructed)": run_padded(g_a.net, fake_a), "labels (ground truth)": real_a}),
    ]
    for _, filename, visuals in grids:
        save_visuals_grid(visuals, out_dir / filename, max_rows=GRID_ROWS)
    return [(title, filename, list(visuals)) for title, filename, visuals in grids]


def _page(scores: dict, grids: list, result, opt, n_train: int, n_test: int) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{s['pixel_acc']:.3f}</td><td>{s['class_acc']:.3f}</td>"
        f"<td><b>{s['mean_iou']:.3f}</b></td></tr>"
        for label, s in scores.items())
    figures = "".join(
        f"<h2>{html.escape(title)}</h2><p>columns: {html.escape(' | '.join(columns))}</p>"
        f"<img src='{filename}' alt='{html.escape(title)}'>"
        for title, filename, columns in grids)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>transfigure demo: CycleGAN on synthetic labels &lt;-&gt; photos</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}} td:first-child{{text-align:left}}
img{{image-rendering:pixelated;max-width:100%}}</style></head><body>
<h1>CycleGAN on the synthetic labels &lt;-&gt; photos task</h1>
<p>{n_train} unpaired training images per domain, {n_test} test pairs, {opt.crop_size}x{opt.crop_size} px;
generator {html.escape(opt.netG)} (ngf {opt.ngf}), PatchGAN (ndf {opt.ndf}), {html.escape(opt.gan_mode)} loss;
{result.total_steps} iterations in {result.elapsed_s:.0f} s of training.</p>
<h2>photo -&gt; labels scores on the test set</h2>
<p>Each output pixel is mapped to the nearest label color and compared with the ground-truth label map.
The identity mapping (the photo itself, snapped to label colors) is the floor.</p>
<table><tr><th>generator</th><th>pixel acc</th><th>class acc</th><th>mean IoU</th></tr>{rows}</table>
{figures}
<h2>training losses</h2><img src="losses.png" alt="loss curves">
</body></html>
"""


def run_demo(dataroot: str = "datasets/demo_labels2photo", name: str = "demo", checkpoints_dir: str = "checkpoints",
             results_dir: str = "results/demo", n_train: int = 1000, n_test: int = 100, progress: bool = True,
             overrides: dict | None = None) -> Path | None:
    """Returns the page's path, or None when training was interrupted (rerun to resume)."""
    data = Path(dataroot)
    if (data / "palette.json").is_file():
        print(f"Using the synthetic dataset in {data}")
    else:
        print(f"Writing the synthetic dataset to {data}")
        make_labels2photo(data, size=64, n_train=n_train, n_test=n_test, seed=0, progress=progress)
    names, colors = load_palette(data)

    opt_values = {"config": "demo", "dataroot": str(data), "name": name, "checkpoints_dir": checkpoints_dir,
                  **(overrides or {})}
    opt = make_options(opt_values)
    run = ckpt.run_dir(opt)
    latest = ckpt.state_path(run)
    last_epoch = opt.n_epochs + opt.n_epochs_decay
    state = ckpt.load_training_state(latest) if latest.exists() else None
    if state is not None and state["epoch"] > last_epoch:
        print(f"Reusing the finished demo run in {run} (delete that folder to train again)")
        result = TrainResult(run, "finished", state["epoch"], state["total_steps"], state["elapsed_s"])
    else:
        if state is not None:
            opt = make_options({**opt_values, "continue_train": True})
        print(f"Training a small CycleGAN ({opt.netG}, ngf {opt.ngf}) for {last_epoch} epochs on the CPU...")
        result = train(opt, progress=progress)
        if result.status != "finished":
            return None
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)

    labels, photos = list_images(data / "testA"), list_images(data / "testB")
    g_a = load_generator(name=name, checkpoints_dir=checkpoints_dir, direction="AtoB")
    g_b = load_generator(name=name, checkpoints_dir=checkpoints_dir, direction="BtoA")
    # The fastest path this machine has (--backend/--precision auto), said once.
    translate_files(g_a, labels, out / "label2photo", RunOptions(), batch_size=16, overwrite=True, progress=progress,
                    announce=True)
    scores = {"trained CycleGAN G_B": _score_generator(g_b, photos, data / "testA", out / "photo2label", colors,
                                                       progress)}
    seed_everything(opt.seed, deterministic=False)
    untrained = create_method(opt, torch.device("cpu")).translator("BtoA").eval()
    scores["same generator, untrained"] = _score_generator(
        LoadedGenerator(untrained, opt.output_nc, opt.input_nc, "untrained"), photos, data / "testA",
        out / "untrained_photo2label", colors, progress)
    shutil.rmtree(out / "untrained_photo2label")  # only its score matters
    scores["identity mapping (floor)"] = score_label_folders(data / "testB", data / "testA", colors)

    grids = _write_grids(g_a, g_b, labels, photos, out)
    plot_losses(read_loss_log(run), out / "losses.png", title="CycleGAN demo losses")
    metrics = {"photo2label": scores, "iterations": result.total_steps, "train_seconds": result.elapsed_s,
               "classes": names}
    ckpt.atomic_write_text(json.dumps(metrics, indent=2, default=float), out / "metrics.json")
    page = out / "index.html"
    ckpt.atomic_write_text(_page(scores, grids, result, opt, n_train, n_test), page)
    for label, s in scores.items():
        print(f"photo->labels mean IoU, {label}: {s['mean_iou']:.3f}")
    return page
