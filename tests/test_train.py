import signal

import pytest
import torch

from transfigure import checkpoint as ckpt
from transfigure.config import make_options
from transfigure.methods import Method
from transfigure.train import Trainer, train


def tiny_options(dataroot, checkpoints_dir, name="run", **overrides):
    values = dict(dataroot=str(dataroot), checkpoints_dir=str(checkpoints_dir), name=name,
                  netG="resnet_1blocks", ngf=4, ndf=4, load_size=32, crop_size=28, n_epochs=1,
                  n_epochs_decay=1, num_threads=0, pool_size=2, seed=3, deterministic=True,
                  print_freq=1, save_latest_freq=4, device="cpu")
    values.update(overrides)
    return make_options(values)


def assert_states_equal(a, b, path="state"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_states_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_states_equal(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def comparable(state):
    return {k: state[k] for k in ("nets", "optimizers", "schedulers", "method", "epoch", "total_steps")}


def test_interrupted_and_resumed_equals_uninterrupted(tiny_dataset, tmp_path):
    whole = train(tiny_options(tiny_dataset, tmp_path, "whole"), progress=False)
    assert whole.status == "finished" and whole.total_steps == 12  # 6 images x 2 epochs

    # Stop mid-epoch (iteration 5 of 6 in epoch 1), then resume twice: once mid-epoch, once at the boundary.
    paused = train(tiny_options(tiny_dataset, tmp_path, "split", max_iters=5), progress=False)
    assert paused.status == "paused" and paused.total_steps == 5
    paused = train(tiny_options(tiny_dataset, tmp_path, "split", max_iters=9, continue_train=True),
                   progress=False)
    assert paused.total_steps == 9
    resumed = train(tiny_options(tiny_dataset, tmp_path, "split", continue_train=True), progress=False)
    assert resumed.status == "finished" and resumed.total_steps == 12

    a = ckpt.load_training_state(tmp_path / "whole" / "latest.ckpt")
    b = ckpt.load_training_state(tmp_path / "split" / "latest.ckpt")
    assert_states_equal(comparable(a), comparable(b))
    # The loss log has one line per iteration, none duplicated by the resumes.
    log = (tmp_path / "split" / "loss_log.jsonl").read_text().splitlines()
    assert len(log) == 12


def test_checkpoint_layout_and_exports(tiny_dataset, tmp_path):
    train(tiny_options(tiny_dataset, tmp_path, save_epoch_freq=1), progress=False)
    run = tmp_path / "run"
    for name in ("latest.ckpt", "epoch_1.ckpt", "epoch_2.ckpt", "options.yaml", "loss_log.jsonl",
                 "latest_net_G_A.pth", "latest_net_G_B.safetensors", "2_net_G_A.pth"):
        assert (run / name).is_file(), name
    assert list((run / "samples").glob("*.png"))
    # The plain export is the generator's state dict in the official layout, loadable without pickle.
    plain = torch.load(run / "latest_net_G_A.pth", weights_only=True)
    full = ckpt.load_training_state(run / "latest.ckpt")["nets"]["G_A"]
    assert_states_equal(plain, full)
    assert "model.1.weight" in plain


def test_crash_mid_save_leaves_last_checkpoint_loadable(tiny_dataset, tmp_path, monkeypatch):
    trainer = Trainer(tiny_options(tiny_dataset, tmp_path, max_iters=2), progress=False)
    trainer.run()
    path = tmp_path / "run" / "latest.ckpt"
    before = path.read_bytes()

    def crashing_save(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt.torch, "save", crashing_save)
    with pytest.raises(OSError, match="simulated"):
        trainer.save("latest")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert ckpt.load_training_state(path)["total_steps"] == 2
    assert not list(path.parent.glob(".transfigure-*"))


def test_ctrl_c_saves_and_resumes(tiny_dataset, tmp_path):
    trainer = Trainer(tiny_options(tiny_dataset, tmp_path), progress=False)
    step = trainer.method.losses

    def step_then_interrupt(batch):
        yield from step(batch)
        if trainer.total_steps == 2:  # the third step is under way
            signal.raise_signal(signal.SIGINT)

    trainer.method.losses = step_then_interrupt
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN when run in the background
    result = trainer.run()
    assert result.status == "interrupted" and result.total_steps == 3
    assert ckpt.load_training_state(tmp_path / "run" / "latest.ckpt")["total_steps"] == 3
    assert signal.getsignal(signal.SIGINT) == handler_before  # the run's own handler is gone
    # Resuming after Ctrl-C ends where a run that was never interrupted ends, bit for bit.
    resumed = train(tiny_options(tiny_dataset, tmp_path, continue_train=True), progress=False)
    assert resumed.status == "finished" and resumed.total_steps == 12
    assert train(tiny_options(tiny_dataset, tmp_path, "whole"), progress=False).status == "finished"
    assert_states_equal(comparable(ckpt.load_training_state(tmp_path / "run" / "latest.ckpt")),
                        comparable(ckpt.load_training_state(tmp_path / "whole" / "latest.ckpt")))


def test_refuses_to_overwrite_or_resume_with_other_architecture(tiny_dataset, tmp_path):
    train(tiny_options(tiny_dataset, tmp_path, max_iters=1), progress=False)
    with pytest.raises(ckpt.CheckpointError, match="--continue_train"):
        Trainer(tiny_options(tiny_dataset, tmp_path), progress=False)
    with pytest.raises(ckpt.CheckpointError, match="--ngf 8"):
        Trainer(tiny_options(tiny_dataset, tmp_path, ngf=8, continue_train=True), progress=False)
    with pytest.raises(ckpt.CheckpointError, match="epoch_7.ckpt"):
        Trainer(tiny_options(tiny_dataset, tmp_path, epoch="7", continue_train=True), progress=False)


@pytest.mark.parametrize("gan_mode", ["vanilla", "wgangp"])
def test_other_gan_objectives_train(tiny_dataset, tmp_path, gan_mode):
    result = train(tiny_options(tiny_dataset, tmp_path, gan_mode=gan_mode, max_iters=3), progress=False)
    assert result.total_steps == 3  # a non-finite loss would have raised


def test_linear_schedule_decays_to_zero(tiny_dataset, tmp_path):
    trainer = Trainer(tiny_options(tiny_dataset, tmp_path, n_epochs=1, n_epochs_decay=2, max_dataset_size=1),
                      progress=False)
    step, lrs = trainer.method.losses, []

    def recording_step(batch):
        lrs.append(trainer.optimizers["G"].param_groups[0]["lr"])
        return step(batch)

    trainer.method.losses = recording_step
    trainer.run()
    # Official rule: constant for n_epochs, then lr * (1 - k / (n_epochs_decay + 1)) in decay epoch k.
    assert lrs == pytest.approx([2e-4, 2e-4 * 2 / 3, 2e-4 * 1 / 3])


@pytest.mark.parametrize("changes", [
    {"ngf": 6}, {"netG": "resnet_2blocks"}, {"norm": "batch"}, {"no_dropout": False},
    {"input_nc": 1, "lambda_identity": 0.0},
    {"netG": "cartoongan_1blocks", "activation": "leaky_relu", "activation_slope": 0.2},
    {"model": "pix2pix", "dataset_mode": "unaligned", "netG": "cartoongan_1blocks", "activation": "leaky_relu"},
])
def test_a_run_reloads_exactly_the_generators_it_trained(tiny_dataset, tmp_path, changes):
    """Every architecture option reaches the trained nets and the nets rebuilt from the run
    folder alike (a cycle_gan run once trained CartoonGAN generators with ReLU whatever
    --activation said, and reloaded them with LeakyReLU)."""
    from transfigure.translate import load_generator

    trainer = Trainer(tiny_options(tiny_dataset, tmp_path, max_iters=1, **changes), progress=False)
    trainer.run()
    directions = ("AtoB",) if changes.get("model") == "pix2pix" else ("AtoB", "BtoA")
    for direction in directions:
        trained = trainer.method.translator(direction).eval()
        loaded = load_generator(name="run", checkpoints_dir=str(tmp_path), direction=direction).net.eval()
        assert repr(loaded) == repr(trained), direction
        if "activation" in changes:  # CartoonGAN applies its activation functionally: not in the repr
            assert (trained.activation, trained.negative_slope) == (loaded.activation, loaded.negative_slope) == \
                ("leaky_relu", changes.get("activation_slope", 0.01))
        x = torch.rand(1, trained.conv01_1.in_channels if hasattr(trained, "conv01_1") else
                       next(trained.parameters()).shape[1], 32, 32) * 2 - 1
        with torch.no_grad():
            assert torch.equal(trained(x), loaded(x)), direction


def test_the_result_says_what_happened_and_how_to_go_on(tiny_dataset, tmp_path, capsys):
    """The trainer returns what happened and prints no hint itself (benchmarks train to a
    fixed count, where pausing is the normal end); the command line tells the user."""
    from transfigure.cli import main

    paused = train(tiny_options(tiny_dataset, tmp_path, max_iters=2), progress=False)
    assert paused.status == "paused" and "Resume with" not in capsys.readouterr().out
    assert paused.describe() == (f"Saved {tmp_path / 'run' / 'latest.ckpt'} at iteration 2 (paused). Resume with: "
                                 f"transfigure train --name run --checkpoints_dir {tmp_path} --continue_train")
    argv = ["train", "--dataroot", str(tiny_dataset), "--name", "cli", "--checkpoints_dir", str(tmp_path),
            "--netG", "resnet_1blocks", "--ngf", "4", "--ndf", "4", "--load_size", "32", "--crop_size", "28",
            "--num_threads", "0", "--max_iters", "1", "--no_progress"]
    assert main(argv) == 0
    assert "(paused). Resume with: transfigure train --name cli" in capsys.readouterr().out


class NegatingMethod(Method):
    """A toy method written only here: one 1x1 conv learns to negate its input; one
    optimizer, no discriminator. Registered in a test, never named in train.py."""
    defaults = {"lr": 0.05}

    def __init__(self, opt, device):
        super().__init__(opt, device)
        self.nets = torch.nn.ModuleDict({"G": torch.nn.Conv2d(3, 3, 1)}).to(device)
        self.epochs_seen = []

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        self.epochs_seen.append(epoch)

    def param_groups(self):
        return {"G": list(self.nets["G"].parameters())}

    def step_losses(self, batch):
        a = batch["A"].to(self.device)
        yield "G", {"negation": torch.nn.functional.l1_loss(self.nets["G"](a), -a)}

    @torch.no_grad()
    def visuals(self, batch):
        a = batch["A"].to(self.device)
        return {"input": a, "negated": self.nets["G"](a)}


def test_a_method_defined_outside_the_package_trains_through_the_loop(tiny_dataset, tmp_path, monkeypatch):
    from transfigure.methods import METHODS
    from transfigure.runlog import read_loss_log

    monkeypatch.setitem(METHODS, "negate", NegatingMethod)
    opt = tiny_options(tiny_dataset, tmp_path, model="negate", n_epochs=2, n_epochs_decay=1)
    assert opt.lr == 0.05  # the method's own defaults apply
    trainer = Trainer(opt, progress=False)
    assert set(trainer.optimizers) == {"G"}
    result = trainer.run()
    assert result.status == "finished" and result.total_steps == 3 * len(trainer.dataset)
    assert trainer.method.epochs_seen == [1, 2, 3]
    losses = [r["negation"] for r in read_loss_log(tmp_path / "run")]
    assert len(losses) == result.total_steps and losses[-1] < 0.25 * losses[0]  # the loop did the steps
    saved = torch.load(tmp_path / "run" / "latest_net_G.pth", weights_only=True)
    assert torch.equal(saved["weight"], trainer.method.nets["G"].weight)
    assert (tmp_path / "run" / "samples" / "epoch_003.png").is_file()


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_every_precision_trains_without_nan(tiny_dataset, tmp_path, precision):
    trainer = Trainer(tiny_options(tiny_dataset, tmp_path, precision=precision, max_iters=3), progress=False)
    assert trainer.amp.precision.name == precision
    result = trainer.run()
    assert result.total_steps == 3  # a non-finite loss would have raised
    state = ckpt.load_training_state(tmp_path / "run" / "latest.ckpt")
    assert all(t.dtype == torch.float32 for sd in state["nets"].values() for t in sd.values() if t.is_floating_point())
    if precision == "fp16":  # the one GradScaler scaled every optimizer's loss and is saved for resume
        assert state["grad_scaler"]["scale"] > 0 and trainer.amp.scaler.is_enabled()


def test_the_forward_pass_runs_in_the_precision_asked_and_weights_stay_fp32():
    from transfigure.devices import Precision
    from transfigure.train import MixedPrecision, optimize

    seen = {}

    class Recording(NegatingMethod):
        def step_losses(self, batch):
            out = self.nets["G"](batch["A"])
            seen["activations"], seen["weights"] = out.dtype, self.nets["G"].weight.dtype
            yield "G", {"negation": torch.nn.functional.l1_loss(out, -batch["A"])}

    method = Recording(make_options({"lr": 0.01}), torch.device("cpu"))
    optimizers = {"G": torch.optim.Adam(method.nets["G"].parameters())}
    losses = optimize(method, {"A": torch.rand(1, 3, 8, 8)}, optimizers,
                      MixedPrecision(Precision("bf16", "test"), torch.device("cpu")))
    assert seen == {"activations": torch.bfloat16, "weights": torch.float32}
    assert isinstance(losses["G"]["negation"], float)


def test_compiled_steps_match_eager_and_do_not_recompile_every_step(tiny_dataset, tmp_path):
    """torch.compile'd nets (aot_eager: the same tracing and guards as inductor, without
    code generation) give the eager losses; the discriminators' requires_grad switching
    compiles each state once, not again every iteration."""
    from torch._dynamo.utils import counters
    from transfigure.methods import create_method
    from transfigure.train import optimize

    batches = [{"A": torch.rand(1, 3, 28, 28) * 2 - 1, "B": torch.rand(1, 3, 28, 28) * 2 - 1} for _ in range(5)]

    def losses(compile):
        torch.manual_seed(0)
        opt = tiny_options(tiny_dataset, tmp_path, compile=compile, pool_size=0)
        method = create_method(opt, torch.device("cpu"))
        optimizers = {k: torch.optim.Adam(p, lr=2e-4) for k, p in method.param_groups().items()}
        graphs = []
        out = []
        for batch in batches:
            out.append(optimize(method, batch, optimizers))
            graphs.append(counters["stats"]["unique_graphs"])
        return out, graphs

    torch._dynamo.reset()
    counters.clear()
    eager, _ = losses("off")
    compiled, graphs = losses("aot_eager")
    for e, c in zip(eager, compiled):
        for group in e:
            assert c[group] == pytest.approx(e[group], rel=1e-4, abs=1e-5)
    assert graphs[1] > 0 and graphs[-1] == graphs[1]  # all compiled in the first two steps, none after
