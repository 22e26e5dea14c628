"""What a training run writes for people to read, in one place: the loss log
(loss_log.jsonl), TensorBoard scalars and images, sample grids (samples/) and
the run page (index.html). Checkpoints are checkpoint.py's."""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_write_text
from .visuals import plot_losses, save_visuals_grid, visuals_grid

LOSS_LOG = "loss_log.jsonl"


def read_loss_log(run_dir: Path) -> list[dict]:
    """A run's logged losses, one record per logging window ([] before the first)."""
    path = Path(run_dir) / LOSS_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class RunLog:
    """Losses are logged as means over `print_freq` iterations: single-iteration GAN
    losses are too noisy to read. Use as a context manager around the loop."""

    def __init__(self, run_dir: Path, title: str, print_freq: int):
        self.dir, self.title, self.print_freq = Path(run_dir), title, print_freq
        self.path = self.dir / LOSS_LOG
        self.window: list[dict[str, float]] = []
        self._file = None
        self.tensorboard = None

    def trim(self, total_steps: int) -> None:
        """Drop lines written after the checkpoint a run resumes from."""
        if not self.path.exists():
            return
        lines = self.path.read_text().splitlines()
        kept = [l for l in lines if l.strip() and json.loads(l)["total_steps"] <= total_steps]
        if len(kept) != len(lines):
            atomic_write_text("".join(l + "\n" for l in kept), self.path)

    def __enter__(self) -> "RunLog":
        self._file = open(self.path, "a")
        self.tensorboard = _tensorboard_writer(self.dir / "tensorboard")
        return self

    def __exit__(self, *exc) -> bool:
        self._file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        return False

    def losses(self, losses: dict[str, float], epoch: int, epoch_step: int, total_steps: int,
               elapsed_s: float) -> None:
        self.window.append(losses)
        if total_steps % self.print_freq:
            return
        means = {k: float(np.mean([w[k] for w in self.window if k in w])) for k in self.window[-1]}
        self.window.clear()
        self._file.write(json.dumps({"epoch": epoch, "step": epoch_step, "total_steps": total_steps,
                                     "time": round(elapsed_s, 3), **means}) + "\n")
        self._file.flush()
        if self.tensorboard is not None:
            for k, v in means.items():
                self.tensorboard.add_scalar(f"loss/{k}", v, total_steps)

    def samples(self, visuals: dict[str, torch.Tensor], label: str, total_steps: int) -> None:
        """A sample grid in samples/LABEL.png, in TensorBoard, and a refreshed run page."""
        save_visuals_grid(visuals, self.dir / "samples" / f"{label}.png")
        write_run_page(self.dir, self.title)
        if self.tensorboard is not None:
            self.tensorboard.add_image("samples", (visuals_grid(visuals) + 1) / 2, total_steps)


def _tensorboard_writer(folder: Path):
    """A SummaryWriter when TensorBoard is installed (pip install 'transfigure[tensorboard]'), else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


def write_run_page(run_dir: Path, title: str) -> Path:
    """run_dir/index.html: the loss curves (losses.png, redrawn from the loss log) and
    every sample grid in samples/, newest first, like the official repo's web/index.html."""
    run_dir = Path(run_dir)
    records = read_loss_log(run_dir)
    if records:
        plot_losses(records, run_dir / "losses.png", title=f"{title}: training losses")
    samples = sorted((run_dir / "samples").glob("*.png"), reverse=True)
    h = html.escape
    body = "".join(f"<h3>{h(p.stem)}</h3><img src='samples/{h(p.name)}' alt='{h(p.stem)}'>" for p in samples)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="60"><title>{h(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}} img{{max-width:100%}}</style></head><body>
<h1>{h(title)}</h1>
{"<img src='losses.png' alt='training losses'>" if records else "<p>No losses logged yet.</p>"}
<h2>Samples (newest first)</h2>
{body or "<p>No samples yet.</p>"}
</body></html>
"""
    atomic_write_text(page, run_dir / "index.html")
    return run_dir / "index.html"
