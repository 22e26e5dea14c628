"""CUT and FastCUT: PatchNCE against a hand-computed case, where the gradients of
the generator step go, both modes trained and used through the CLI, exact
resume, and the authors' published generator layout loading strictly (checked
against the authors' layer sequence written out with functional ops)."""
import io
import math
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from transfigure import checkpoint as ckpt
from transfigure.cli import main
from transfigure.config import make_options
from transfigure.losses import patch_nce_loss
from transfigure.methods import create_method
from transfigure.pretrained import cached_path, get_model
from transfigure.train import train

from test_train import assert_states_equal, comparable, tiny_options


def _hand_patch_nce(q, k, tau):
    """-log softmax of the positive among [positive, the other keys, and the -10 the
    authors' code leaves at the query's own place in the negatives]."""
    losses = []
    for i in range(len(q)):
        dots = [sum(a * b for a, b in zip(q[i], k[j])) for j in range(len(k))]
        terms = [math.exp(dots[i] / tau)] + [math.exp((-10.0 if j == i else dots[j]) / tau) for j in range(len(k))]
        losses.append(-math.log(terms[0] / sum(terms)))
    return losses


def test_patch_nce_against_a_hand_computed_case():
    q = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
    k = [[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]]
    got = patch_nce_loss(torch.tensor(q), torch.tensor(k), tau=0.5, n_images=1)
    expected = _hand_patch_nce(q, k, 0.5)
    assert torch.allclose(got, torch.tensor(expected), atol=1e-5)
    # Patch 0 by hand: logits 0.8/0.5, 0/0.5, 1/0.5 (and -10/0.5): -1.6 + log(e^1.6 + e^0 + e^2).
    assert got[0].item() == pytest.approx(-1.6 + math.log(math.exp(1.6) + 1 + math.exp(2.0)), abs=1e-5)

    # Two images of two patches: negatives come from the patch's own image only...
    q2 = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, -0.6]]
    k2 = [[0.6, 0.8], [1.0, 0.0], [0.0, -1.0], [0.6, 0.8]]
    per_image = patch_nce_loss(torch.tensor(q2), torch.tensor(k2), tau=0.07, n_images=2)
    expected = _hand_patch_nce(q2[:2], k2[:2], 0.07) + _hand_patch_nce(q2[2:], k2[2:], 0.07)
    assert torch.allclose(per_image, torch.tensor(expected), rtol=1e-4)
    # ...or, with negatives from the whole batch, from every image.
    whole = patch_nce_loss(torch.tensor(q2), torch.tensor(k2), tau=0.07, n_images=2, negatives_from_batch=True)
    assert torch.allclose(whole, torch.tensor(_hand_patch_nce(q2, k2, 0.07)), rtol=1e-4)
    # The keys are targets: no gradient flows into them.
    qt, kt = torch.tensor(q, requires_grad=True), torch.tensor(k, requires_grad=True)
    patch_nce_loss(qt, kt, 0.5, 1).mean().backward()
    assert qt.grad is not None and kt.grad is None


def _tiny_cut(tmp_path, **overrides):
    opt = make_options({"model": "cut", "dataroot": str(tmp_path), "netG": "resnet_1blocks", "ngf": 4, "ndf": 4,
                        "netF_nc": 8, "num_patches": 16, "crop_size": 28, "load_size": 28, "device": "cpu",
                        **overrides})
    torch.manual_seed(0)
    return create_method(opt, torch.device("cpu"))


def test_the_generator_step_reaches_G_and_F_and_never_D(tmp_path):
    method = _tiny_cut(tmp_path)
    g = torch.Generator().manual_seed(1)
    batch = {"A": torch.rand(2, 3, 28, 28, generator=g) * 2 - 1, "B": torch.rand(2, 3, 28, 28, generator=g) * 2 - 1}
    nets = method.nets
    phases = method.losses(batch)

    name, losses = next(phases)
    assert name == "D" and set(losses) == {"D"}
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in nets["D"].parameters())
    assert all(p.grad is None for p in [*nets["G"].parameters(), *nets["F"].parameters()])
    for p in nets.parameters():
        p.grad = None

    name, losses = next(phases)
    assert name == "G" and set(losses) == {"G_GAN", "NCE", "NCE_Y"}
    sum(losses.values()).backward()
    for net in ("G", "F"):
        grads = [p.grad for p in nets[net].parameters()]
        assert grads and all(gr is not None and gr.abs().sum() > 0 for gr in grads), net
    assert all(p.grad is None for p in nets["D"].parameters())
    assert set(method.param_groups()) == {"G", "D"}
    assert {id(p) for p in method.param_groups()["G"]} == {id(p) for p in [*nets["G"].parameters(),
                                                                            *nets["F"].parameters()]}


def test_modes_set_the_authors_defaults_and_given_flags_win(tmp_path):
    cut = make_options({"model": "cut"})
    assert (cut.nce_idt, cut.lambda_NCE, cut.flip_equivariance, cut.n_epochs, cut.n_epochs_decay) == \
        (True, 1.0, False, 200, 200)
    assert (cut.init_type, cut.no_antialias, cut.no_antialias_up, cut.gan_mode, cut.netF, cut.nce_T,
            cut.num_patches, cut.nce_layers) == ("xavier", False, False, "lsgan", "mlp_sample", 0.07, 256,
                                                 "0,4,8,12,16")
    fast = make_options({"model": "cut", "CUT_mode": "FastCUT"})
    assert (fast.nce_idt, fast.lambda_NCE, fast.flip_equivariance, fast.n_epochs, fast.n_epochs_decay) == \
        (False, 10.0, True, 150, 50)
    assert make_options({"model": "cut", "CUT_mode": "fastcut", "lambda_NCE": 2}).lambda_NCE == 2.0
    # Other methods keep CycleGAN's plain strided sampling.
    assert make_options({}).no_antialias is True


def test_tiny_cut_and_fastcut_train_and_translate_through_the_cli(tiny_dataset, tmp_path):
    common = ["--dataroot", str(tiny_dataset), "--checkpoints_dir", str(tmp_path), "--netG", "resnet_1blocks",
              "--ngf", "4", "--ndf", "4", "--netF_nc", "8", "--num_patches", "32", "--load_size", "32",
              "--crop_size", "28", "--n_epochs", "1", "--n_epochs_decay", "1", "--num_threads", "0",
              "--device", "cpu", "--model", "cut"]
    for mode in ("CUT", "FastCUT"):
        assert main(["train", *common, "--name", mode, "--CUT_mode", mode]) == 0
        state = ckpt.load_training_state(tmp_path / mode / "latest.ckpt")
        assert state["total_steps"] == 12 and set(state["nets"]) == {"G", "F", "D"}
        assert state["options"]["nce_idt"] is (mode == "CUT")
        assert state["options"]["flip_equivariance"] is (mode == "FastCUT")
        assert (tmp_path / mode / "latest_net_G.pth").is_file()
        out = tmp_path / f"out_{mode}"
        assert main(["translate", "--name", mode, "--checkpoints_dir", str(tmp_path), "--input",
                     str(tiny_dataset / "testA"), "--output", str(out), "--no_progress", "--device", "cpu"]) == 0
        written = sorted(out.iterdir())
        assert len(written) == 3 and Image.open(written[0]).size == (32, 32)
    # One generator: the other direction is refused with one line.
    assert main(["translate", "--name", "CUT", "--checkpoints_dir", str(tmp_path), "--input",
                 str(tiny_dataset / "testB"), "--output", str(tmp_path / "back"), "--direction", "BtoA"]) == 2


def test_interrupted_and_resumed_cut_equals_uninterrupted(tiny_dataset, tmp_path):
    cut = dict(model="cut", netF_nc=8, num_patches=24, flip_equivariance=True, pool_size=0)
    whole = train(tiny_options(tiny_dataset, tmp_path, "whole", **cut), progress=False)
    assert whole.status == "finished" and whole.total_steps == 12
    paused = train(tiny_options(tiny_dataset, tmp_path, "split", max_iters=5, **cut), progress=False)
    assert paused.status == "paused"
    resumed = train(tiny_options(tiny_dataset, tmp_path, "split", continue_train=True, **cut), progress=False)
    assert resumed.status == "finished" and resumed.total_steps == 12
    a = ckpt.load_training_state(tmp_path / "whole" / "latest.ckpt")
    b = ckpt.load_training_state(tmp_path / "split" / "latest.ckpt")
    assert_states_equal(comparable(a), comparable(b))


# --------------------------------------------------------------------------- the authors' layout

def _binomial(taps):
    a = np.array(taps, dtype=np.float64)
    f = np.outer(a, a)
    return torch.from_numpy(f / f.sum()).float()


def authors_cut_generator_state(seed: int, ngf: int = 64) -> dict:
    """The keys and shapes of the CUT authors' default generator (resnet_9blocks,
    instance norm, anti-aliased), written out from their layer list, with random weights
    and the fixed blur filters their Downsample/Upsample register as `filt`."""
    g = torch.Generator().manual_seed(seed)

    def conv(out_c, in_c, k):
        return torch.randn(out_c, in_c, k, k, generator=g) * 0.05, torch.randn(out_c, generator=g) * 0.05

    state = {}

    def put(index, out_c, in_c, k):
        state[f"model.{index}.weight"], state[f"model.{index}.bias"] = conv(out_c, in_c, k)

    put(1, ngf, 3, 7)
    put(4, ngf * 2, ngf, 3)
    state["model.7.filt"] = _binomial([1, 2, 1])[None, None].repeat(ngf * 2, 1, 1, 1)
    put(8, ngf * 4, ngf * 2, 3)
    state["model.11.filt"] = _binomial([1, 2, 1])[None, None].repeat(ngf * 4, 1, 1, 1)
    for block in range(12, 21):
        for inner in (1, 5):
            w, b = conv(ngf * 4, ngf * 4, 3)
            state[f"model.{block}.conv_block.{inner}.weight"], state[f"model.{block}.conv_block.{inner}.bias"] = w, b
    state["model.21.filt"] = _binomial([1, 3, 3, 1])[None, None].repeat(ngf * 4, 1, 1, 1) * 4
    put(22, ngf * 2, ngf * 4, 3)
    state["model.25.filt"] = _binomial([1, 3, 3, 1])[None, None].repeat(ngf * 2, 1, 1, 1) * 4
    put(26, ngf, ngf * 2, 3)
    put(30, 3, ngf, 7)
    return state


def authors_cut_forward(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """The authors' ResnetGenerator forward (no_antialias and no_antialias_up off), step by step."""
    def norm_relu(t):
        return F.relu(F.instance_norm(t, eps=1e-5))

    def blur_down(t, filt):
        return F.conv2d(F.pad(t, (1, 1, 1, 1), mode="reflect"), filt, stride=2, groups=t.shape[1])

    def blur_up(t, filt):
        y = F.conv_transpose2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), filt, stride=2, padding=2,
                               groups=t.shape[1])
        return y[:, :, 1:, 1:][:, :, :-1, :-1]

    h = norm_relu(F.conv2d(F.pad(x, (3, 3, 3, 3), mode="reflect"), sd["model.1.weight"], sd["model.1.bias"]))
    h = blur_down(norm_relu(F.conv2d(h, sd["model.4.weight"], sd["model.4.bias"], padding=1)), sd["model.7.filt"])
    h = blur_down(norm_relu(F.conv2d(h, sd["model.8.weight"], sd["model.8.bias"], padding=1)), sd["model.11.filt"])
    for block in range(12, 21):
        p = f"model.{block}.conv_block."
        r = norm_relu(F.conv2d(F.pad(h, (1, 1, 1, 1), mode="reflect"), sd[p + "1.weight"], sd[p + "1.bias"]))
        r = F.instance_norm(F.conv2d(F.pad(r, (1, 1, 1, 1), mode="reflect"), sd[p + "5.weight"], sd[p + "5.bias"]),
                            eps=1e-5)
        h = h + r
    h = norm_relu(F.conv2d(blur_up(h, sd["model.21.filt"]), sd["model.22.weight"], sd["model.22.bias"], padding=1))
    h = norm_relu(F.conv2d(blur_up(h, sd["model.25.filt"]), sd["model.26.weight"], sd["model.26.bias"], padding=1))
    return torch.tanh(F.conv2d(F.pad(h, (3, 3, 3, 3), mode="reflect"), sd["model.30.weight"], sd["model.30.bias"]))


def _tar_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as t:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            t.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


@pytest.fixture
def cut_archive_server(tmp_path, monkeypatch):
    states = {"horse2zebra_cut_pretrained": authors_cut_generator_state(0),
              "cat2dog_fastcut_pretrained": authors_cut_generator_state(1)}
    files = {}
    for run, state in states.items():
        buffer = io.BytesIO()
        torch.save(state, buffer)
        files[f"checkpoints/{run}/latest_net_G.pth"] = buffer.getvalue()
    body = _tar_of(files)
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            if self.path != "/CUT/pretrained_models.tar":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    monkeypatch.setenv("TRANSFIGURE_MIRROR", f"http://127.0.0.1:{httpd.server_address[1]}")
    monkeypatch.setenv("TRANSFIGURE_CACHE", str(tmp_path / "cache"))
    yield states, requests
    httpd.shutdown()
    httpd.server_close()


def test_the_authors_cut_generator_loads_strictly_and_translates_as_their_steps(cut_archive_server, tmp_path):
    states, requests = cut_archive_server
    photo = tmp_path / "horse.png"
    pixels = np.random.default_rng(0).integers(0, 256, (32, 48, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(photo)
    out = tmp_path / "out"
    assert main(["translate", "--pretrained", "cut_horse2zebra", "--input", str(photo), "--output", str(out),
                 "--no_progress", "--backend", "torch", "--device", "cpu"]) == 0
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        y = authors_cut_forward(states["horse2zebra_cut_pretrained"], x)
    expected = ((y[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    got = np.asarray(Image.open(out / "horse.png"))
    assert got.shape == (32, 48, 3) and np.abs(got.astype(int) - expected.astype(int)).max() <= 1

    # Export takes the published model too; the deployed file computes the authors' steps.
    scripted = tmp_path / "cut.pt"
    assert main(["export", "--pretrained", "cut_horse2zebra", "--format", "torchscript", "--out", str(scripted),
                 "--no_progress"]) == 0
    with torch.no_grad():
        deployed = torch.jit.load(str(scripted))((x + 1) / 2) * 2 - 1  # the exported file takes [0, 1] images
    assert (deployed - y).abs().max() < 1e-4

    # One download gave every CUT generator in the archive its own cached file; the archive is gone.
    assert requests == ["/CUT/pretrained_models.tar"]
    assert cached_path(get_model("fastcut_cat2dog")).is_file()
    assert not (tmp_path / "cache" / "pretrained" / "archives" / "pretrained_models.tar").exists()
    from transfigure.pretrained import load_pretrained
    net = load_pretrained("fastcut_cat2dog", progress=False).net
    assert_states_equal(dict(net.state_dict()), states["cat2dog_fastcut_pretrained"])
    # A model the archive does not hold: one line saying so.
    assert main(["translate", "--pretrained", "cut_cat2dog", "--input", str(photo), "--output",
                 str(tmp_path / "other"), "--no_progress", "--backend", "torch"]) != 0


# --------------------------------------------------------------------------- the authors' runs

def authors_cut_discriminator_state(seed: int, ndf: int) -> dict:
    """The CUT authors' NLayerDiscriminator (basic, instance norm, anti-aliased): a stride-1
    conv and a blur-pool (`filt`) for each of the three downsamplings, from their layer list."""
    g = torch.Generator().manual_seed(seed)
    blur = _binomial([1, 2, 1])[None, None]
    state = {}
    for index, (out_c, in_c) in {0: (ndf, 3), 3: (ndf * 2, ndf), 7: (ndf * 4, ndf * 2), 11: (ndf * 8, ndf * 4),
                                 14: (1, ndf * 8)}.items():
        state[f"model.{index}.weight"] = torch.randn(out_c, in_c, 4, 4, generator=g) * 0.05
        state[f"model.{index}.bias"] = torch.randn(out_c, generator=g) * 0.05
    for index, channels in {2: ndf, 6: ndf * 2, 10: ndf * 4}.items():
        state[f"model.{index}.filt"] = blur.repeat(channels, 1, 1, 1)
    return state


def authors_cut_head_state(seed: int, channels: list[int], nc: int) -> dict:
    """The CUT authors' PatchSampleF with its MLPs (Linear, ReLU, Linear per layer)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i, c in enumerate(channels):
        for inner, in_c in ((0, c), (2, nc)):
            state[f"mlp_{i}.{inner}.weight"] = torch.randn(nc, in_c, generator=g) * 0.05
            state[f"mlp_{i}.{inner}.bias"] = torch.randn(nc, generator=g) * 0.05
    return state


def test_an_authors_cut_run_is_imported_trained_and_exported_back(tiny_dataset, tmp_path, capsys):
    from test_reference_runs import train_opt_txt

    ngf, ndf, nc = 4, 4, 8
    nets = {"G": authors_cut_generator_state(0, ngf), "D": authors_cut_discriminator_state(1, ndf),
            # Layers 0, 4, 8, 12, 16: the padded input, both downsampling convs, residual blocks 1 and 5.
            "F": authors_cut_head_state(2, [3, 2 * ngf, 4 * ngf, 4 * ngf, 4 * ngf], nc)}
    run = tmp_path / "reference" / "h2z_CUT"
    run.mkdir(parents=True)
    for name, state in nets.items():
        for label in ("2", "latest"):
            torch.save(state, run / f"{label}_net_{name}.pth")
    options = {"model": "cut", "CUT_mode": "CUT", "netG": "resnet_9blocks", "netD": "basic", "netF": "mlp_sample",
               "netF_nc": nc, "ngf": ngf, "ndf": ndf, "normG": "instance", "normD": "instance",
               "no_antialias": False, "no_antialias_up": False, "no_dropout": True, "init_type": "xavier",
               "nce_layers": "0,4,8,12,16", "nce_idt": True, "lambda_NCE": 1.0, "lambda_GAN": 1.0, "nce_T": 0.07,
               "num_patches": 256, "flip_equivariance": False, "gan_mode": "lsgan", "pool_size": 0,
               "dataroot": str(tiny_dataset), "load_size": 32, "crop_size": 28, "n_epochs": 200,
               "n_epochs_decay": 200, "epoch_count": 1, "lr": 0.0002, "beta1": 0.5, "beta2": 0.999,
               "random_scale_max": 3.0, "stylegan2_G_num_downsampling": 1, "gpu_ids": "0"}
    (run / "train_opt.txt").write_text(train_opt_txt(options))

    ck = tmp_path / "checkpoints"
    assert main(["import", str(run), "--name", "h2z", "--checkpoints_dir", str(ck)]) == 0
    said = capsys.readouterr().out
    assert "training continues at epoch 3" in said and "random_scale_max" in said  # no counterpart: listed
    state = ckpt.load_training_state(ck / "h2z" / "latest.ckpt")
    for name, reference in nets.items():  # strict and exact: the authors' tensors, F's head included
        assert_states_equal(dict(state["nets"][name]), reference, name)
    assert (state["options"]["norm"], state["options"]["no_antialias"]) == ("instance", False)

    assert main(["train", "--name", "h2z", "--checkpoints_dir", str(ck), "--continue_train", "--max_iters", "1",
                 "--num_threads", "0", "--no_progress"]) == 0
    assert main(["translate", "--name", "h2z", "--checkpoints_dir", str(ck), "--input", str(tiny_dataset / "testA"),
                 "--output", str(tmp_path / "out"), "--no_progress", "--backend", "torch"]) == 0

    back = tmp_path / "back"
    assert main(["export", "--name", "h2z", "--checkpoints_dir", str(ck), "--format", "official", "--out",
                 str(back)]) == 0
    for name, reference in nets.items():
        exported = torch.load(back / f"latest_net_{name}.pth", weights_only=True)
        assert {k: v.shape for k, v in exported.items()} == {k: v.shape for k, v in reference.items()}, name
    written = (back / "train_opt.txt").read_text()
    assert "normG: instance" in written.replace("  ", "") and "normD: instance" in written.replace("  ", "")

    (run / "train_opt.txt").write_text(train_opt_txt({**options, "normD": "batch"}))
    assert main(["import", str(run), "--name", "other", "--checkpoints_dir", str(ck)]) == 2
    assert "normG instance and normD batch" in capsys.readouterr().err
