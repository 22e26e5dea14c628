"""The one generic training loop: optimizers, backward passes, schedules,
devices, checkpoints, logging and resume. It knows nothing of a method's
losses: `optimize` takes the losses `method.losses` yields for each optimizer,
does the backward pass and the step, and the loop records what came back."""
from __future__ import annotations

import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from . import checkpoint as ckpt
from .config import Options
from .data.datasets import create_dataset
from .data.images import ImageLoadError
from .devices import Precision, choose_precision, report_choice, resolve_device
from .methods import Method, create_method
from .runlog import RunLog


def seed_everything(seed: int, deterministic: bool) -> None:
    import random
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


class EpochSampler(Sampler):
    """The epoch's order depends only on (seed, epoch), so a resumed run can
    skip exactly the samples it had already seen."""

    def __init__(self, n: int, seed: int, epoch: int, shuffle: bool, start: int = 0):
        self.n, self.seed, self.epoch, self.shuffle, self.start = n, seed, epoch, shuffle, start

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self):
        return iter(self._order()[self.start:])

    def __len__(self) -> int:
        return max(0, self.n - self.start)


def make_scheduler(opt: Options, optimizer: torch.optim.Optimizer):
    total = opt.n_epochs + opt.n_epochs_decay
    if opt.lr_policy == "linear":
        # Constant for n_epochs, then linearly to zero over n_epochs_decay (official rule).
        def rule(epoch_index: int) -> float:
            return 1.0 - max(0, epoch_index + 1 - opt.n_epochs) / float(opt.n_epochs_decay + 1)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, rule)
    if opt.lr_policy == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=opt.lr_decay_iters, gamma=0.1)
    if opt.lr_policy == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=0)
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.2, threshold=0.01,
                                                      patience=5)


def _worker_init(worker_id: int) -> None:
    """Data workers share the terminal's process group: let only the main
    process react to Ctrl-C, so it can finish the iteration and save."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _LoadErrorsAsItems(torch.utils.data.Dataset):
    """A dataset whose unreadable images come back as the error, not raised: PyTorch
    re-raises a loader worker's exception as a RuntimeError carrying its traceback."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except ImageLoadError as e:
            return e


def _collate_or_error(items: list):
    return next((x for x in items if isinstance(x, ImageLoadError)), None) or torch.utils.data.default_collate(items)


def _unreadable_training_image(e: ImageLoadError) -> ImageLoadError:
    return ImageLoadError(e.path, f"{e.reason}; replace or remove the file, or pass --skip_bad_images to train "
                                  "without the images that cannot be read")


class MixedPrecision:
    """Autocast for the forward passes and, for fp16, one GradScaler that scales every
    optimizer's loss and is updated once per iteration. fp32 makes each a no-op."""

    def __init__(self, precision: Precision, device: torch.device):
        self.precision, self.device = precision, device
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision.name == "fp16")

    def autocast(self):
        return self.precision.autocast(self.device)


FP32 = MixedPrecision(Precision("fp32", "default"), torch.device("cpu"))


def optimize(method: Method, batch: dict, optimizers: dict,
             amp: MixedPrecision = FP32) -> dict[str, dict[str, float]]:
    """One training iteration: for each phase of `method.losses` (its forward pass under
    `amp`'s autocast), the backward pass of the sum of its losses and the step of its
    optimizer. Returns each optimizer's losses."""
    losses = {}
    phases = method.losses(batch)
    while True:
        with amp.autocast():
            phase = next(phases, None)
        if phase is None:
            break
        name, terms = phase
        optimizer = optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        amp.scaler.scale(sum(v.float() for v in terms.values())).backward()
        amp.scaler.step(optimizer)
        losses[name] = {k: float(v.detach()) for k, v in terms.items()}
    amp.scaler.update()
    return losses


@dataclass
class TrainResult:
    """What a training run did; the caller decides what to tell the user (`describe`)."""
    run_dir: Path
    status: str  # "finished", "paused" (--max_iters reached) or "interrupted"
    epoch: int
    total_steps: int
    elapsed_s: float
    resume_command: str = ""  # how to go on from the saved checkpoint, when not finished

    def describe(self) -> str:
        if self.status == "finished":
            return f"Finished {self.total_steps} iterations in {self.elapsed_s:.0f} s; checkpoints in {self.run_dir}"
        return (f"Saved {ckpt.state_path(self.run_dir)} at iteration {self.total_steps} ({self.status}). "
                f"Resume with: {self.resume_command}")


class _StopRequest:
    """First Ctrl-C asks the loop to stop after the current iteration and save;
    a second one stops at once (the previous checkpoint is still intact)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not in the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("Stopping after this iteration and saving a checkpoint (Ctrl-C again to stop now)...")

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


class Trainer:
    def __init__(self, opt: Options, progress: bool = True):
        self.opt = opt
        self.progress = progress
        self.device = resolve_device(opt.device, opt.gpu_ids)
        self.amp = MixedPrecision(choose_precision(opt.precision, self.device), self.device)
        report_choice(f"Training on {self.device.type}, {self.amp.precision.describe()}", self.amp.precision,
                      progress)
        self.dir = ckpt.run_dir(opt)
        seed_everything(opt.seed, opt.deterministic)

        resume_state = self._resume_state()
        self.method = create_method(opt, self.device)  # first: it refuses options it cannot train
        self.dataset = create_dataset(opt, "train")
        skipped = getattr(self.dataset, "skipped_files", [])
        if skipped:
            print(f"Skipped {len(skipped)} unreadable image(s), e.g. {skipped[0][0]}: {skipped[0][1]}")
        self.sample_batch = self._sample_batch()
        self.optimizers = {name: torch.optim.Adam(params, lr=opt.lr, betas=(opt.beta1, opt.beta2))
                           for name, params in self.method.param_groups().items()}
        self.schedulers = {name: make_scheduler(opt, o) for name, o in self.optimizers.items()}
        self.epoch, self.epoch_step, self.total_steps, self.elapsed_s = opt.epoch_count, 0, 0, 0.0
        for _ in range(opt.epoch_count - 1):  # official --epoch_count: start part-way along the schedule
            self._step_schedulers(None)
        if resume_state is not None:
            self._restore(resume_state)
        self.dir.mkdir(parents=True, exist_ok=True)
        ckpt.write_options(opt, self.dir)
        self.log = RunLog(self.dir, opt.name, opt.print_freq)
        self.log.trim(self.total_steps)

    # --- state -------------------------------------------------------------
    def _resume_state(self) -> dict | None:
        path = ckpt.state_path(self.dir, self.opt.epoch)
        if self.opt.continue_train:
            state = ckpt.load_training_state(path)
            ckpt.check_compatible(state["options"], self.opt, path)
            return state
        if ckpt.state_path(self.dir).exists():
            raise ckpt.CheckpointError(
                f"{self.dir} already holds a training run. Resume it with --continue_train, "
                "or choose another --name (nothing was changed).")
        return None

    def _restore(self, state: dict) -> None:
        for name, sd in state["nets"].items():
            self.method.nets[name].load_state_dict(sd)
        for name, sd in state["optimizers"].items():
            self.optimizers[name].load_state_dict(sd)
        for name, sd in state["schedulers"].items():
            self.schedulers[name].load_state_dict(sd)
        self.method.load_state_dict(state["method"])
        if state.get("grad_scaler"):
            self.amp.scaler.load_state_dict(state["grad_scaler"])
        ckpt.restore_rng(state["rng"])
        self.epoch, self.epoch_step = state["epoch"], state["epoch_step"]
        self.total_steps, self.elapsed_s = state["total_steps"], state["elapsed_s"]
        print(f"Resuming {self.dir} at epoch {self.epoch}, iteration {self.total_steps}")

    def state(self) -> dict:
        return {
            "format": ckpt.FORMAT, "version": ckpt.FORMAT_VERSION,
            "options": self.opt.to_dict(),
            "epoch": self.epoch, "epoch_step": self.epoch_step,
            "total_steps": self.total_steps, "elapsed_s": self.elapsed_s,
            "nets": {k: v.state_dict() for k, v in self.method.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "method": self.method.state_dict(),
            "rng": ckpt.capture_rng(),
            "grad_scaler": self.amp.scaler.state_dict(),  # empty unless fp16
        }

    def save(self, label: str | int = "latest") -> None:
        ckpt.atomic_torch_save(self.state(), ckpt.state_path(self.dir, label))
        for name in self.method.generators:
            ckpt.save_generator(self.method.nets[name].state_dict(), self.dir / f"{label}_net_{name}")

    def _step_schedulers(self, metric: float | None) -> None:
        # An optimizer idle for a whole epoch (a discriminator during an initialization phase)
        # makes PyTorch warn about the call order; the schedule is still right.
        for s in self.schedulers.values():
            if isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau):
                if metric is not None:
                    s.step(metric)
            else:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
                    s.step()

    # --- loop --------------------------------------------------------------
    def _loader(self) -> DataLoader:
        self.dataset.set_epoch(self.epoch)
        sampler = EpochSampler(len(self.dataset), self.opt.seed, self.epoch, shuffle=not self.opt.serial_batches,
                               start=self.epoch_step * self.opt.batch_size)
        return DataLoader(_LoadErrorsAsItems(self.dataset), batch_size=self.opt.batch_size, sampler=sampler,
                          num_workers=self.opt.num_threads, pin_memory=self.device.type == "cuda",
                          worker_init_fn=_worker_init if self.opt.num_threads else None, drop_last=False,
                          collate_fn=_collate_or_error)

    def _sample_batch(self) -> dict:
        """A fixed batch for sample grids: the first images as epoch 0 augments them
        (only the first when sizes differ, e.g. with --preprocess none)."""
        self.dataset.set_epoch(0)
        try:
            items = [self.dataset[i] for i in range(min(4, len(self.dataset)))]
        except ImageLoadError as e:
            raise _unreadable_training_image(e) from None
        if any(item["A"].shape != items[0]["A"].shape or item["B"].shape != items[0]["B"].shape for item in items):
            items = items[:1]
        return torch.utils.data.default_collate(items)

    def _write_samples(self, label: str) -> None:
        for net in self.method.nets.values():
            net.eval()
        visuals = self.method.visuals(self.sample_batch)
        for net in self.method.nets.values():
            net.train()
        self.log.samples(visuals, label, self.total_steps)

    def run(self) -> TrainResult:
        status = "finished"
        with _StopRequest() as stop, self.log:
            while status == "finished" and self.epoch <= self.last_epoch:
                generator_losses: list[float] = []
                status = self._run_epoch(stop, generator_losses)
                if status == "finished":
                    self._end_epoch(generator_losses)
            if status != "finished":
                self.save("latest")
        o = self.opt
        return TrainResult(self.dir, status, self.epoch, self.total_steps, self.elapsed_s,
                           f"transfigure train --name {o.name} --checkpoints_dir {o.checkpoints_dir} --continue_train")

    @property
    def last_epoch(self) -> int:
        return self.opt.n_epochs + self.opt.n_epochs_decay

    def _run_epoch(self, stop: _StopRequest, generator_losses: list[float]) -> str:
        """Train to the end of the epoch ("finished"), or until --max_iters ("paused")
        or Ctrl-C ("interrupted"); the generators' summed loss of each iteration is
        appended to `generator_losses`."""
        o = self.opt
        self.method.set_epoch(self.epoch)
        loader = self._loader()
        with tqdm(loader, total=len(loader), disable=not self.progress, leave=False, mininterval=0.5,
                  desc=f"epoch {self.epoch}/{self.last_epoch}", unit="it", dynamic_ncols=True) as bar:
            for batch in bar:
                if isinstance(batch, ImageLoadError):
                    raise _unreadable_training_image(batch)
                started = time.perf_counter()
                losses = optimize(self.method, batch, self.optimizers, self.amp)
                self.elapsed_s += time.perf_counter() - started
                flat = {k: v for phase in losses.values() for k, v in phase.items()}
                if not all(np.isfinite(v) for v in flat.values()):
                    raise FloatingPointError(
                        f"non-finite loss at iteration {self.total_steps + 1}: {flat}. The last good "
                        f"checkpoint is {ckpt.state_path(self.dir)}; try a lower --lr.")
                self.epoch_step += 1
                self.total_steps += 1
                generator_losses.append(sum(losses.get(self.method.generator_optimizer, {}).values()))
                bar.set_postfix({k: f"{v:.3f}" for k, v in flat.items()}, refresh=False)
                self.log.losses(flat, self.epoch, self.epoch_step, self.total_steps, self.elapsed_s)
                if o.display_freq and self.total_steps % o.display_freq == 0:
                    self._write_samples(f"iter_{self.total_steps:07d}")
                if self.total_steps % o.save_latest_freq == 0:
                    self.save("latest")
                if o.max_iters and self.total_steps >= o.max_iters:
                    return "paused"
                if stop.requested:
                    return "interrupted"
        return "finished"

    def _end_epoch(self, generator_losses: list[float]) -> None:
        self._step_schedulers(float(np.mean(generator_losses)) if generator_losses else None)
        finished = self.epoch
        self.epoch, self.epoch_step = self.epoch + 1, 0
        if not self.opt.display_freq:
            self._write_samples(f"epoch_{finished:03d}")
        lr = self.optimizers[self.method.generator_optimizer].param_groups[0]["lr"]
        tqdm.write(f"epoch {finished}/{self.last_epoch} done: {self.total_steps} iterations, "
                   f"{self.elapsed_s:.0f} s training, lr {lr:.2e}")
        if finished % self.opt.save_epoch_freq == 0 or finished == self.last_epoch:
            self.save(finished)
        self.save("latest")


def train(opt: Options, progress: bool = True) -> TrainResult:
    return Trainer(opt, progress=progress).run()
