"""`transfigure benchmark scaling`: training throughput with 1, 2, ... processes.

Each count is a real `torchrun --standalone --nproc_per_node N` job on the same
synthetic data, one thread per process, the same per-process batch; the table gives
iterations per second and images per second (the global batch is batch x N) from
the training time the run logs after the warm-up iterations, and the speed-up in
images per second over one process."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..checkpoint import atomic_write_text
from ..errors import SetupError
from ..runlog import read_loss_log
from .runs import log
from .speed import MODELS, machine


def _job(out: Path, data: Path, processes: int, model: str, size: int, batch_size: int, steps: int) -> dict:
    name = f"{processes}_processes"
    shutil.rmtree(out / "runs" / name, ignore_errors=True)
    settings = {**MODELS[model], "batch_size": batch_size}
    flags = [x for k, v in settings.items() for x in (f"--{k}", str(v))]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "-m", "transfigure", "train", "--dataroot", str(data), "--checkpoints_dir", str(out / "runs"),
               "--name", name, *flags, "--load_size", str(size), "--crop_size", str(size), "--max_iters", str(steps),
               "--num_threads", "0", "--print_freq", "1", "--device", "cpu", "--precision", "fp32", "--no_progress",
               "--display_freq", str(10 * steps), "--save_latest_freq", str(10 * steps)]
    started = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SetupError(f"the {processes}-process job failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return {"processes": processes, "records": read_loss_log(out / "runs" / name),
            "wall_s": time.perf_counter() - started}


def run_scaling(out: str | Path, model: str = "cycle_gan", size: int = 64, processes: tuple[int, ...] = (1, 2),
                batch_size: int = 1, steps: int = 12, warmup: int = 2, progress: bool = True) -> dict:
    from ..data.synthetic import make_labels2photo

    out = Path(out)
    data = out / "data"
    needed = batch_size * max(processes) * steps
    if not (data / "trainA").is_dir() or len(list((data / "trainA").iterdir())) < needed:
        shutil.rmtree(data, ignore_errors=True)
        make_labels2photo(data, size=size, n_train=needed, n_test=1, seed=0, progress=progress)
    rows = []
    for n in processes:
        log(f"training {model} at {size} px with {n} process(es), one thread each")
        job = _job(out, data, n, model, size, batch_size, steps)
        timed = [r for r in job["records"] if r["total_steps"] > warmup]
        seconds = timed[-1]["time"] - next(r for r in job["records"] if r["total_steps"] == warmup)["time"]
        its = len(timed) / seconds
        rows.append({"processes": n, "iterations_per_s": its, "images_per_s": its * batch_size * n,
                     "global_batch": batch_size * n, "job_wall_s": job["wall_s"]})
    base = rows[0]["images_per_s"]
    for row in rows:
        row["speedup"] = row["images_per_s"] / base
    results = {"model": model, "size": size, "batch_size": batch_size, "steps": steps, "warmup": warmup,
               "machine": machine(torch.device("cpu")), "cpus": os.cpu_count(), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(results, indent=2), out / "results.json")
    atomic_write_text(format_table(results), out / "table.md")
    print(format_table(results))
    return results


def format_table(results: dict) -> str:
    m = results["machine"]
    lines = [f"{results['model']} at {results['size']} px, batch {results['batch_size']} per process, one thread "
             f"per process, on {m['device']} ({results['cpus']} CPUs; flags: {', '.join(m['flags']) or 'none'}); "
             f"{results['steps'] - results['warmup']} timed iterations after {results['warmup']} of warm-up",
             "", "| processes | global batch | iterations/s | images/s | speed-up (images/s) |",
             "|---:|---:|---:|---:|---:|"]
    for r in results["rows"]:
        lines.append(f"| {r['processes']} | {r['global_batch']} | {r['iterations_per_s']:.2f} | "
                     f"{r['images_per_s']:.2f} | {r['speedup']:.2f}x |")
    return "\n".join(lines) + "\n"
