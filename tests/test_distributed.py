"""Training in several processes with torchrun (gloo on CPU): the same weights as one
process with the same global batch, exact resume, a dead rank ending the job, a
restarted job resuming by itself, and SIGTERM stopping every rank at one iteration."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from test_train import assert_states_equal, comparable
from transfigure.config import make_options
from transfigure.train import EpochSampler, train
from transfigure.distributed import World

TINY = ["--netG", "resnet_1blocks", "--ngf", "4", "--ndf", "4", "--load_size", "32", "--crop_size", "28",
        "--num_threads", "0", "--seed", "3", "--deterministic", "--no_progress", "--print_freq", "1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from transfigure.data.synthetic import make_labels2photo

    root = tmp_path_factory.mktemp("dist") / "data"
    make_labels2photo(root, size=32, n_train=8, n_test=2, seed=0, progress=False)
    return root


def launch(*args, nproc=2, launcher=(), **popen):
    """`torchrun --standalone --nproc_per_node N [launcher options] -m transfigure train ARGS`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               *launcher, "-m", "transfigure", "train", *map(str, args)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def finished(proc, timeout=240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    assert not re.search(r"\[rank\d\]: Traceback", out), out
    return out


def state(run: Path) -> dict:
    return torch.load(run / "latest.ckpt", weights_only=True)


def single(dataset, checkpoints, name, **overrides):
    """The same training in this process (one process, the global batch), as the CLI would run it."""
    values = {**dict(dataroot=str(dataset), checkpoints_dir=str(checkpoints), name=name, netG="resnet_1blocks", ngf=4,
                     ndf=4, load_size=32, crop_size=28, num_threads=0, seed=3, deterministic=True, print_freq=1,
                     device="cpu"), **overrides}
    train(make_options(values), progress=False)
    return state(checkpoints / name)


def test_each_process_takes_its_slice_of_every_global_batch():
    one = list(EpochSampler(10, seed=1, epoch=2, shuffle=True))
    ranks = [list(EpochSampler(10, 1, 2, True, batch_size=2, world=World(r, 2))) for r in range(2)]
    padded = one + one[:2]  # 10 images, global batches of 4: the last one is filled up from the start
    assert ranks[0] == [i for b in range(3) for i in padded[4 * b:4 * b + 2]]
    assert ranks[1] == [i for b in range(3) for i in padded[4 * b + 2:4 * b + 4]]
    resumed = [list(EpochSampler(10, 1, 2, True, start=4, batch_size=2, world=World(r, 2))) for r in range(2)]
    assert resumed == [ranks[0][2:], ranks[1][2:]]


@pytest.mark.parametrize("method", [
    dict(model="cycle_gan", pool_size=0),  # instance norm
    dict(model="pix2pix", netG="unet_32", crop_size=32, no_dropout=True),  # batch norm, synchronised
])
def test_two_processes_train_the_weights_of_one_with_the_same_global_batch(dataset, tmp_path, method):
    flags = [str(x).lower() if isinstance(x, bool) else x for k, v in method.items() for x in (f"--{k}", v)]
    args = [*TINY, *flags, "--dataroot", dataset, "--checkpoints_dir", tmp_path, "--n_epochs", "2",
            "--n_epochs_decay", "0"]
    finished(launch(*args, "--name", "two", "--batch_size", "2"))
    one = single(dataset, tmp_path, "one", batch_size=4, n_epochs=2, n_epochs_decay=0, **method)
    two = state(tmp_path / "two")
    assert two["total_steps"] == one["total_steps"] == 4  # 8 images, global batch 4, 2 epochs
    for net in one["nets"]:
        noise_only = biases_cancelled_by_instance_norm(net, one["options"])
        for key, tensor in one["nets"][net].items():
            if key in noise_only:
                continue
            if tensor.is_floating_point():
                assert torch.allclose(two["nets"][net][key], tensor, atol=1e-5, rtol=1e-4), (net, key)
            else:
                assert torch.equal(two["nets"][net][key], tensor), (net, key)


def biases_cancelled_by_instance_norm(net_name: str, options: dict) -> set[str]:
    """The biases of convolutions whose output goes straight into an instance norm: the norm
    subtracts them again, so their true gradient is zero and Adam turns the last-bit noise
    of any two summation orders into full-size steps. Every other weight must agree."""
    from torch import nn

    from transfigure.methods import create_method
    from transfigure.config import make_options

    net = create_method(make_options({**options, "continue_train": False}), torch.device("cpu")).nets[net_name]
    cancelled = set()
    for prefix, module in net.named_modules():
        children = list(module.named_children())
        for (name, layer), (_, after) in zip(children, children[1:]):
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(after, nn.InstanceNorm2d) \
                    and layer.bias is not None and not after.affine:
                cancelled.add(f"{prefix}.{name}.bias".lstrip("."))
    assert options["norm"] == "batch" or cancelled  # the instance-norm nets have some, the batch-norm ones none
    return cancelled


def test_two_processes_resume_exactly_and_on_one_process_say_what_changed(dataset, tmp_path, capsys):
    args = [*TINY, "--dataroot", dataset, "--checkpoints_dir", tmp_path, "--n_epochs", "2", "--n_epochs_decay", "0",
            "--batch_size", "2", "--pool_size", "2"]  # per-process image pools, saved per process
    whole = launch(*args, "--name", "whole")
    finished(whole)
    out = finished(launch(*args, "--name", "split", "--max_iters", "1"))
    assert "at iteration 1 (paused)" in out and out.count("Saved ") == 1  # rank 0 alone reports and writes
    paused = state(tmp_path / "split")
    assert len(paused["ranks"]) == 2
    pools = [rank["method"]["pool_A"]["rng"] for rank in paused["ranks"]]
    assert pools[0] != pools[1]  # each process's image pool draws its own random numbers
    import shutil
    shutil.copytree(tmp_path / "split", tmp_path / "on_one")
    finished(launch(*args, "--name", "split", "--continue_train"))
    assert_states_equal(comparable(state(tmp_path / "whole")), comparable(state(tmp_path / "split")))
    assert_states_equal(state(tmp_path / "whole")["ranks"], state(tmp_path / "split")["ranks"])

    single(dataset, tmp_path, "on_one", batch_size=2, n_epochs=2, n_epochs_decay=0, pool_size=2, continue_train=True)
    said = capsys.readouterr().out
    assert "written by 2 process(es), this job has 1" in said and "global batch goes from 4 to 2" in said
    assert state(tmp_path / "on_one")["epoch"] == 3


def _rank_pid(launcher_pid: int, rank: int) -> int | None:
    for child in Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text().split():
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return int(child)
    return None


def _long_run(dataset, tmp_path, name, launcher=()):
    args = [*TINY, "--dataroot", dataset, "--checkpoints_dir", tmp_path, "--name", name, "--n_epochs", "15",
            "--n_epochs_decay", "0", "--batch_size", "2", "--pool_size", "0", "--save_latest_freq", "10",
            "--save_epoch_freq", "1000"]
    proc = launch(*args, launcher=launcher)
    deadline = time.monotonic() + 120
    while not (tmp_path / name / "latest.ckpt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.05)
    return proc


def test_a_killed_rank_ends_the_job_and_a_restart_resumes_from_the_checkpoint(dataset, tmp_path):
    proc = _long_run(dataset, tmp_path, "killed")
    os.kill(_rank_pid(proc.pid, 1), signal.SIGKILL)
    killed_at = time.monotonic()
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode != 0 and time.monotonic() - killed_at < 60
    assert re.search(r"Root Cause[^=]*rank\s*: 1 \(local_rank: 1\)\s*exitcode\s*: -9", out), out
    assert "[rank0]: Traceback" not in out  # the survivor, if it outlives torchrun's SIGTERM, says so in a line

    proc = _long_run(dataset, tmp_path, "restarted", launcher=["--max_restarts", "1"])
    os.kill(_rank_pid(proc.pid, 1), signal.SIGKILL)
    out = finished(proc, timeout=240)
    assert "torchrun restarted the job: resuming from" in out
    assert state(tmp_path / "restarted")["total_steps"] == 15 * 2  # every iteration, none twice


def test_sigterm_to_the_launcher_stops_every_rank_at_one_iteration_with_one_checkpoint(dataset, tmp_path):
    proc = _long_run(dataset, tmp_path, "stopped")
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=90)
    saved = state(tmp_path / "stopped")
    steps = saved["total_steps"]
    assert f"at iteration {steps} (interrupted)" in out and out.count("Saved ") == 1, out
    assert len(saved["ranks"]) == 2 and 2 <= steps < 30  # a checkpoint exists from the first epoch on
    log = (tmp_path / "stopped" / "loss_log.jsonl").read_text().splitlines()
    assert log and str(steps) in log[-1]


def test_a_job_started_without_torchrun_or_with_nccl_on_cpus_is_one_clear_line(dataset, tmp_path, monkeypatch,
                                                                               capsys):
    from transfigure.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    base = ["train", "--dataroot", str(dataset), "--checkpoints_dir", str(tmp_path), "--name", "r", "--device", "cpu"]
    assert main(base) == 2
    assert "MASTER_ADDR and MASTER_PORT are not set: start several processes with torchrun" in capsys.readouterr().err
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    assert main([*base, "--dist_backend", "nccl"]) == 2
    assert "--dist_backend nccl needs GPUs" in capsys.readouterr().err
