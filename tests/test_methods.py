"""One training step of every method and variant: the gradients each network
receives are exactly those of the losses the variant names, and nothing else."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from PIL import Image

from transfigure.config import ConfigError, make_options
from transfigure.data.color import lab_to_rgb, network_lab_to_rgb, rgb_to_lab, rgb_to_network_lab
from transfigure.losses import GANLoss
from transfigure.methods import create_method
from transfigure.nets.features import RANDOM_WEIGHTS, FeatureExtractor, FeatureWeightsError, build_feature_extractor
from transfigure.translate import LoadedGenerator, translate_files
from method_steps import train_step

SMALL = dict(netG="resnet_1blocks", ngf=4, ndf=4, pool_size=0, lambda_identity=0.0)


class RecordingOptimizer:
    """Keeps the gradients each step applied."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.grads = None

    def zero_grad(self, set_to_none=True):
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self):
        self.grads = [None if p.grad is None else p.grad.clone()
                      for group in self.optimizer.param_groups for p in group["params"]]
        self.optimizer.step()


def one_step(method, batch):
    optimizers = {k: RecordingOptimizer(torch.optim.Adam(p, lr=2e-4)) for k, p in method.param_groups().items()}
    before = copy.deepcopy(method.nets)
    losses = train_step(method, batch, optimizers)
    return before, optimizers, losses


def expected_grads(params, loss):
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [None if g is None else g for g in grads]


def assert_grads_match(recorded, expected):
    assert len(recorded) == len(expected)
    for r, e in zip(recorded, expected):
        if e is None or not torch.any(e):
            assert r is None or not torch.any(r)
        else:
            torch.testing.assert_close(r, e, rtol=1e-3, atol=1e-5)  # bias grads before a norm are ~0 noise


def cyclegan_generator_loss(nets, opt, real_A, real_B):
    """The generators' objective written out from the paper, term by term."""
    gan = GANLoss(opt.gan_mode)
    fake_B, fake_A = nets["G_A"](real_A), nets["G_B"](real_B)
    loss = torch.zeros(())
    if opt.lambda_GAN:
        loss = loss + opt.lambda_GAN * (gan(nets["D_A"](fake_B), True) + gan(nets["D_B"](fake_A), True))
    if opt.lambda_A:
        loss = loss + opt.lambda_A * F.l1_loss(nets["G_B"](fake_B), real_A)
    if opt.lambda_B:
        loss = loss + opt.lambda_B * F.l1_loss(nets["G_A"](fake_A), real_B)
    if opt.lambda_pixel:
        loss = loss + opt.lambda_pixel * (F.l1_loss(fake_B, real_A) + F.l1_loss(fake_A, real_B))
    return loss


VARIANTS = {
    "cyclegan": {},
    "gan_alone": {"lambda_A": 0.0, "lambda_B": 0.0},
    "cycle_alone": {"lambda_GAN": 0.0},
    "gan_forward_cycle": {"lambda_B": 0.0},
    "gan_backward_cycle": {"lambda_A": 0.0},
    "pixel_gan": {"lambda_A": 0.0, "lambda_B": 0.0, "lambda_pixel": 5.0},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_cyclegan_variant_step_uses_only_its_losses(variant):
    torch.manual_seed(0)
    opt = make_options({**SMALL, **VARIANTS[variant]})
    method = create_method(opt, torch.device("cpu"))
    batch = {"A": torch.rand(1, 3, 32, 32) * 2 - 1, "B": torch.rand(1, 3, 32, 32) * 2 - 1}
    before, optimizers, losses = one_step(method, batch)

    g_params = [p for name in ("G_A", "G_B") for p in before[name].parameters()]
    expected = expected_grads(g_params, cyclegan_generator_loss(before, opt, batch["A"], batch["B"]))
    assert_grads_match(optimizers["G"].grads, expected)

    d_changed = any(not torch.equal(a, b) for a, b in zip(before["D_A"].parameters(), method.nets["D_A"].parameters()))
    assert d_changed == (opt.lambda_GAN > 0)  # cycle alone never trains a discriminator
    assert ("cycle_A" in losses) == (opt.lambda_A > 0) and ("cycle_B" in losses) == (opt.lambda_B > 0)
    assert ("G_A" in losses) == (opt.lambda_GAN > 0)


def test_cyclegan_identity_loss_and_discriminators_follow_the_paper():
    """With the identity loss on and distinct cycle weights: G_A(real_B) ~ real_B weighted by
    lambda_B * lambda_identity (and G_B(real_A) by lambda_A), and D_A learns real_B against
    fake_B, D_B real_A against fake_A, each halved, as in the official code."""
    torch.manual_seed(0)
    opt = make_options({**SMALL, "lambda_identity": 0.5, "lambda_A": 10.0, "lambda_B": 4.0})
    method = create_method(opt, torch.device("cpu"))
    batch = {"A": torch.rand(1, 3, 32, 32) * 2 - 1, "B": torch.rand(1, 3, 32, 32) * 2 - 1}
    real_A, real_B = batch["A"], batch["B"]
    before, optimizers, losses = one_step(method, batch)

    n = before
    identity = (F.l1_loss(n["G_A"](real_B), real_B) * opt.lambda_B * opt.lambda_identity
                + F.l1_loss(n["G_B"](real_A), real_A) * opt.lambda_A * opt.lambda_identity)
    g_params = [p for name in ("G_A", "G_B") for p in n[name].parameters()]
    expected = expected_grads(g_params, cyclegan_generator_loss(n, opt, real_A, real_B) + identity)
    assert_grads_match(optimizers["G"].grads, expected)
    assert losses["idt_A"] == pytest.approx(F.l1_loss(n["G_A"](real_B), real_B).item() * 4.0 * 0.5, rel=1e-5)

    # The discriminators see this step's fakes, made before the generators' update (as the
    # official code does; pool_size 0: no history).
    gan = GANLoss(opt.gan_mode)
    with torch.no_grad():
        fake_B, fake_A = n["G_A"](real_A), n["G_B"](real_B)
    d_loss = (0.5 * (gan(n["D_A"](real_B), True) + gan(n["D_A"](fake_B), False))
              + 0.5 * (gan(n["D_B"](real_A), True) + gan(n["D_B"](fake_A), False)))
    d_params = [p for name in ("D_A", "D_B") for p in n[name].parameters()]
    assert_grads_match(optimizers["D"].grads, expected_grads(d_params, d_loss))


def test_feature_loss_variant_uses_feature_distance(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "vgg16.pth"
    import torchvision
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), weights)  # random weights, real loading path
    opt = make_options({**SMALL, "lambda_A": 0.0, "lambda_B": 0.0, "lambda_feature": 2.0,
                        "feature_net": "vgg16:relu1_2", "feature_weights": str(weights)})
    method = create_method(opt, torch.device("cpu"))
    batch = {"A": torch.rand(1, 3, 32, 32) * 2 - 1, "B": torch.rand(1, 3, 32, 32) * 2 - 1}
    before, optimizers, losses = one_step(method, batch)
    f = method.features
    fake_B, fake_A = before["G_A"](batch["A"]), before["G_B"](batch["B"])
    loss = cyclegan_generator_loss(before, opt, batch["A"], batch["B"]) + 2.0 * (
        F.l1_loss(f(fake_B), f(batch["A"])) + F.l1_loss(f(fake_A), f(batch["B"])))
    g_params = [p for name in ("G_A", "G_B") for p in before[name].parameters()]
    assert_grads_match(optimizers["G"].grads, expected_grads(g_params, loss))
    assert all(not p.requires_grad for p in f.parameters())


def test_feature_network_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    # No network here, and nothing cached: the message names the file and both ways to provide it.
    import torchvision
    monkeypatch.setattr(torchvision.models.VGG16_Weights.IMAGENET1K_V1.__class__, "get_state_dict",
                        lambda self, *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(FeatureWeightsError) as info:
        build_feature_extractor("vgg16:relu3_3")
    message = str(info.value)
    assert "vgg16-397923af.pth" in message and "--feature_weights" in message and "torch_home" in message
    with pytest.raises(FeatureWeightsError, match="missing.pth"):
        build_feature_extractor("vgg16:relu3_3", str(tmp_path / "missing.pth"))
    with pytest.raises(FeatureWeightsError, match="relu9_9"):
        build_feature_extractor("vgg16:relu9_9", str(tmp_path / "missing.pth"))


def test_feature_extractor_layers_and_normalization(tmp_path):
    import torchvision
    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    extractor = build_feature_extractor("resnet18:layer2", str(weights))
    assert extractor(torch.zeros(1, 3, 64, 64)).shape == (1, 128, 8, 8)
    extractor.train()
    assert not extractor.training  # pretrained batch norm statistics stay fixed
    vgg = torch.nn.Sequential()
    e = FeatureExtractor(vgg, "x")
    # [-1, 1] input is mapped to ImageNet-normalized values.
    out = e(torch.ones(1, 3, 1, 1))
    torch.testing.assert_close(out.flatten(), ((1 - torch.tensor([0.485, 0.456, 0.406])) /
                                               torch.tensor([0.229, 0.224, 0.225])))


def pix2pix_method(**overrides):
    torch.manual_seed(0)
    return create_method(make_options({"model": "pix2pix", "netG": "unet_32", "ngf": 4, "ndf": 4, **overrides}),
                         torch.device("cpu"))


def test_pix2pix_defaults_follow_the_paper():
    opt = make_options({"model": "pix2pix"})
    assert (opt.netG, opt.norm, opt.gan_mode, opt.pool_size, opt.no_dropout, opt.lambda_L1, opt.dataset_mode) == \
        ("unet_256", "batch", "vanilla", 0, False, 100.0, "aligned")
    assert make_options({"model": "pix2pix", "norm": "instance"}).norm == "instance"  # flags still win


def test_pix2pix_conditional_discriminator_and_l1_weight():
    method = pix2pix_method(lambda_L1=7.0, input_nc=1)
    assert method.nets["D"].model[0].in_channels == 1 + 3  # D sees the input beside the output
    batch = {"A": torch.rand(2, 1, 32, 32) * 2 - 1, "B": torch.rand(2, 3, 32, 32) * 2 - 1}
    rng = torch.get_rng_state()  # dropout draws: replay them for the reference computation
    before, optimizers, losses = one_step(method, batch)

    torch.set_rng_state(rng)
    G, D = before["G"], before["D"]
    fake = G(batch["A"])
    l1 = F.l1_loss(fake, batch["B"])
    assert losses["G_L1"] == pytest.approx(7.0 * l1.item(), rel=1e-5)
    gan = GANLoss("vanilla")
    # D's step: fakes paired with their input are 'fake', the real pair is 'real'.
    d_loss = 0.5 * (gan(D(torch.cat([batch["A"], fake.detach()], 1)), False) +
                    gan(D(torch.cat([batch["A"], batch["B"]], 1)), True))
    assert losses["D"] == pytest.approx(d_loss.item(), rel=1e-5)
    assert_grads_match(optimizers["D"].grads, expected_grads(list(D.parameters()), d_loss))


def test_translation_train_mode_versus_eval_mode(tmp_path):
    method = pix2pix_method(netG="resnet_1blocks", no_dropout=True)  # batch norm, no dropout: deterministic
    g = method.translator("AtoB")
    with torch.no_grad():  # give batch norm running statistics unlike any one image's
        for m in g.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.fill_(0.3)
                m.running_var.fill_(4.0)
    folder = tmp_path / "in"
    folder.mkdir()
    for i, color in enumerate(["red", "blue"]):
        Image.new("RGB", (32, 32), color).save(folder / f"{i}.png")
    inputs = sorted(folder.iterdir())
    loaded = LoadedGenerator(g, 3, 3, "test")
    outputs = {}
    for mode in ("train", "eval"):
        out = tmp_path / mode
        translate_files(loaded, inputs, out, batch_size=2, progress=False, eval_mode=(mode == "eval"))
        outputs[mode] = [(out / f"{i}.png").read_bytes() for i in range(2)]
    assert outputs["train"] != outputs["eval"]
    # Training mode takes batch statistics from each image alone, whatever the batch size.
    single = tmp_path / "single"
    translate_files(loaded, inputs[:1], single, batch_size=1, progress=False)
    assert (single / "0.png").read_bytes() == outputs["train"][0]
    # Eval mode leaves running statistics untouched and is repeatable.
    again = tmp_path / "again"
    translate_files(loaded, inputs, again, batch_size=2, progress=False, eval_mode=True)
    assert [(again / f"{i}.png").read_bytes() for i in range(2)] == outputs["eval"]


def test_lab_round_trip_and_reference_colors():
    rgb = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-4, rtol=0)
    red = rgb_to_lab(torch.tensor([1.0, 0, 0]).view(3, 1, 1)).flatten()
    torch.testing.assert_close(red, torch.tensor([53.24, 80.09, 67.20]), atol=0.02, rtol=0)  # CIE reference
    white = rgb_to_lab(torch.ones(3, 1, 1)).flatten()
    torch.testing.assert_close(white, torch.tensor([100.0, 0, 0]), atol=0.01, rtol=0)
    pm1 = rgb * 2 - 1
    L, ab = rgb_to_network_lab(pm1)
    assert L.shape[-3] == 1 and ab.shape[-3] == 2 and L.min() >= -1 and L.max() <= 1
    torch.testing.assert_close(network_lab_to_rgb(L, ab), pm1, atol=2e-4, rtol=0)


def test_colorization_model_trains_and_translates_rgb(tmp_path):
    method = create_method(make_options({"model": "colorization", "netG": "unet_32", "ngf": 4, "ndf": 4}),
                           torch.device("cpu"))
    assert method.nets["G"].model.model[0].in_channels == 1
    rgb = torch.rand(1, 3, 32, 32) * 2 - 1
    L, ab = rgb_to_network_lab(rgb)
    losses = train_step(method, {"A": L, "B": ab}, {k: torch.optim.Adam(p) for k, p in method.param_groups().items()})
    assert set(losses) == {"G_GAN", "G_L1", "D"}
    out = method.translator("AtoB").eval()(rgb)
    assert out.shape == rgb.shape
    # The translator keeps the input's lightness and predicts only its colors.
    torch.testing.assert_close(rgb_to_network_lab(out)[0], L, atol=0.02, rtol=0)


def test_variant_errors_name_the_options():
    with pytest.raises(ConfigError, match="lambda_pixel"):
        create_method(make_options({**SMALL, "lambda_pixel": 1.0, "output_nc": 1}), torch.device("cpu"))
    with pytest.raises(ConfigError, match="--input_nc 1 --output_nc 2"):
        create_method(make_options({"model": "colorization", "output_nc": 3}), torch.device("cpu"))
    with pytest.raises(ConfigError, match="--init_epochs"):
        create_method(make_options({"model": "colorization", "init_epochs": 1}), torch.device("cpu"))
    with pytest.raises(ConfigError, match="only for --model colorization"):
        create_method(make_options({**SMALL, "output_nc": 2, "lambda_identity": 0.0}), torch.device("cpu"))
    with pytest.raises(ConfigError, match="every loss weight is 0"):  # before any data is loaded
        create_method(make_options({**SMALL, "lambda_GAN": 0.0, "lambda_A": 0.0, "lambda_B": 0.0}),
                      torch.device("cpu"))


def test_crop_too_small_for_the_discriminator_is_named():
    with pytest.raises(ConfigError, match="--crop_size 16 .* at least 24"):
        create_method(make_options({**SMALL, "crop_size": 16, "load_size": 16}), torch.device("cpu"))
    create_method(make_options({**SMALL, "crop_size": 16, "load_size": 16, "netD": "n_layers", "n_layers_D": 2}),
                  torch.device("cpu"))


def test_content_network_error_names_the_content_option(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    import torchvision
    monkeypatch.setattr(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.__class__, "get_state_dict",
                        lambda self, *a, **k: (_ for _ in ()).throw(OSError("offline")))
    opt = make_options({"model": "cartoongan", "netG": "cartoongan_1blocks", "ngf": 4, "ndf": 4,
                        "content_net": "resnet18:layer1", "load_size": 32, "crop_size": 32})
    with pytest.raises(FeatureWeightsError) as info:
        create_method(opt, torch.device("cpu"))
    message = str(info.value)
    assert "--content_weights" in message and "--feature_weights" not in message and "resnet18-" in message


def test_random_feature_weights_are_fixed_and_leave_the_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = build_feature_extractor("resnet18:layer1", RANDOM_WEIGHTS)
    assert torch.equal(torch.rand(1), expected_next)
    b = build_feature_extractor("resnet18:layer1", RANDOM_WEIGHTS)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(a(x), b(x)) and "random weights" in a.spec
    assert a(x).abs().mean() > 0
