"""Published models by name: the registry, downloads from a local server into
the cache (truncated or wrong-checksum files never cached), a legacy official
CycleGAN file loading through the registry path, and translate --pretrained."""
import dataclasses
import io
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from transfigure.cli import main
from transfigure.download import DownloadError
from transfigure.nets import define_G, run_padded
from transfigure.pretrained import MODELS, cached_path, fetch, get_model

from shared_data import PHOTOS, WEIGHTS, needs_shared


def _legacy_cyclegan_file() -> tuple[bytes, nn.Module]:
    """An official horse2zebra-layout generator saved before PyTorch 0.4 (InstanceNorm running-stat keys)."""
    torch.manual_seed(0)
    net = define_G(3, 3, ngf=64, netG="resnet_9blocks", norm="instance", use_dropout=False)
    state = dict(net.state_dict())
    for name, m in net.named_modules():
        if isinstance(m, nn.InstanceNorm2d):
            state[f"{name}.running_mean"] = torch.zeros(m.num_features)
            state[f"{name}.running_var"] = torch.ones(m.num_features)
            state[f"{name}.num_batches_tracked"] = torch.tensor(0)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue(), net.eval()


@pytest.fixture(scope="module")
def server():
    body, net = _legacy_cyclegan_file()
    files = {"/cyclegan/pretrained_models/horse2zebra.pth": body}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path in files:
                self.send_response(200)
                self.send_header("Content-Length", str(len(files[self.path])))
                self.end_headers()
                self.wfile.write(files[self.path])
            elif self.path == "/cyclegan/pretrained_models/monet2photo.pth":  # no length, cut short
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body[:len(body) // 2])
                self.close_connection = True
            elif self.path == "/cyclegan/pretrained_models/zebra2horse.pth":   # hangs up part-way
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:1000])
                self.close_connection = True
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", net
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def mirror(server, tmp_path, monkeypatch):
    url, net = server
    monkeypatch.setenv("TRANSFIGURE_MIRROR", url)
    monkeypatch.setenv("TRANSFIGURE_CACHE", str(tmp_path / "cache"))
    return url, net


def test_registry_lists_all_33_models(capsys):
    assert len(MODELS) == 33
    families = [m.family for m in MODELS.values()]
    assert families.count("cyclegan") == 18 and families.count("pix2pix") == 5 and families.count("cartoongan") == 4
    assert families.count("cut") == 6
    cut = get_model("cut_horse2zebra")
    assert cut.url == "http://efrosgans.eecs.berkeley.edu/CUT/pretrained_models.tar"
    assert cut.member == "horse2zebra_cut_pretrained/latest_net_G.pth"
    assert cut.architecture["no_antialias"] is False and cut.architecture["no_antialias_up"] is False
    assert get_model("horse2zebra").url == "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/horse2zebra.pth"
    assert get_model("pix2pix_facades_label2photo").architecture["netG"] == "unet_256"
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "33 models" in out and out.count("source: ") == 33 and out.count("licence: ") == 33
    with pytest.raises(ValueError, match="did you mean horse2zebra"):
        get_model("horse2zebr")


def test_registry_entries_carry_their_preprocessing_as_data():
    """Callers follow these fields (colour order, load size, value range), never a family name."""
    from transfigure.pretrained import CARTOONGAN_PREPROCESSING, PLAIN

    for m in MODELS.values():
        p = m.preprocessing
        assert p.value_range == (-1.0, 1.0) and p.note
        if m.family == "cartoongan":
            assert p == CARTOONGAN_PREPROCESSING and (p.channel_order, p.load_size) == ("BGR", 450)
            assert p.per_image and m.tensor_folder
        else:
            assert (p.channel_order, p.load_size) == (PLAIN.channel_order, PLAIN.load_size) and not p.per_image
            assert not m.tensor_folder and (m.url.endswith(".pth") or m.member.endswith(".pth"))


def test_translate_pretrained_downloads_once_and_loads_a_legacy_file(mirror, tmp_path):
    _, net = mirror
    photo = tmp_path / "horse.png"
    pixels = np.random.default_rng(0).integers(0, 256, (40, 56, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(photo)
    out = tmp_path / "out"
    assert main(["translate", "--pretrained", "horse2zebra", "--input", str(photo), "--output", str(out),
                 "--no_progress"]) == 0
    cached = cached_path(get_model("horse2zebra"))
    assert cached.is_file() and not list(cached.parent.glob(".transfigure-*"))
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        expected = ((run_padded(net, x)[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    got = np.asarray(Image.open(out / "horse.png"))
    assert got.shape == (40, 56, 3) and np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    # Second use: from the cache; the file is not downloaded again.
    stamp = cached.stat().st_mtime_ns
    assert main(["translate", "--pretrained", "horse2zebra", "--input", str(photo), "--output", str(out),
                 "--overwrite", "--no_progress"]) == 0
    assert cached.stat().st_mtime_ns == stamp


def test_truncated_and_wrong_checksum_downloads_are_never_cached(mirror):
    with pytest.raises(DownloadError, match="zebra2horse.pth"):
        fetch(get_model("zebra2horse"), progress=False)
    assert not cached_path(get_model("zebra2horse")).exists()
    wrong = dataclasses.replace(get_model("horse2zebra"), sha256="0" * 64)
    with pytest.raises(DownloadError, match="sha256"):
        fetch(wrong, progress=False)
    folder = cached_path(wrong).parent
    assert not cached_path(wrong).exists() and not list(folder.glob(".transfigure-*"))


def test_cut_short_without_content_length_is_never_cached(mirror):
    """HTTP/1.0-style body ended by closing the connection: nothing tells a short body from
    a whole one but the file itself, so it must load before it is renamed into the cache."""
    with pytest.raises(DownloadError, match="monet2photo.pth.*cut short"):
        fetch(get_model("monet2photo"), progress=False)
    assert not cached_path(get_model("monet2photo")).exists()
    assert not list(cached_path(get_model("monet2photo")).parent.glob(".transfigure-*"))


def test_a_damaged_cached_file_is_removed_and_the_message_says_retry(mirror, tmp_path, capsys):
    cached = cached_path(get_model("horse2zebra"))
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"damaged on disk")
    photo = tmp_path / "a.png"
    Image.new("RGB", (16, 16)).save(photo)
    argv = ["translate", "--pretrained", "horse2zebra", "--input", str(photo), "--output", str(tmp_path / "o"),
            "--no_progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "horse2zebra.pth" in err and "run the command again" in err
    assert not cached.exists()
    assert main(argv) == 0 and cached.is_file()  # the retry downloads it anew


def test_offline_error_names_url_and_weights_option(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TRANSFIGURE_MIRROR", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("TRANSFIGURE_CACHE", str(tmp_path / "cache"))
    photo = tmp_path / "a.png"
    Image.new("RGB", (16, 16)).save(photo)
    assert main(["translate", "--pretrained", "style_monet", "--input", str(photo), "--output",
                 str(tmp_path / "o"), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}/cyclegan/pretrained_models/style_monet.pth" in err and "--weights" in err
    assert main(["translate", "--name", "x", "--weights", str(photo), "--input", str(photo), "--output",
                 str(tmp_path / "o")]) == 2                       # --weights only with --pretrained


def test_weights_option_overrides_the_download(tmp_path, monkeypatch):
    body, _ = _legacy_cyclegan_file()
    local = tmp_path / "my_copy.pth"
    local.write_bytes(body)
    monkeypatch.setenv("TRANSFIGURE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TRANSFIGURE_MIRROR", "http://127.0.0.1:9")   # never reached
    photo = tmp_path / "a.png"
    Image.new("RGB", (20, 12), (200, 100, 50)).save(photo)
    assert main(["translate", "--pretrained", "monet2photo", "--weights", str(local), "--input", str(photo),
                 "--output", str(tmp_path / "o"), "--no_progress"]) == 0
    assert Image.open(tmp_path / "o" / "a.png").size == (20, 12)
    assert not (tmp_path / "cache").exists()


@needs_shared(WEIGHTS / "shinkai", PHOTOS / "temple.jpg")
def test_cartoongan_style_through_translate_pretrained(tmp_path):
    """`translate --pretrained shinkai` takes the style's own path (450-px resize, BGR):
    the authors' pipeline's result, not the plain translate path's, on the default backend."""
    from test_cartoonize import authors_pipeline, read_npy

    photo = tmp_path / "p.png"
    Image.open(PHOTOS / "temple.jpg").convert("RGB").resize((227, 151), Image.BICUBIC).save(photo)
    # --backend auto: the default users get (onnxruntime or openvino on a CPU), converted from these weights.
    assert main(["translate", "--pretrained", "shinkai", "--weights", str(WEIGHTS / "shinkai"), "--input",
                 str(photo), "--output", str(tmp_path / "o"), "--no_progress", "--backend", "auto"]) == 0
    got = np.asarray(Image.open(tmp_path / "o" / "p.png"))
    expected = authors_pipeline(read_npy("shinkai"), Image.open(photo).convert("RGB"), 450)
    assert got.shape == expected.shape == (299, 450, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).mean() <= 0.01