"""The official network layouts (DESIGN.md "Official layouts"), their loaders and the size helpers."""
import math

import pytest
import torch
from torch import nn

from transfigure.nets import (clean_official_state_dict, define_D, define_G, get_norm_layer, init_weights,
                              load_official_state_dict, run_padded, size_multiple)
from transfigure.nets.common import accepts_any_size


def n_params(net):
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(scope="module")
def resnet9():
    return define_G(3, 3)  # CycleGAN default: resnet_9blocks, ngf 64, instance norm, no dropout


# ---------------------------------------------------------------- layouts

def test_resnet_9blocks_matches_official_layout(resnet9):
    sd = resnet9.state_dict()
    assert len(sd) == 48
    assert n_params(resnet9) == 11_378_179
    assert sd["model.1.weight"].shape == (64, 3, 7, 7)
    assert sd["model.10.conv_block.1.weight"].shape == (256, 256, 3, 3)
    assert sd["model.18.conv_block.5.weight"].shape == (256, 256, 3, 3)
    assert sd["model.19.weight"].shape == (256, 128, 3, 3)  # ConvTranspose2d weights are [in, out, k, k]
    assert sd["model.26.weight"].shape == (3, 64, 7, 7)
    assert "model.1.bias" in sd and "model.26.bias" in sd  # instance norm: convs carry a bias
    m = resnet9.model
    assert len(m) == 28
    kinds = {0: nn.ReflectionPad2d, 2: nn.InstanceNorm2d, 7: nn.Conv2d, 19: nn.ConvTranspose2d,
             22: nn.ConvTranspose2d, 25: nn.ReflectionPad2d, 27: nn.Tanh}
    assert all(isinstance(m[i], k) for i, k in kinds.items())
    assert m[19].output_padding == (1, 1) and m[7].stride == (2, 2)
    assert not m[2].affine and m[2].running_mean is None


def test_resnet_block_counts_and_batch_norm():
    assert len(define_G(3, 3, netG="resnet_6blocks").state_dict()) == 36
    small = define_G(3, 1, ngf=8, netG="resnet_2blocks")
    assert sum(k.endswith("conv_block.1.weight") for k in small.state_dict()) == 2
    bn = define_G(3, 3, ngf=8, netG="resnet_6blocks", norm="batch").state_dict()
    assert "model.1.bias" not in bn and "model.10.conv_block.1.bias" not in bn  # BN's shift replaces the bias
    assert {"model.2.weight", "model.2.bias", "model.2.running_mean", "model.2.num_batches_tracked"} <= bn.keys()
    assert "model.20.running_var" in bn and "model.23.bias" in bn  # the last conv keeps its bias
    none = define_G(3, 3, ngf=8, netG="resnet_6blocks", norm="none")
    assert isinstance(none.model[2], nn.Identity) and "model.1.bias" not in none.state_dict()  # official rule


def test_resnet_dropout_shifts_second_half_of_block():
    plain = define_G(3, 3, ngf=8, netG="resnet_2blocks")
    drop = define_G(3, 3, ngf=8, netG="resnet_2blocks", use_dropout=True)
    assert len(plain.model[10].conv_block) == 7 and len(drop.model[10].conv_block) == 8
    assert isinstance(drop.model[10].conv_block[4], nn.Dropout) and drop.model[10].conv_block[4].p == 0.5
    assert isinstance(drop.model[10].conv_block[5], nn.ReflectionPad2d)
    assert "model.10.conv_block.5.weight" in plain.state_dict()
    assert "model.10.conv_block.6.weight" in drop.state_dict()
    assert "model.10.conv_block.5.weight" not in drop.state_dict()


def test_unet_256_matches_official_layout():
    net = define_G(3, 3, netG="unet_256", norm="batch", use_dropout=True)
    sd = net.state_dict()
    assert len(sd) == 82
    assert n_params(net) == 54_413_955
    assert sd["model.model.0.weight"].shape == (64, 3, 4, 4)
    assert sd["model.model.3.weight"].shape == (128, 3, 4, 4) and "model.model.3.bias" in sd  # outermost upconv
    assert "model.model.1.model.1.weight" in sd and "model.model.1.model.1.bias" not in sd
    assert sd["model.model.1.model.3.model.1.weight"].shape == (256, 128, 4, 4)
    innermost = "model.model.1.model" + ".3.model" * 6  # 8 nested blocks, submodule at index 3
    assert sd[innermost + ".1.weight"].shape == (512, 512, 4, 4)  # its downconv: no norm after it
    assert sd[innermost + ".4.running_mean"].shape == (512,)
    assert not any(k.startswith(innermost + ".2.") for k in sd)
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 3  # only the num_downs - 5 ngf*8 levels
    outer = net.model.model
    assert isinstance(outer[0], nn.Conv2d) and isinstance(outer[2], nn.ReLU) and isinstance(outer[4], nn.Tanh)


@pytest.mark.parametrize("name,downs", [("unet_32", 5), ("unet_64", 6), ("unet_128", 7), ("unet_256", 8)])
def test_unet_depths(name, downs):
    net = define_G(3, 3, ngf=4, netG=name)
    depth = max(k.split(".").count("model") for k in net.state_dict()) - 1
    assert depth == downs
    assert size_multiple(net) == 2 ** downs
    x = torch.randn(1, 3, 2 ** downs, 2 ** downs)
    assert net(x).shape == (1, 3, 2 ** downs, 2 ** downs)


def test_basic_discriminator_layout():
    d = define_D(3, netD="basic", norm="batch")
    convs = {i for i, m in enumerate(d.model) if isinstance(m, nn.Conv2d)}
    assert convs == {0, 2, 5, 8, 11} and len(d.model) == 12
    assert all(isinstance(d.model[i], nn.BatchNorm2d) for i in (3, 6, 9))
    assert all(isinstance(d.model[i], nn.LeakyReLU) and d.model[i].negative_slope == 0.2 for i in (1, 4, 7, 10))
    sd = d.state_dict()
    assert sd["model.0.weight"].shape == (64, 3, 4, 4) and "model.0.bias" in sd
    assert sd["model.8.weight"].shape == (512, 256, 4, 4) and "model.8.bias" not in sd
    assert sd["model.11.weight"].shape == (1, 512, 4, 4) and "model.11.bias" in sd
    assert [d.model[i].stride for i in sorted(convs)] == [(2, 2)] * 3 + [(1, 1)] * 2
    assert len(define_D(3).state_dict()) == 10  # instance norm: 5 convs with bias, no norm entries
    deep = define_D(3, ndf=8, netD="n_layers", n_layers_D=5).state_dict()
    assert deep["model.14.weight"].shape == (64, 64, 4, 4)  # nf_mult capped at 8
    pixel = define_D(3, netD="pixel", norm="batch").state_dict()
    assert pixel["net.0.weight"].shape == (64, 3, 1, 1) and "net.3.running_mean" in pixel


@pytest.mark.parametrize("netD,n_layers,side", [("basic", 3, 6), ("n_layers", 1, 30), ("n_layers", 2, 14),
                                                ("n_layers", 3, 6), ("n_layers", 4, 2), ("pixel", 3, 64)])
def test_discriminator_output_sizes(netD, n_layers, side):
    d = define_D(3, ndf=8, netD=netD, n_layers_D=n_layers)
    assert d(torch.randn(2, 3, 64, 64)).shape == (2, 1, side, side)
    assert size_multiple(d) == 1


@pytest.mark.parametrize("kwargs", [dict(netG="resnet_0blocks"), dict(netG="unet_48"), dict(netG="unet_16"),
                                    dict(netG="resnet9"), dict(norm="group")])
def test_unknown_generator_options_raise(kwargs):
    with pytest.raises(ValueError) as e:
        define_G(3, 3, ngf=4, **kwargs)
    if "netG" in kwargs:
        assert "resnet_9blocks" in str(e.value) and "unet_256" in str(e.value)


def test_unknown_discriminator_options_raise():
    with pytest.raises(ValueError, match="basic, n_layers, pixel"):
        define_D(3, netD="patch")
    with pytest.raises(ValueError, match="orthogonal"):
        define_D(3, init_type="uniform")


def test_get_norm_layer():
    inorm = get_norm_layer("instance")(5)
    assert isinstance(inorm, nn.InstanceNorm2d) and not inorm.affine and not inorm.track_running_stats
    bnorm = get_norm_layer("batch")(5)
    assert isinstance(bnorm, nn.BatchNorm2d) and bnorm.affine and bnorm.track_running_stats
    assert isinstance(get_norm_layer("none")(5), nn.Identity)


# ---------------------------------------------------------------- init

def _big_conv(net):  # model.8 of a 64-ndf PatchGAN: [512, 256, 4, 4], 2M weights
    return net.model[8]


@pytest.mark.parametrize("init_type,gain", [("normal", 0.02), ("normal", 0.1), ("xavier", 0.02),
                                            ("kaiming", 0.02), ("orthogonal", 0.02)])
def test_init_types(init_type, gain):
    d = define_D(3, norm="batch", init_type=init_type, init_gain=gain)
    w = _big_conv(d).weight.detach()
    fan_in, fan_out = 256 * 16, 512 * 16
    expected = {"normal": gain, "xavier": gain * math.sqrt(2 / (fan_in + fan_out)),
                "kaiming": math.sqrt(2 / fan_in), "orthogonal": gain / math.sqrt(fan_in)}[init_type]
    assert w.std().item() == pytest.approx(expected, rel=0.05)
    assert abs(w.mean().item()) < expected * 0.05
    if init_type == "orthogonal":  # rows of the [512, 4096] matrix are orthogonal with norm gain
        flat = w.reshape(512, -1)
        assert torch.allclose(flat @ flat.T, gain ** 2 * torch.eye(512), atol=1e-6)
    assert torch.count_nonzero(d.model[0].bias) == 0 and torch.count_nonzero(d.model[11].bias) == 0
    bn = d.model[9].weight.detach()  # BatchNorm weight ~ N(1, gain), bias 0
    assert bn.mean().item() == pytest.approx(1.0, abs=4 * gain / math.sqrt(512))
    assert bn.std().item() == pytest.approx(gain, rel=0.2)
    assert torch.count_nonzero(d.model[9].bias) == 0


def test_init_weights_reaches_transposed_convs():
    g = define_G(3, 3, ngf=16, netG="resnet_1blocks")
    with torch.no_grad():
        for p in g.parameters():
            p.fill_(1.0)
    assert init_weights(g, "normal", 0.02) is g
    up = g.model[11]
    assert isinstance(up, nn.ConvTranspose2d)
    assert up.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.count_nonzero(up.bias) == 0


# ---------------------------------------------------------------- loading

def _legacy(sd, net):
    """An official file saved before PyTorch 0.4: InstanceNorm layers carried running stats."""
    old = dict(sd)
    for name, m in net.named_modules():
        if isinstance(m, nn.InstanceNorm2d):
            old[f"{name}.running_mean"] = torch.zeros(m.num_features)
            old[f"{name}.running_var"] = torch.ones(m.num_features)
            old[f"{name}.num_batches_tracked"] = torch.tensor(0)
    return old


def _pair(netG="resnet_2blocks", seed=0, **kw):
    torch.manual_seed(seed)
    src = define_G(3, 3, ngf=8, netG=netG, **kw).eval()
    torch.manual_seed(seed + 1)
    dst = define_G(3, 3, ngf=8, netG=netG, **kw).eval()
    return src, dst


@pytest.mark.parametrize("netG", ["resnet_2blocks", "unet_32"])
def test_legacy_instance_norm_keys_load_strictly(netG):
    src, dst = _pair(netG)
    old = _legacy(src.state_dict(), src)
    n_norms = sum(isinstance(m, nn.InstanceNorm2d) for m in src.modules())
    assert n_norms > 0 and len(old) == len(src.state_dict()) + 3 * n_norms
    x = torch.randn(1, 3, 32, 32)
    assert not torch.allclose(dst(x), src(x))
    with pytest.raises(RuntimeError):  # a plain strict load rejects such files
        _pair(netG)[1].load_state_dict(old, strict=True)
    assert load_official_state_dict(dst, old) is dst
    assert torch.equal(dst(x), src(x))


def test_clean_keeps_batch_norm_stats_and_drops_metadata():
    net = define_G(3, 3, ngf=4, netG="resnet_1blocks", norm="batch")
    sd = net.state_dict()
    assert hasattr(sd, "_metadata")
    cleaned = clean_official_state_dict(sd, net)
    assert list(cleaned) == list(sd) and not hasattr(cleaned, "_metadata")
    assert "model.2.num_batches_tracked" in cleaned
    with_key = dict(sd, _metadata={})
    assert "_metadata" not in clean_official_state_dict(with_key, net)


def test_module_prefix_is_stripped():
    src, dst = _pair()
    wrapped = {f"module.{k}": v for k, v in src.state_dict().items()}
    load_official_state_dict(dst, wrapped)
    x = torch.randn(1, 3, 16, 16)
    assert torch.equal(dst(x), src(x))


def test_load_from_file(tmp_path):
    src, dst = _pair()
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(_legacy(src.state_dict(), src), path)
    x = torch.randn(1, 3, 16, 20)
    load_official_state_dict(dst, path)
    assert torch.equal(dst(x), src(x))
    _, other = _pair(seed=5)
    load_official_state_dict(other, str(path))
    assert torch.equal(other(x), src(x))


def test_wrong_architecture_file_names_file_and_architecture(tmp_path):
    path = tmp_path / "horse2zebra.pth"
    torch.save(define_G(3, 3, ngf=8, netG="resnet_6blocks").state_dict(), path)
    net = define_G(3, 3, ngf=8, netG="resnet_9blocks")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError) as e:
        load_official_state_dict(net, path)
    msg = str(e.value)
    assert str(path) in msg
    assert "resnet_6blocks" in msg and "resnet_9blocks" in msg
    assert "16 keys missing from the weights: model.16.conv_block.1.weight" in msg
    assert "4 unexpected keys in the weights: model.16.weight" in msg
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing half-loaded


def test_mismatch_messages_for_shapes_and_dropout():
    with pytest.raises(ValueError, match="keys with other shapes: model.1.weight") as e:
        load_official_state_dict(define_G(3, 3, ngf=16, netG="resnet_2blocks"),
                                 define_G(3, 3, ngf=8, netG="resnet_2blocks").state_dict())
    assert "ngf 8" in str(e.value) and "ngf 16" in str(e.value)
    with pytest.raises(ValueError, match="no dropout") as e:
        load_official_state_dict(define_G(3, 3, ngf=8, netG="resnet_2blocks", use_dropout=True),
                                 define_G(3, 3, ngf=8, netG="resnet_2blocks").state_dict())
    assert "unexpected" in str(e.value)
    with pytest.raises(ValueError, match="unet_32"):
        load_official_state_dict(define_G(3, 3, ngf=4, netG="unet_64"), define_G(3, 3, ngf=4, netG="unet_32").state_dict())


def test_non_state_dict_file_raises_value_error(tmp_path):
    path = tmp_path / "latest.ckpt"
    torch.save({"nets": {"G_A": define_G(3, 3, ngf=4, netG="resnet_1blocks").state_dict()}, "epoch": 3}, path)
    with pytest.raises(ValueError, match="latest.ckpt"):
        load_official_state_dict(define_G(3, 3, ngf=4, netG="resnet_1blocks"), path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pth"):
        load_official_state_dict(define_G(3, 3, ngf=4, netG="resnet_1blocks"), junk)


# ---------------------------------------------------------------- sizes

def test_size_multiple_reads_the_generator_and_sees_through_wrappers():
    g = define_G(3, 3, ngf=4, netG="resnet_1blocks")
    assert size_multiple(g) == 4
    assert size_multiple(nn.DataParallel(g)) == 4
    assert size_multiple(define_G(3, 3, ngf=4, netG="unet_128")) == 128
    assert size_multiple(define_D(3, ndf=4)) == 1


SIZES = [(257, 183), (1, 1), (3, 5), (7, 2), (2, 9), (30, 31)]


@pytest.mark.parametrize("netG", ["resnet_1blocks", "unet_256"])
def test_run_padded_returns_input_size(netG):
    torch.manual_seed(0)
    net = define_G(3, 2, ngf=4, netG=netG).eval()
    with torch.no_grad():
        for h, w in SIZES:
            y = run_padded(net, torch.randn(2, 3, h, w))
            assert y.shape == (2, 2, h, w), (h, w)
            assert torch.isfinite(y).all()


def test_run_padded_in_train_mode_with_batch_norm():
    net = define_G(3, 3, ngf=4, netG="unet_32", norm="batch", use_dropout=True).train()
    y = run_padded(net, torch.randn(1, 3, 33, 17, requires_grad=True))
    y.mean().backward()
    assert y.shape == (1, 3, 33, 17)


class _Probe(nn.Module):
    """Identity that records the shapes it sees and insists on the multiple."""
    size_multiple = 8

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        assert x.shape[-2] % 8 == 0 and x.shape[-1] % 8 == 0
        return x * 1.0


@pytest.mark.parametrize("h,w,mode", [(13, 21, "reflect"), (3, 21, "replicate"), (16, 24, None)])
def test_run_padded_crops_back_the_same_pixels(h, w, mode):
    seen = []

    class Grab(_Probe):
        def forward(self, x):
            seen.append(x)
            return super().forward(x)

    probe = Grab()
    x = torch.randn(1, 3, h, w)
    y = run_padded(probe, x)
    assert torch.equal(y, x)
    th, tw = math.ceil(h / 8) * 8, math.ceil(w / 8) * 8
    assert probe.seen == [(th, tw)]
    padded = seen[0]
    assert torch.equal(padded[..., :h, :w], x)  # the image stays at the top left: the stride grid is kept
    if mode == "reflect":  # the first padded row mirrors the second-to-last image row
        assert torch.equal(padded[..., h, :w], x[..., h - 2, :])
        assert torch.equal(padded[..., :h, w], x[..., :, w - 2])
    elif mode == "replicate":  # too short to reflect: the last row repeats
        assert torch.equal(padded[..., th - 1, :w], x[..., h - 1, :])
    else:
        assert padded.shape == x.shape


def test_run_padded_pads_bottom_and_right_only():
    seen = []

    class Grab(_Probe):
        def forward(self, x):
            seen.append(x)
            return x

    x = torch.arange(1 * 1 * 6 * 6, dtype=torch.float32).reshape(1, 1, 6, 6)
    run_padded(Grab(), x)
    padded = seen[0]  # 8x8: two rows below, two columns right, reflected (no repeated border values)
    assert torch.equal(padded[..., :6, :6], x)
    assert torch.equal(padded[..., 6, :6], x[..., 4, :]) and torch.equal(padded[..., 7, :6], x[..., 3, :])
    assert torch.equal(padded[..., :6, 6], x[..., :, 4]) and torch.equal(padded[..., :6, 7], x[..., :, 3])
    small = torch.arange(3.0).reshape(1, 1, 1, 3)
    run_padded(Grab(), small)  # 1 px tall: reflect impossible, replicate
    assert seen[1].shape[-2:] == (8, 8) and torch.equal(seen[1][..., :, 0], torch.zeros(1, 1, 8))
    assert torch.equal(seen[1][..., 5, :3], small[..., 0, :])


@pytest.mark.parametrize("netG", ["resnet_2blocks", "cartoongan_1blocks"])
@pytest.mark.parametrize("h,w", [(13, 22), (450 // 8, 337 // 8), (9, 9), (30, 31)])
def test_any_size_generators_run_on_the_image_as_it_is(netG, h, w):
    """ResNet and CartoonGAN generators take the unpadded image (the authors' test scripts
    do): the result is the net's own output, cropped at the bottom/right."""
    torch.manual_seed(0)
    net = define_G(3, 3, ngf=4, netG=netG).eval()
    assert accepts_any_size(net) and not accepts_any_size(define_G(3, 3, ngf=4, netG="unet_32"))
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        full = net(x)
        assert full.shape[-2:] == (math.ceil(h / 4) * 4, math.ceil(w / 4) * 4)
        assert torch.equal(run_padded(net, x), full[..., :h, :w])


def test_run_padded_without_padding_is_a_plain_call():
    torch.manual_seed(0)
    net = define_G(3, 3, ngf=4, netG="resnet_1blocks").eval()
    x = torch.randn(1, 3, 12, 16)
    assert torch.equal(run_padded(net, x), net(x))
