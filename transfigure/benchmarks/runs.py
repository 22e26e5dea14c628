"""What the benchmarks share: a folder that holds one benchmark (settings,
the iteration count its first run decided, timings), training runs that are
resumed when interrupted and reused when finished, one iteration count for
every method (a fixed default, or fitted to a time budget), and cached scores."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import checkpoint as ckpt
from ..config import Options, make_options

SETTINGS_FILE = "benchmark.json"
SAVE_EVERY = 250               # iterations between resumable checkpoints within a run
# Options whose change makes a stored run another experiment: it is refused, never reused.
RUN_IDENTITY = ("model", "direction", "seed", "lambda_A", "lambda_B", "lambda_GAN", "lambda_pixel", "lambda_feature",
                "lambda_identity", "lambda_L1", "lambda_content", "gan_mode", "netG", "ngf", "ndf", "norm",
                "activation", "content_net", "init_epochs", "edge_smoothing", "crop_size", "batch_size",
                "CUT_mode", "lambda_NCE", "nce_idt", "nce_layers", "flip_equivariance", "num_patches", "netF_nc",
                "no_antialias", "no_antialias_up")


def log(message: str) -> None:
    print(message, flush=True)


def open_folder(out: Path, settings: dict) -> dict:
    """Refuse a non-empty folder that is not a benchmark, or a benchmark with
    other settings; return the stored record (settings, iterations, timings)."""
    record_path = out / SETTINGS_FILE
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a folder")
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        stored = record.get("settings", {})
        diff = [f"{k}={stored.get(k)!r} (asked {v!r})" for k, v in settings.items() if stored.get(k) != v]
        if diff:
            raise FileExistsError(f"{out} holds a benchmark with other settings: {', '.join(diff)}. Rerun with "
                                  "those settings to continue it, or choose another --out.")
        return record
    if out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} is not empty and holds no benchmark ({SETTINGS_FILE}); "
                              "choose a new or empty folder (nothing was changed)")
    out.mkdir(parents=True, exist_ok=True)
    record = {"settings": settings, "iterations": None, "timing": {}, "wall_s": 0.0}
    save_record(out, record)
    return record


def save_record(out: Path, record: dict) -> None:
    ckpt.atomic_write_text(json.dumps(record, indent=2) + "\n", out / SETTINGS_FILE)


def run_options(shared: dict, method_options: dict, run_name: str, seed: int, out: Path, size: int, iterations: int,
                overrides: dict | None = None, resume: bool = False, n_train: int = 1) -> Options:
    """The options of one training run. Constant learning rate, stopped after
    `iterations` batches (every epoch holds all `n_train` training images, so a
    short budget still sees the whole dataset; the epochs never reach the decay)."""
    batches_per_epoch = math.ceil(max(1, n_train) / {**shared, **method_options, **(overrides or {})}.get("batch_size", 1))
    values = {**shared, **method_options,
              "dataroot": str(out / "data"), "name": run_name, "checkpoints_dir": str(out / "checkpoints"),
              "seed": seed, "load_size": size, "crop_size": size, "max_iters": iterations,
              "n_epochs": max(1, math.ceil(iterations / batches_per_epoch)), "n_epochs_decay": 1,
              "save_latest_freq": SAVE_EVERY,
              "save_epoch_freq": 10_000, "print_freq": 50, "continue_train": resume,
              # fp32 on every machine: the tables compare methods, not the CPU's fastest arithmetic.
              "precision": "fp32"}
    values.update(overrides or {})
    return make_options(values)


def seconds_per_iteration(opt: Options, warmup: int = 3, steps: int = 8) -> float:
    """Time a few training steps of one run's method at its batch size (nothing is written)."""
    return training_cost(opt, warmup, steps)[0]


class _PeakMemory:
    """The most memory the iterations took beyond what the process held before them:
    on CUDA the allocator's peak; on Linux CPUs the peak resident set (VmHWM, reset
    through /proc/self/clear_refs); elsewhere unknown (None)."""

    def __init__(self, device: torch.device):
        self.device = device

    @staticmethod
    def _status_kib(field: str) -> int:
        import re
        return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.base = self._status_kib("VmRSS") * 1024
        except (OSError, AttributeError):
            self.base = None

    def peak_bytes(self) -> int | None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated(self.device) - self.base
        if self.base is None:
            return None
        # The kernel's counters lag by a few pages per thread: a run that added nothing can read below 0.
        return max(0, self._status_kib("VmHWM") * 1024 - self.base)


def training_cost(opt: Options, warmup: int = 3, steps: int = 8) -> tuple[float, int | None]:
    """(seconds per training step, peak memory of the steps in bytes or None) of one run's
    method at its batch size, nothing written. The memory counts from before the first
    step, so it holds the activations, gradients and optimizer state, not the weights;
    on a CPU it is only meaningful in a fresh process (`isolated_training_costs`)."""
    from ..data.datasets import create_dataset
    from ..methods import create_method
    from ..devices import resolve_device
    from ..devices import choose_precision
    from ..train import MixedPrecision, optimize, seed_everything

    seed_everything(opt.seed, False)
    device = resolve_device(opt.device, opt.gpu_ids)
    amp = MixedPrecision(choose_precision(opt.precision, device), device)
    dataset = create_dataset(opt, "train")
    method = create_method(opt, device)
    optimizers = {name: torch.optim.Adam(params, lr=opt.lr, betas=(opt.beta1, opt.beta2))
                  for name, params in method.param_groups().items()}
    method.set_epoch(opt.epoch_count + opt.init_epochs)  # time the adversarial step, past any initialization phase
    n = opt.batch_size
    batches = [torch.utils.data.default_collate([dataset[(i * n + j) % len(dataset)] for j in range(n)])
               for i in range(warmup + steps)]
    memory = _PeakMemory(device)
    memory.start()
    for batch in batches[:warmup]:
        optimize(method, batch, optimizers, amp)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for batch in batches[warmup:]:
        optimize(method, batch, optimizers, amp)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps, memory.peak_bytes()


def _costs_in_child() -> None:
    """The measuring process: runs as JSON on stdin, one JSON line per run on stdout."""
    import sys

    request = json.loads(sys.stdin.read())
    torch.set_num_threads(request["threads"])
    runs, memory = request["runs"], request["measure"] == "memory"
    # One unmeasured step of every run first: the first use of a kernel maps its code and
    # sets up thread pools, which would count against whichever run came first.
    failed = {}
    for key, values in runs.items():
        try:
            training_cost(make_options(values), warmup=0, steps=1)
        except Exception as e:  # reported by the parent, which names the method
            failed[key] = f"{type(e).__name__}: {e}"
    for key, values in runs.items():
        if key in failed:
            answer = {"key": key, "error": failed[key]}
        else:
            seconds, peak = training_cost(make_options(values), *((1, 2) if memory else ()))
            answer = {"key": key, "value": peak if memory else seconds}
        print(json.dumps(answer), flush=True)


def _measure_in_child(runs: dict[str, Options], measure: str, env: dict) -> dict:
    import subprocess
    import sys

    request = json.dumps({"threads": torch.get_num_threads(), "measure": measure,
                          "runs": {k: o.to_dict() for k, o in runs.items()}})
    done = subprocess.run([sys.executable, "-c", "from transfigure.benchmarks.runs import _costs_in_child; "
                           "_costs_in_child()"], input=request, capture_output=True, text=True, env=env)
    found = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            answer = json.loads(line)
            found[answer["key"]] = answer
    if done.returncode != 0 or len(found) < len(runs):
        reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        found.update({k: {"key": k, "error": f"the measuring process failed: {reason}"}
                      for k in runs if k not in found})
    return found


def isolated_training_costs(runs: dict[str, Options]) -> dict[str, tuple[float, int | None] | str]:
    """(seconds per step, peak bytes) of each run, or its error message. Each quantity is
    measured in its own fresh process with this process's thread count (so no run pays for
    what this process allocated before), the runs one after the other, after one
    unmeasured step of each. For the memory, glibc is told to hand every block of 64 KiB or
    more back to the system when freed, so each run's peak starts from what the runs before
    it still hold, not from their caches; that makes allocation slow, so the time is
    measured in another process with the usual allocator."""
    import os

    seconds = _measure_in_child(runs, "time", dict(os.environ))
    peaks = _measure_in_child(runs, "memory", {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
    costs = {}
    for key in runs:
        error = seconds[key].get("error") or peaks[key].get("error")
        costs[key] = error if error else (seconds[key]["value"], peaks[key]["value"])
    return costs


def settle_iterations(out: Path, record: dict, iterations: int | None, budget_s: float | None, n_seeds: int,
                      minimum: int, measure, default: int) -> int:
    """The one iteration count of a benchmark folder: the one its first invocation
    fixed, the one given (only in a new folder), the budget divided by the time one
    iteration of every method takes (`measure()` -> {method: seconds}) when a budget is
    given, else the benchmark's fixed `default` (the same table on every machine)."""
    if iterations is None and record.get("iterations"):
        iterations = int(record["iterations"])
        log(f"Using {iterations} iterations per run, as decided by this benchmark's first run "
            "(pass --iterations to choose another count in a new --out)")
    elif iterations is not None and record.get("iterations") not in (None, iterations):
        raise FileExistsError(f"{out} holds runs of {record['iterations']} iterations; rerun without --iterations "
                              "(or with that count) to continue it, or choose another --out")
    if iterations is None and budget_s is None:
        iterations = default
        log(f"{iterations} iterations per run (the default; --budget SECONDS fits the count to this machine)")
    if iterations is None:
        log(f"Timing one training iteration of each method (budget {budget_s:.0f} s of training for "
            f"{n_seeds} seed(s))...")
        timing = measure()
        iterations = decide_iterations(budget_s, timing, n_seeds, minimum)
        estimate = sum(timing.values()) * n_seeds * iterations
        log(f"{iterations} iterations per run (about {estimate / 60:.1f} min of training in all"
            f"{'; the minimum' if iterations == minimum else ''})")
        record["timing"] = {k: round(v, 5) for k, v in timing.items()}
    record["iterations"] = iterations
    save_record(out, record)
    return iterations


def close_invocation(out: Path, record: dict, started: float, complete: bool) -> float:
    """Add this invocation's wall time to the folder's record; say how to continue when
    it was interrupted. Returns the invocation's wall time."""
    wall = time.perf_counter() - started
    record["wall_s"] = round(float(record.get("wall_s") or 0.0) + wall, 1)
    save_record(out, record)
    if not complete:
        log(f"Interrupted. Run the same command again to continue; finished runs are kept in {out / 'checkpoints'}.")
    return wall


def decide_iterations(budget_s: float, timing: dict, n_seeds: int, minimum: int) -> int:
    """One iteration count for every method: the budget divided by the time one
    iteration of every method and seed takes, at least `minimum`."""
    per_iteration = sum(timing.values()) * n_seeds
    if per_iteration <= 0:
        return minimum
    return max(minimum, int(budget_s / per_iteration + 1e-6) // 10 * 10)


@dataclass
class BenchmarkResult:
    out: Path
    rows: list                # the table's rows, methods first, then references
    iterations: int
    complete: bool            # False when a run was interrupted (rerun to continue)
    wall_s: float


@dataclass
class RunOutcome:
    status: str                     # "finished", "interrupted" or "unavailable"
    total_steps: int = 0
    train_s: float = 0.0
    trained_now: bool = False
    reason: str = ""


def train_run(opt: Options, iterations: int, progress: bool) -> RunOutcome:
    """Train one run to `iterations`, resuming a partial one and reusing a finished one."""
    from ..train import train

    latest = ckpt.state_path(ckpt.run_dir(opt))
    if latest.exists():
        state = ckpt.load_training_state(latest)
        saved = state["options"]
        different = [k for k in RUN_IDENTITY if k in saved and saved[k] != getattr(opt, k)]
        if different:
            raise ckpt.CheckpointError(f"{latest} was trained with other settings ({', '.join(different)}); "
                                       "choose another --out")
        if state["total_steps"] >= iterations:
            return RunOutcome("finished", state["total_steps"], state["elapsed_s"])
        opt = make_options({**opt.to_dict(), "continue_train": True})
    result = train(opt, progress=progress)
    status = "finished" if result.total_steps >= iterations else "interrupted"
    return RunOutcome(status, result.total_steps, result.elapsed_s, trained_now=True)


def cached_scores(folder: Path, key: dict, compute) -> dict:
    """scores.json in `folder` when it was computed for the same `key`, else compute and store it."""
    path = folder / "scores.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            return stored["scores"]
    scores = compute()
    ckpt.atomic_write_text(json.dumps({"key": key, "scores": scores}, indent=2) + "\n", path)
    return scores


def mean_spread(values: list[float]) -> tuple[float, float] | None:
    """Mean and half range (max - min) / 2 over seeds."""
    if not values:
        return None
    return float(np.mean(values)), (max(values) - min(values)) / 2


def format_duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"
