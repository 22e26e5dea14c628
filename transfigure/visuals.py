"""Image grids and loss plots shared by training samples, the demo and reports."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torchvision.utils import make_grid

from .data.images import save_image


def visuals_grid(visuals: dict[str, torch.Tensor], max_rows: int = 8) -> torch.Tensor:
    """One row per sample, one column per visual (e.g. real_A | fake_B | rec_A)."""
    columns = [v[:max_rows].detach().float().cpu() for v in visuals.values()]
    columns = [c.expand(-1, 3, -1, -1) if c.shape[1] == 1 else c for c in columns]
    height = max(c.shape[2] for c in columns)
    width = max(c.shape[3] for c in columns)
    columns = [torch.nn.functional.pad(c, (0, width - c.shape[3], 0, height - c.shape[2]), value=-1)
               for c in columns]
    tiles = torch.stack(columns, 1).flatten(0, 1)  # row-major: sample, then visual
    return make_grid(tiles, nrow=len(columns), padding=2, pad_value=1.0)


def save_visuals_grid(visuals: dict[str, torch.Tensor], path: Path, max_rows: int = 8) -> None:
    save_image(visuals_grid(visuals, max_rows), path)


def read_loss_log(path: Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_losses(records: list[dict], path: Path, title: str = "training losses") -> None:
    """Loss curves against iterations, one line per loss term."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in records[0] if k not in ("epoch", "step", "total_steps", "time")] if records else []
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    steps = [r["total_steps"] for r in records]
    for name in names:
        ax.plot(steps, [r.get(name) for r in records], label=name, linewidth=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(title)
    if names:
        ax.legend(ncol=4, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def write_run_page(run_dir: Path, title: str) -> Path:
    """run_dir/index.html: the loss curves (losses.png, redrawn from loss_log.jsonl) and
    every sample grid in samples/, newest first, like the official repo's web/index.html."""
    import html

    from .checkpoint import atomic_write_text

    run_dir = Path(run_dir)
    records = read_loss_log(run_dir / "loss_log.jsonl")
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
