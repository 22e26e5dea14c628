"""CartoonGAN training: the initialization phase, the edge-promoting adversarial loss, content networks."""
import copy

import pytest
import torch
import torchvision

from transfigure.config import make_options
from transfigure.losses import GANLoss
from transfigure.methods import create_method
from transfigure.nets.features import FeatureWeightsError
from method_steps import train_step


@pytest.fixture(scope="module")
def content_weights(tmp_path_factory):
    """Random ResNet-18 weights in a file: the real local-path loading code, no download."""
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return str(path)


def cartoongan(content_weights, **overrides):
    torch.manual_seed(0)
    opt = make_options({"model": "cartoongan", "netG": "cartoongan_1blocks", "ngf": 4, "ndf": 4,
                        "content_net": "resnet18:layer1", "content_weights": content_weights, "init_epochs": 1,
                        "n_epochs": 2, "n_epochs_decay": 0, **overrides})
    return create_method(opt, torch.device("cpu"))


def batch():
    return {"A": torch.rand(2, 3, 32, 32) * 2 - 1, "B": torch.rand(2, 3, 32, 32) * 2 - 1,
            "B_smooth": torch.rand(2, 3, 32, 32) * 2 - 1}


def optimizers(method):
    return {k: torch.optim.Adam(p, lr=1e-3) for k, p in method.param_groups().items()}


def changed(before, after):
    return any(not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters()))


def test_initialization_phase_trains_content_only(content_weights):
    method = cartoongan(content_weights)
    opts = optimizers(method)
    method.set_epoch(1)
    before = copy.deepcopy(method.nets)
    losses = train_step(method, batch(), opts)
    assert set(losses) == {"content"}
    assert changed(before["G"], method.nets["G"]) and not changed(before["D"], method.nets["D"])

    method.set_epoch(2)  # after init_epochs: adversarial training, the discriminator learns too
    before = copy.deepcopy(method.nets)
    losses = train_step(method, batch(), opts)
    assert set(losses) == {"G_adv", "content", "D"}
    assert changed(before["D"], method.nets["D"]) and changed(before["G"], method.nets["G"])


def test_initialization_loss_is_l1_of_content_features_times_lambda(content_weights):
    """The content loss written from the paper, on its own: lambda * mean |VGG(G(p)) - VGG(p)|,
    features from torchvision's network loaded from the same file with ImageNet input
    normalisation; the recorded loss and G's gradients must be exactly that."""
    method = cartoongan(content_weights, lambda_content=3.5)
    method.set_epoch(1)
    G = copy.deepcopy(method.nets["G"])
    photo = batch()["A"]
    net = torchvision.models.resnet18(weights=None)
    net.load_state_dict(torch.load(content_weights, weights_only=True))
    body = torch.nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1).eval()
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]

    def features(x):
        return body(((x + 1) / 2 - mean) / std)

    expected = 3.5 * (features(G(photo)) - features(photo)).abs().mean()
    grads = torch.autograd.grad(expected, list(G.parameters()))
    recorded = {}

    class Recorder(torch.optim.SGD):
        def step(self):
            recorded["grads"] = [p.grad.clone() for p in self.param_groups[0]["params"]]

    opts = {"G": Recorder(method.nets["G"].parameters(), lr=0.0), "D": torch.optim.SGD(method.nets["D"].parameters())}
    losses = train_step(method, {**batch(), "A": photo}, opts)
    assert losses["content"] == pytest.approx(expected.item(), rel=1e-5)
    scale = max(g.abs().max().item() for g in grads)
    for r, e in zip(recorded["grads"], grads):  # biases before a norm get only float noise: an absolute margin
        torch.testing.assert_close(r, e, rtol=1e-3, atol=1e-4 * scale)


def test_edge_smoothed_cartoons_count_as_fake(content_weights):
    method = cartoongan(content_weights, gan_mode="lsgan")
    method.set_epoch(2)
    b = batch()
    D = copy.deepcopy(method.nets["D"])
    G = copy.deepcopy(method.nets["G"])
    losses = train_step(method, b, optimizers(method))
    gan = GANLoss("lsgan")
    with torch.no_grad():
        expected = gan(D(b["B"]), True) + gan(D(b["B_smooth"]), False) + gan(D(G(b["A"])), False)
    assert losses["D"] == pytest.approx(expected.item(), rel=1e-5)


def test_improved_variant_switches(content_weights):
    method = cartoongan(content_weights, norm="instance", activation="leaky_relu", activation_slope=0.01,
                        gan_mode="lsgan")
    G = method.nets["G"]
    assert isinstance(G.in01_1, torch.nn.InstanceNorm2d) and G.activation == "leaky_relu"
    assert method.gan_loss.gan_mode == "lsgan"
    # The spelling of a content network works as well as model:layer.
    assert cartoongan(content_weights, content_net="resnet18_layer1").content.spec == "resnet18_layer1"


def test_missing_content_weights_stop_before_training(tmp_path):
    with pytest.raises(FeatureWeightsError, match="nothere.pth"):
        cartoongan(str(tmp_path / "nothere.pth"))


def test_cyclegan_with_init_phase_and_edge_smoothing(content_weights):
    torch.manual_seed(0)
    opt = make_options({"netG": "resnet_1blocks", "ngf": 4, "ndf": 4, "pool_size": 0, "lambda_identity": 0.0,
                        "init_epochs": 1, "n_epochs": 2, "n_epochs_decay": 0, "edge_smoothing": True,
                        "content_net": "resnet18:layer1", "content_weights": content_weights, "gan_mode": "lsgan"})
    method = create_method(opt, torch.device("cpu"))
    opts = optimizers(method)
    method.set_epoch(1)
    before = copy.deepcopy(method.nets)
    losses = train_step(method, batch(), opts)
    assert set(losses) == {"content_A", "content_B"}
    assert not changed(before["D_A"], method.nets["D_A"]) and changed(before["G_A"], method.nets["G_A"])

    method.set_epoch(2)
    b = batch()
    D_A, G_A = copy.deepcopy(method.nets["D_A"]), copy.deepcopy(method.nets["G_A"])
    losses = train_step(method, b, opts)
    gan = GANLoss("lsgan")
    with torch.no_grad():  # the B-domain discriminator also sees edge-smoothed B images as fake
        expected = 0.5 * (gan(D_A(b["B"]), True) + gan(D_A(G_A(b["A"])), False) + gan(D_A(b["B_smooth"]), False))
    assert losses["D_A"] == pytest.approx(expected.item(), rel=1e-5)


def test_cartoongan_trains_end_to_end_through_the_cli(tmp_path, content_weights):
    from transfigure.cli import main
    from transfigure.data.synthetic import make_photo2cartoon

    data = tmp_path / "data"
    make_photo2cartoon(data, size=32, n_train=3, n_test=2, progress=False)
    ckpts = tmp_path / "ckpts"
    for preset, name in (("cartoongan", "paper"), ("cartoongan_improved", "improved")):
        # Two epochs: the content-only initialization epoch, then one adversarial epoch.
        assert main(["train", "--config", preset, "--dataroot", str(data), "--name", name, "--checkpoints_dir",
                     str(ckpts), "--netG", "cartoongan_1blocks", "--ngf", "4", "--ndf", "4", "--batch_size", "2",
                     "--load_size", "32", "--crop_size", "32", "--init_epochs", "1", "--n_epochs", "2",
                     "--content_net", "resnet18:layer1", "--content_weights", content_weights,
                     "--num_threads", "0", "--print_freq", "1", "--no_progress"]) == 0
        log = (ckpts / name / "loss_log.jsonl").read_text().splitlines()
        assert '"content"' in log[0] and '"D"' not in log[0] and '"D"' in log[-1]
        out = tmp_path / f"out_{name}"
        assert main(["translate", "--name", name, "--checkpoints_dir", str(ckpts), "--input",
                     str(data / "testA"), "--output", str(out), "--no_progress"]) == 0
        assert len(list(out.glob("*.png"))) == 2
    # The edge-smoothed cartoons were computed on the fly once and cached beside the data
    # (one per cartoon drawn: each photo gets a random cartoon, so some may repeat).
    assert 1 <= len(list((data / ".transfigure_cache").rglob("*.png"))) <= 3
