"""How a generator runs: the backend and precision decisions (given the hardware's
facts, not read from this machine), every backend against PyTorch fp32, the
conversion cache, and every training precision."""
import math

import pytest
import torch

from transfigure.devices import Precision
from transfigure.nets import define_G, run_padded
from transfigure.nets.cartoongan import CartoonGANGenerator
from transfigure.runner import GeneratorRunner, RunOptions, choose_backend, installed

CPU = torch.device("cpu")
FP32, BF16 = Precision("fp32", "test"), Precision("bf16", "test")
BOTH = {"onnxruntime": True, "openvino": True}
CONVERTERS = [b for b in ("onnxruntime", "openvino") if installed(b, "onnx", "onnxscript")]


def resnet(seed=0, **kw):
    torch.manual_seed(seed)
    return define_G(3, 3, 8, "resnet_2blocks", norm="instance", **kw).eval()


def test_auto_backend_follows_device_precision_and_what_is_installed():
    net = resnet()
    assert choose_backend("auto", CPU, FP32, net, available=BOTH).name == "onnxruntime"
    assert choose_backend("auto", CPU, BF16, net, available=BOTH).name == "openvino"
    assert choose_backend("auto", CPU, FP32, net, available={"onnxruntime": False, "openvino": True}).name == \
        "openvino"
    none = choose_backend("auto", CPU, BF16, net, available={"onnxruntime": False, "openvino": False})
    assert none.name == "torch" and "no faster backend installed" in none.reason
    assert choose_backend("auto", torch.device("cuda"), BF16, net, available=BOTH).name == "torch"
    # Only PyTorch computes these: tiles sharing instance-norm statistics, batch norm in training mode.
    assert choose_backend("auto", CPU, FP32, net, tile=64, available=BOTH).name == "torch"
    unet = define_G(3, 3, 8, "unet_32", norm="batch").train()
    assert "training mode" in choose_backend("auto", CPU, FP32, unet, available=BOTH).reason
    with pytest.raises(ValueError, match="--backend openvino cannot run this model.*training mode"):
        choose_backend("openvino", CPU, FP32, unet, available=BOTH)
    with pytest.raises(ValueError, match="onnxruntime runs fp32 only"):
        choose_backend("onnxruntime", CPU, BF16, net, available=BOTH)
    with pytest.raises(RuntimeError, match="pip install onnx onnxscript onnxruntime openvino"):
        choose_backend("openvino", CPU, FP32, net, available={"onnxruntime": True, "openvino": False})
    with pytest.raises(ValueError, match="--backend .*'tensorrt'"):
        RunOptions(backend="tensorrt")


def psnr(a, b):
    mse = ((a - b) ** 2).mean().item() / 4  # [-1, 1] images: a range of 2
    return 10 * math.log10(1 / mse) if mse else math.inf


@pytest.mark.parametrize("backend", CONVERTERS)
@pytest.mark.parametrize("make_net", [resnet, lambda: CartoonGANGenerator(ngf=8, n_blocks=1).eval(),
                                      lambda: define_G(3, 3, 8, "unet_32", norm="batch").eval()],
                         ids=["resnet", "cartoongan", "unet"])
def test_every_backend_matches_pytorch_fp32(backend, make_net, capsys):
    torch.manual_seed(1)
    net = make_net()
    x = torch.rand(2, 3, 45, 70) * 2 - 1  # off every net's size grid: the graph pads inside
    with torch.no_grad():
        expected = run_padded(net, x)
    runner = GeneratorRunner(net, RunOptions(device="cpu", precision="fp32", backend=backend))
    assert runner.backend.name == backend and backend in runner.describe()
    got = runner(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < 1e-3
    if make_net is not resnet:
        return
    # Converted once, then read from the cache: the same weights convert no more, others do.
    fresh = resnet(seed=10 + CONVERTERS.index(backend))
    capsys.readouterr()
    GeneratorRunner(fresh, RunOptions(device="cpu", precision="fp32", backend=backend))
    assert "Converting" in capsys.readouterr().out
    GeneratorRunner(fresh, RunOptions(device="cpu", precision="fp32", backend=backend))
    assert "Converting" not in capsys.readouterr().out


@pytest.mark.parametrize("backend", CONVERTERS)
def test_tiles_and_batches_on_converted_backends(backend):
    torch.manual_seed(1)  # the U-Net of the test above: its conversion is cached
    net = define_G(3, 3, 8, "unet_32", norm="batch").eval()  # eval batch norm: no per-image statistics
    x = torch.rand(3, 3, 80, 96) * 2 - 1
    reference = GeneratorRunner(net, RunOptions.reference(tile=64, tile_overlap=32))(x)
    got = GeneratorRunner(net, RunOptions(device="cpu", precision="fp32", backend=backend, tile=64,
                                          tile_overlap=32))(x)
    assert (got - reference).abs().max().item() < 1e-3


@pytest.mark.parametrize("backend", ["torch", *(b for b in CONVERTERS if b == "openvino")])
def test_bf16_stays_close_to_fp32(backend):
    torch.manual_seed(1)
    net = CartoonGANGenerator(ngf=8, n_blocks=1).eval()
    x = torch.rand(1, 3, 40, 52) * 2 - 1
    fp32 = GeneratorRunner(net, RunOptions.reference())(x)
    bf16 = GeneratorRunner(net, RunOptions(device="cpu", precision="bf16", backend=backend))(x)
    assert bf16.dtype == torch.float32 and psnr(bf16, fp32) >= 35
