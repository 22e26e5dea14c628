"""Image grids and loss plots shared by training samples, the demo and reports
(what a run writes with them: runlog.py)."""
from __future__ import annotations

from pathlib import Path

import torch

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
    from torchvision.utils import make_grid  # slow to import; only grids need it

    return make_grid(tiles, nrow=len(columns), padding=2, pad_value=1.0)


def save_visuals_grid(visuals: dict[str, torch.Tensor], path: Path, max_rows: int = 8) -> None:
    save_image(visuals_grid(visuals, max_rows), path)


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

