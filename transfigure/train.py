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
from .errors import TransfigureError
from . import distributed
from .devices import Precision, choose_precision, report_choice, resolve_device
from .distributed import SINGLE, World
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
    skip exactly the samples it had already seen.

    With several processes the order is the same, cut into global batches of
    batch_size x world size; each process takes its slice of every global batch,
    so the processes together see what one process with the global batch would.
    The last global batch of an epoch is filled up with the epoch's first images
    (as torch's DistributedSampler does), so every process runs as many iterations."""

    def __init__(self, n: int, seed: int, epoch: int, shuffle: bool, start: int = 0,
                 batch_size: int = 1, world: World = SINGLE):
        self.n, self.seed, self.epoch, self.shuffle, self.start = n, seed, epoch, shuffle, start
        self.batch_size, self.world = batch_size, world

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def _mine(self) -> list[int]:
        order = self._order()
        if not self.world.active:
            return order[self.start:]
        step = self.batch_size * self.world.size
        padded = order + order[:(-len(order)) % step]
        mine = []
        for first in range(self.start, len(padded), step):
            mine += padded[first + self.world.rank * self.batch_size:][:self.batch_size]
        return mine

    def __iter__(self):
        return iter(self._mine())

    def __len__(self) -> int:
        return len(self._mine())


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


def make_optimizers(opt: Options, method: Method, epochs_done: int = 0) -> tuple[dict, dict]:
    """Adam for each of the method's optimizers, and its schedule placed `epochs_done` epochs
    along from the official --epoch_count."""
    optimizers = {name: torch.optim.Adam(params, lr=opt.lr, betas=(opt.beta1, opt.beta2))
                  for name, params in method.param_groups().items()}
    schedulers = {name: make_scheduler(opt, o) for name, o in optimizers.items()}
    for _ in range(opt.epoch_count - 1 + epochs_done):
        step_schedulers(schedulers, None)
    return optimizers, schedulers


def step_schedulers(schedulers: dict, metric: float | None) -> None:
    """One epoch of every schedule; a plateau schedule only with a `metric`."""
    # An optimizer idle for a whole epoch (a discriminator during an initialization phase)
    # makes PyTorch warn about the call order; the schedule is still right.
    for s in schedulers.values():
        if isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if metric is not None:
                s.step(metric)
        else:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
                s.step()


def write_checkpoint(run_dir: Path, label: str | int, state: dict, method: Method) -> None:
    """The training state, and each generator on its own for translate and export."""
    ckpt.atomic_torch_save(state, ckpt.state_path(run_dir, label))
    for name in method.generators:
        ckpt.save_generator(method.nets[name].state_dict(), run_dir / f"{label}_net_{name}")


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
             amp: MixedPrecision = FP32, world: World = SINGLE) -> dict[str, dict[str, float]]:
    """One training iteration: for each phase of `method.losses` (its forward pass under
    `amp`'s autocast), the backward pass of the sum of its losses, the gradients averaged
    over the processes of `world`, and the step of its optimizer. Returns each
    optimizer's losses (this process's)."""
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
        if world.active:
            distributed.average_gradients([p for group in optimizer.param_groups for p in group["params"]], world)
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
    """First Ctrl-C (or SIGTERM) asks the loop to stop after the current iteration and
    save; a second one stops at once (the previous checkpoint is still intact). Under
    torchrun a process gets the terminal's Ctrl-C and then the launcher's own signal,
    so there every signal only asks: torchrun kills what is left after 30 s."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, world: World = SINGLE):
        self.requested = False
        self.world = world
        self._previous = {}

    def __enter__(self):
        try:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:  # not in the main thread: leave signals alone
            self._previous = {}
        return self

    def _handle(self, signum, frame):
        if self.requested:
            if self.world.active:
                return
            raise KeyboardInterrupt
        self.requested = True
        if self.world.is_main:
            tqdm.write("Stopping after this iteration and saving a checkpoint (Ctrl-C again to stop now)...")

    def __exit__(self, *exc):
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        return False


class _SilentLog:
    """What processes other than rank 0 log: nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def trim(self, *args):
        pass

    def losses(self, *args):
        pass


class Trainer:
    def __init__(self, opt: Options, progress: bool = True, world: World | None = None):
        self.opt = opt
        self.world = distributed.world_from_environment() if world is None else world
        self.progress = progress and self.world.is_main
        self.device = distributed.start(self.world, resolve_device(opt.device, opt.gpu_ids), opt.dist_backend,
                                        opt.dist_timeout)
        self.amp = MixedPrecision(choose_precision(opt.precision, self.device), self.device)
        if self.world.is_main:
            where = f" in {self.world.size} processes" if self.world.active else ""
            report_choice(f"Training on {self.device.type}{where}, {self.amp.precision.describe()}",
                          self.amp.precision, progress)
        self.dir = ckpt.run_dir(opt)
        seed_everything(opt.seed, opt.deterministic)

        resume_state = self._resume_state()
        self.method = create_method(opt, self.device)  # first: it refuses options it cannot train
        if self.world.active:
            for net in self.method.nets.values():
                if opt.norm == "batch" and opt.sync_bn:
                    distributed.convert_batch_norm(net)
                distributed.broadcast_module(net, self.world)
            # The same weights everywhere; from here each process draws its own randomness.
            if self.world.rank:
                seed_everything(opt.seed + 7919 * self.world.rank, opt.deterministic)
                self.method.seed_streams(opt.seed + 7919 * self.world.rank)
        self.dataset = create_dataset(opt, "train")
        skipped = getattr(self.dataset, "skipped_files", [])
        if skipped and self.world.is_main:
            print(f"Skipped {len(skipped)} unreadable image(s), e.g. {skipped[0][0]}: {skipped[0][1]}")
        self.sample_batch = self._sample_batch()
        self.optimizers, self.schedulers = make_optimizers(opt, self.method)
        self.epoch, self.epoch_step, self.total_steps, self.elapsed_s = opt.epoch_count, 0, 0, 0.0
        self.epoch_samples = 0  # of this epoch's order, taken by all processes together
        if resume_state is not None:
            self._restore(resume_state)
        if self.world.is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
            ckpt.write_options(opt, self.dir)
        self.log = RunLog(self.dir, opt.name, opt.print_freq) if self.world.is_main else _SilentLog()
        self.log.trim(self.total_steps)

    # --- state -------------------------------------------------------------
    def _resume_state(self) -> dict | None:
        """Rank 0 reads the checkpoint and hands it (or its error) to every process."""
        outcome = None
        if self.world.is_main:
            try:
                outcome = (self._read_resume_state(), None)
            except TransfigureError as e:
                outcome = (None, e)
        state, error = distributed.broadcast_object(outcome, self.world)
        if error is not None:
            raise error
        return state

    def _read_resume_state(self) -> dict | None:
        path = ckpt.state_path(self.dir, self.opt.epoch)
        restarted = distributed.restarted_by_launcher() and path.exists()
        if self.opt.continue_train or restarted:
            if restarted and not self.opt.continue_train:
                print(f"torchrun restarted the job: resuming from {path}")
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
        if state.get("grad_scaler"):
            self.amp.scaler.load_state_dict(state["grad_scaler"])
        # Each process's own image pools and random state; a checkpoint from one process has rank 0's only.
        ranks = state.get("ranks") or [{"method": state["method"], "rng": state["rng"]}]
        if self.world.rank < len(ranks):
            self.method.load_state_dict(ranks[self.world.rank]["method"])
            ckpt.restore_rng(ranks[self.world.rank]["rng"])
        self.epoch, self.epoch_step = state["epoch"], state["epoch_step"]
        self.epoch_samples = state.get("epoch_samples", self.epoch_step * state["options"]["batch_size"])
        self.total_steps, self.elapsed_s = state["total_steps"], state["elapsed_s"]
        if self.world.is_main:
            print(f"Resuming {self.dir} at epoch {self.epoch}, iteration {self.total_steps}")
            if len(ranks) != self.world.size:
                saved_batch = state["options"]["batch_size"] * len(ranks)
                print(f"The checkpoint was written by {len(ranks)} process(es), this job has {self.world.size}: the "
                      f"global batch goes from {saved_batch} to {self.opt.batch_size * self.world.size}, the rest of "
                      "the epoch is cut into batches differently, and processes without a saved image pool and "
                      "random state start afresh (the weights, optimizers and schedules carry over).")

    def state(self) -> dict:
        """The checkpoint; every process must call it (it gathers each one's pools and RNG)."""
        ranks = distributed.gather({"method": self.method.state_dict(), "rng": ckpt.capture_rng()}, self.world)
        return self.checkpoint(self.opt, self.method, self.optimizers, self.schedulers, self.epoch, self.epoch_step,
                               self.epoch_samples, self.total_steps, self.elapsed_s, ranks,
                               self.amp.scaler.state_dict())

    @staticmethod
    def checkpoint(opt: Options, method: Method, optimizers: dict, schedulers: dict, epoch: int,
                   epoch_step: int = 0, epoch_samples: int = 0, total_steps: int = 0, elapsed_s: float = 0.0,
                   ranks: list | None = None, grad_scaler: dict | None = None) -> dict:
        """What a training checkpoint holds (`ranks`: each process's pools and RNG; one
        process's when None). Also written by `transfigure import`."""
        ranks = ranks or [{"method": method.state_dict(), "rng": ckpt.capture_rng()}]
        return {
            "format": ckpt.FORMAT, "version": ckpt.FORMAT_VERSION,
            "options": opt.to_dict(),
            "epoch": epoch, "epoch_step": epoch_step, "epoch_samples": epoch_samples,
            "total_steps": total_steps, "elapsed_s": elapsed_s,
            "nets": {k: v.state_dict() for k, v in method.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in schedulers.items()},
            "method": ranks[0]["method"],
            "rng": ranks[0]["rng"],
            "ranks": ranks if len(ranks) > 1 else None,
            "grad_scaler": grad_scaler or {},  # empty unless fp16
        }

    def save(self, label: str | int = "latest") -> None:
        """Every process calls it; rank 0 writes."""
        state = self.state()
        if self.world.is_main:
            write_checkpoint(self.dir, label, state, self.method)

    # --- loop --------------------------------------------------------------
    def _loader(self) -> DataLoader:
        self.dataset.set_epoch(self.epoch)
        sampler = EpochSampler(len(self.dataset), self.opt.seed, self.epoch, shuffle=not self.opt.serial_batches,
                               start=self.epoch_samples,
                               batch_size=self.opt.batch_size, world=self.world)
        return DataLoader(_LoadErrorsAsItems(self.dataset), batch_size=self.opt.batch_size, sampler=sampler,
                          num_workers=self.opt.num_threads, pin_memory=self.device.type == "cuda",
                          worker_init_fn=_worker_init if self.opt.num_threads else None, drop_last=False,
                          collate_fn=_collate_or_error,
                          # Its own generator: each new loader would otherwise take a draw from the global RNG
                          # (for worker seeds), so a resumed run, which makes one more, would drift from an
                          # uninterrupted one wherever randomness follows (dropout, pools).
                          generator=torch.Generator().manual_seed(self.opt.seed * 1_000_003 + self.epoch))

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
        if not self.world.is_main:
            return
        for net in self.method.nets.values():
            net.eval()
        visuals = self.method.visuals(self.sample_batch)
        for net in self.method.nets.values():
            net.train()
        self.log.samples(visuals, label, self.total_steps)

    def run(self) -> TrainResult:
        status = "finished"
        with _StopRequest(self.world) as stop, self.log:
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
                losses = optimize(self.method, batch, self.optimizers, self.amp, self.world)
                self.elapsed_s += time.perf_counter() - started
                flat = {k: v for phase in losses.values() for k, v in phase.items()}
                # One all-reduce: the same losses (schedules, plateau) and the same decision to stop everywhere.
                means, stopping = distributed.mean_and_any(list(flat.values()), stop.requested, self.world)
                flat = dict(zip(flat, means))
                losses = {name: {k: flat[k] for k in phase} for name, phase in losses.items()}
                if not all(np.isfinite(v) for v in flat.values()):
                    raise FloatingPointError(
                        f"non-finite loss at iteration {self.total_steps + 1}: {flat}. The last good "
                        f"checkpoint is {ckpt.state_path(self.dir)}; try a lower --lr.")
                self.epoch_step += 1
                self.epoch_samples += self.opt.batch_size * self.world.size
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
                if stopping:
                    return "interrupted"
        return "finished"

    def _end_epoch(self, generator_losses: list[float]) -> None:
        step_schedulers(self.schedulers, float(np.mean(generator_losses)) if generator_losses else None)
        finished = self.epoch
        self.epoch, self.epoch_step, self.epoch_samples = self.epoch + 1, 0, 0
        if not self.opt.display_freq:
            self._write_samples(f"epoch_{finished:03d}")
        lr = self.optimizers[self.method.generator_optimizer].param_groups[0]["lr"]
        if self.world.is_main:
            tqdm.write(f"epoch {finished}/{self.last_epoch} done: {self.total_steps} iterations, "
                       f"{self.elapsed_s:.0f} s training, lr {lr:.2e}")
        if finished % self.opt.save_epoch_freq == 0 or finished == self.last_epoch:
            self.save(finished)
        self.save("latest")


def train(opt: Options, progress: bool = True) -> TrainResult:
    """Train in this process, or as one process of a torchrun job (see distributed.py)."""
    world = distributed.world_from_environment()
    try:
        return Trainer(opt, progress=progress, world=world).run()
    except Exception as e:
        if world.active and distributed.is_lost_peer(e):
            raise distributed.LostPeer(world, e) from None
        raise
    finally:
        distributed.stop(world)
