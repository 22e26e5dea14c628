"""Published CartoonGAN styles: strict loading, equality with an independent re-implementation
of the authors' forward pass on real weights and photos, the CLI path, and the download path."""
import argparse
import functools
import shutil
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from transfigure.cartoonize import (add_cartoonize_arguments, cartoonize_files, cartoonize_image, load_style,
                                    run_cartoonize, style_size)
from transfigure.runner import GeneratorRunner, RunOptions
from transfigure.download import DownloadError
from transfigure.nets import run_padded
from transfigure.nets.cartoongan import CartoonGANGenerator, load_published_weights

from shared_data import PHOTOS, WEIGHTS, needs_weights


def published_shapes():
    """Key -> shape of the published generator, written out from its description."""
    shapes = {"conv01_1.weight": (64, 3, 7, 7), "conv01_1.bias": (64,)}
    norm = lambda name, c: {f"{name}.scale": (c,), f"{name}.shift": (c,)}  # noqa: E731
    conv = lambda name, o, i, k=3: {f"{name}.weight": (o, i, k, k), f"{name}.bias": (o,)}  # noqa: E731
    shapes |= norm("in01_1", 64) | conv("conv02_1", 128, 64) | conv("conv02_2", 128, 128) | norm("in02_1", 128)
    shapes |= conv("conv03_1", 256, 128) | conv("conv03_2", 256, 256) | norm("in03_1", 256)
    for i in range(4, 12):
        for j in (1, 2):
            shapes |= conv(f"conv{i:02d}_{j}", 256, 256) | norm(f"in{i:02d}_{j}", 256)
    shapes |= {"deconv01_1.weight": (256, 128, 3, 3), "deconv01_1.bias": (128,)}  # ConvTranspose: [in, out, k, k]
    shapes |= conv("deconv01_2", 128, 128) | norm("in12_1", 128)
    shapes |= {"deconv02_1.weight": (128, 64, 3, 3), "deconv02_1.bias": (64,)}
    shapes |= conv("deconv02_2", 64, 64) | norm("in13_1", 64) | conv("deconv03_1", 3, 64, 7)
    return shapes


def read_npy(style):
    return {f.stem: torch.from_numpy(np.load(f, allow_pickle=False)) for f in (WEIGHTS / style).glob("*.npy")}


def reference_forward(w, x):
    """The authors' Transformer.forward, in plain functional ops on the raw tensors."""
    def inorm(y, name):  # their InstanceNormalization: biased variance from torch.var, eps 1e-9
        n = y.shape[2] * y.shape[3]
        t = y.reshape(y.shape[0], y.shape[1], n)
        mean = t.mean(2)[:, :, None, None]
        var = t.var(2)[:, :, None, None] * ((n - 1) / n)
        return (y - mean) / torch.sqrt(var + 1e-9) * w[f"{name}.scale"][None, :, None, None] \
            + w[f"{name}.shift"][None, :, None, None]

    def conv(y, name, stride=1, padding=0):
        return F.conv2d(y, w[f"{name}.weight"], w[f"{name}.bias"], stride, padding)

    def deconv(y, name):
        return F.conv_transpose2d(y, w[f"{name}.weight"], w[f"{name}.bias"], 2, 1, 1)

    def rpad(y, p):
        return F.pad(y, (p, p, p, p), mode="reflect")

    y = F.relu(inorm(conv(rpad(x, 3), "conv01_1"), "in01_1"))
    y = F.relu(inorm(conv(conv(y, "conv02_1", 2, 1), "conv02_2", 1, 1), "in02_1"))
    y = F.relu(inorm(conv(conv(y, "conv03_1", 2, 1), "conv03_2", 1, 1), "in03_1"))
    for i in range(4, 12):
        r = F.relu(inorm(conv(rpad(y, 1), f"conv{i:02d}_1"), f"in{i:02d}_1"))
        y = inorm(conv(rpad(r, 1), f"conv{i:02d}_2"), f"in{i:02d}_2") + y
    y = F.relu(inorm(conv(deconv(y, "deconv01_1"), "deconv01_2", 1, 1), "in12_1"))
    y = F.relu(inorm(conv(deconv(y, "deconv02_1"), "deconv02_2", 1, 1), "in13_1"))
    return torch.tanh(conv(rpad(y, 3), "deconv03_1"))


def authors_pipeline(weights: dict, image: Image.Image, load_size: int) -> np.ndarray:
    """test.py of Yijunmaverick/CartoonGAN-Test-Pytorch-Torch, step by step: resize (their h
    is the width; the short side truncated), RGB -> BGR, [-1, 1], the net on the image as it
    is, BGR -> RGB, x * 0.5 + 0.5, rounded as save_image does; uint8 RGB cropped to the
    resized input's size (the net returns sides rounded up to a multiple of 4)."""
    h, w = image.size  # sic: their h is the width
    ratio = h * 1.0 / w
    if ratio > 1:
        h = load_size
        w = int(h * 1.0 / ratio)
    else:
        w = load_size
        h = int(w * ratio)
    a = np.asarray(image.resize((h, w), Image.BICUBIC))[:, :, [2, 1, 0]]
    x = torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)[None] * 2 - 1
    with torch.no_grad():
        y = reference_forward(weights, x)[0][[2, 1, 0]] * 0.5 + 0.5
    out = y.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return out[:a.shape[0], :a.shape[1]]


# ------------------------------------------------------------------ layout (no weights needed)

def test_published_layout():
    sd = CartoonGANGenerator().state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == published_shapes()
    assert len(sd) == 94
    assert CartoonGANGenerator.size_multiple == 4


@pytest.mark.parametrize("norm,activation", [("batch", "relu"), ("instance", "leaky_relu")])
def test_training_variants_any_size(norm, activation):
    net = CartoonGANGenerator(norm=norm, activation=activation).eval()
    assert {k for k in net.state_dict() if k.startswith("conv")} == \
        {k for k in published_shapes() if k.startswith("conv")}
    with torch.no_grad():
        y = run_padded(net, torch.rand(1, 3, 37, 30) * 2 - 1)
    assert y.shape == (1, 3, 37, 30) and y.abs().max() <= 1


def test_tiny_images_are_padded_up_not_crashed():
    net = CartoonGANGenerator(ngf=8, n_blocks=1).eval()
    for width, height in [(1, 1), (3, 2), (7, 5)]:
        out = cartoonize_image(GeneratorRunner(net, RunOptions.reference()), Image.new("RGB", (width, height), (90, 140, 200)), load_size=0)
        assert out.size == (width, height)


def test_style_size_follows_reference_truncation():
    assert style_size((800, 600), 450) == (450, 337)   # int(337.5)
    assert style_size((640, 960), 450) == (300, 450)
    assert style_size((500, 500), 450) == (450, 450)
    assert style_size((123, 45), 0) == (123, 45)


def test_never_overwrites_inputs(tmp_path):
    Image.new("RGB", (16, 12), "red").save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="overwrite an input"):
        cartoonize_files(CartoonGANGenerator(), [tmp_path / "a.png"], tmp_path, progress=False)
    assert Image.open(tmp_path / "a.png").getpixel((0, 0)) == (255, 0, 0)


def test_unknown_style():
    with pytest.raises(ValueError, match="valid: hayao, hosoda, paprika, shinkai"):
        load_style("ghibli", weights=WEIGHTS / "hayao")


# ------------------------------------------------------------------ published weights

@needs_weights
@pytest.mark.parametrize("style", ["hayao", "shinkai"])
def test_published_weights_load_strictly(style):
    files = read_npy(style)
    assert len(files) == 94
    assert {k: tuple(v.shape) for k, v in files.items()} == published_shapes()
    net = load_published_weights(CartoonGANGenerator(), WEIGHTS / style)
    for k, v in net.state_dict().items():
        assert torch.equal(v, files[k]), k


@needs_weights
def test_pth_safetensors_and_strict_errors(tmp_path):
    from safetensors.torch import save_file

    sd = read_npy("hayao")
    torch.save(sd, tmp_path / "hayao.pth")
    save_file(sd, str(tmp_path / "hayao.safetensors"))
    for f in ("hayao.pth", "hayao.safetensors"):
        net = load_published_weights(CartoonGANGenerator(), tmp_path / f)
        assert torch.equal(net.in07_2.shift, sd["in07_2.shift"])

    bad = dict(sd)
    bad["in05_1.gamma"] = bad.pop("in05_1.scale")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as e:
        load_published_weights(CartoonGANGenerator(), tmp_path / "bad.pth")
    assert str(tmp_path / "bad.pth") in str(e.value)
    assert "in05_1.scale" in str(e.value) and "in05_1.gamma" in str(e.value)

    folder = tmp_path / "partial"
    folder.mkdir()
    for f in (WEIGHTS / "hayao").glob("*.npy"):
        if f.name != "deconv03_1.bias.npy":
            (folder / f.name).symlink_to(f)
    with pytest.raises(ValueError, match="deconv03_1.bias") as e:
        load_published_weights(CartoonGANGenerator(), folder)
    assert str(folder) in str(e.value)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_published_weights(CartoonGANGenerator(), tmp_path / "nowhere")


@needs_weights
@pytest.mark.parametrize("style,photo,load_size", [("hayao", "4--24.jpg", 256), ("shinkai", "sjtu.jpg", 256)])
def test_matches_independent_reference(style, photo, load_size):
    expected = authors_pipeline(read_npy(style), Image.open(PHOTOS / photo).convert("RGB"), load_size)
    net = load_style(style, weights=WEIGHTS / style)
    got = np.asarray(cartoonize_image(GeneratorRunner(net, RunOptions.reference()), Image.open(PHOTOS / photo), load_size))
    assert got.shape == expected.shape
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    print(f"{style}: mean abs diff {diff.mean():.4f}/255, max {diff.max()}/255")
    # The code gives ~3e-5/255 (a rare pixel off by one from float rounding); truncating instead
    # of rounding would give ~0.5.
    assert diff.mean() <= 0.01, diff.mean()
    assert expected.std() > 20  # a picture, not a flat field
    x = torch.rand(1, 3, 48, 64) * 2 - 1  # before 8-bit rounding too: float agreement
    with torch.no_grad():
        assert (net(x) - reference_forward(read_npy(style), x)).abs().max() < 1e-4


@needs_weights
def test_run_cartoonize_folder(tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    for name in ("7--88.jpg", "origami.jpg"):  # landscape 1147x768 and portrait 640x864
        shutil.copy(PHOTOS / name, src / name)
    parser = add_cartoonize_arguments(argparse.ArgumentParser())
    argv = ["--style", "shinkai", "--input", str(src), "--output", str(tmp_path / "out"), "--load_size", "96",
            "--weights", str(WEIGHTS / "shinkai"), "--device", "cpu", "--no_progress"]
    assert run_cartoonize(parser.parse_args(argv)) == 0
    out = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in out] == ["7--88.png", "origami.png"]
    # Long side = load_size, the other truncated as the reference does; sizes not multiples of 4.
    assert [Image.open(p).size for p in out] == [(96, 64), (71, 96)]
    assert Image.open(out[0]).mode == "RGB"

    before = [p.stat().st_mtime_ns for p in out]
    assert run_cartoonize(parser.parse_args(argv)) == 0
    assert "Kept 2 existing" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in out] == before
    assert sorted(p.name for p in src.iterdir()) == ["7--88.jpg", "origami.jpg"]


# ------------------------------------------------------------------ download path

@pytest.fixture
def weights_server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(WEIGHTS)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@needs_weights
def test_download_into_cache_then_offline(weights_server, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFIGURE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TRANSFIGURE_CARTOONGAN_URL", weights_server)
    net = load_style("hayao", progress=False)
    cached = tmp_path / "cache" / "cartoongan" / "hayao"
    assert sorted(p.name for p in cached.iterdir()) == sorted(p.name for p in (WEIGHTS / "hayao").glob("*.npy"))
    assert (cached / "conv05_2.weight.npy").read_bytes() == (WEIGHTS / "hayao" / "conv05_2.weight.npy").read_bytes()

    # Offline: the cache alone suffices, whatever the URL.
    (cached / "in13_1.shift.npy").unlink()  # ... except a tensor lost from the cache, which is fetched again
    with pytest.raises(DownloadError, match="in13_1.shift.npy") as e:
        load_style("hayao", base_url=_closed_port_url(), progress=False)
    assert "--weights" in str(e.value)
    assert load_style("hayao", progress=False) is not None  # server up: only that tensor is fetched
    offline = load_style("hayao", base_url=_closed_port_url(), progress=False)
    for k, v in net.state_dict().items():
        assert torch.equal(v, offline.state_dict()[k]), k


@needs_weights
def test_missing_style_on_server(weights_server, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFIGURE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DownloadError, match="HTTP 404") as e:
        load_style("hosoda", base_url=weights_server + "/", progress=False)
    assert f"{weights_server}/hosoda/conv01_1.weight.npy" in str(e.value)
    folder = tmp_path / "cache" / "cartoongan" / "hosoda"
    assert not folder.exists() or not any(folder.iterdir())
