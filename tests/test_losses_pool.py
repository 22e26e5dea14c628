import pytest
import torch
from torch import nn

from transfigure.image_pool import ImagePool
from transfigure.losses import GANLoss, gradient_penalty


@pytest.mark.parametrize("mode,neutral", [("vanilla", 0.0), ("lsgan", 0.5), ("wgangp", 0.0)])
def test_gan_objective_gradient_signs(mode, neutral):
    """Minimizing the 'real' loss raises D's output; the 'fake' loss lowers it."""
    loss = GANLoss(mode)
    for target_is_real, expected_sign in ((True, -1.0), (False, 1.0)):
        prediction = torch.full((2, 1, 4, 4), neutral, requires_grad=True)
        loss(prediction, target_is_real).backward()
        assert torch.all(torch.sign(prediction.grad) == expected_sign), (mode, target_is_real)


def test_gan_loss_values():
    ones = torch.ones(1, 1, 2, 2)
    assert GANLoss("lsgan")(ones, True).item() == 0.0
    assert GANLoss("lsgan")(ones, False).item() == 1.0
    assert GANLoss("vanilla")(torch.zeros(1, 1, 2, 2), True).item() == pytest.approx(0.6931, abs=1e-4)
    assert GANLoss("wgangp")(ones * 3, True).item() == -3.0


def test_unknown_gan_mode_is_named():
    with pytest.raises(ValueError, match="hinge2"):
        GANLoss("hinge2")


def test_gradient_penalty_of_linear_critic():
    # D(x) = <w, x> has gradient w everywhere, so the penalty is weight * (|w| - 1)^2.
    critic = nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 2, 1, bias=False))
    with torch.no_grad():
        critic[1].weight.fill_(0.5)  # |w| = sqrt(12 * 0.25) = sqrt(3)
    real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    gp = gradient_penalty(critic, real, fake, weight=10.0)
    assert gp.item() == pytest.approx(10.0 * (3 ** 0.5 - 1) ** 2, rel=1e-5)
    gp.backward()
    assert critic[1].weight.grad is not None


def test_pool_of_size_zero_passes_images_through():
    images = torch.randn(3, 3, 4, 4)
    assert torch.equal(ImagePool(0).query(images), images)


def test_pool_fills_then_mixes_history():
    pool = ImagePool(4, seed=1)
    batches = [torch.full((1, 1, 2, 2), float(i)) for i in range(40)]
    outputs = [pool.query(b) for b in batches]
    for i in range(4):  # while filling, each query returns its own image
        assert torch.equal(outputs[i], batches[i])
    later = [o.flatten()[0].item() for o in outputs[4:]]
    from_history = sum(v != i + 4 for i, v in enumerate(later))
    assert 0 < from_history < len(later)  # about half come from the pool
    assert all(v <= i + 4 for i, v in enumerate(later))  # never an image from the future
    assert len(pool.images) == 4


def test_pool_state_round_trip_continues_identically():
    a = ImagePool(3, seed=7)
    for i in range(6):
        a.query(torch.full((1, 1, 2, 2), float(i)))
    b = ImagePool(3, seed=0)
    b.load_state_dict(a.state_dict())
    for i in range(6, 20):
        x = torch.full((1, 1, 2, 2), float(i))
        assert torch.equal(a.query(x), b.query(x))


def test_discriminator_loss_written_once_for_every_method():
    """real is real, fake and each extra fake are fake, times the scale; WGAN-GP adds its
    penalty on real/fake interpolates."""
    from torch import nn
    import torch.nn.functional as F

    from transfigure.losses import GANLoss, discriminator_loss

    torch.manual_seed(0)
    D = nn.Conv2d(3, 1, 3)
    real, fake, extra = (torch.rand(2, 3, 8, 8) for _ in range(3))
    got = discriminator_loss(GANLoss("lsgan"), D, real, fake, scale=0.5, extra_fakes=(extra,))
    d = lambda x: D(x)  # noqa: E731
    expected = 0.5 * (F.mse_loss(d(real), torch.ones(2, 1, 6, 6)) + F.mse_loss(d(fake), torch.zeros(2, 1, 6, 6))
                      + F.mse_loss(d(extra), torch.zeros(2, 1, 6, 6)))
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    fake.requires_grad_(True)
    discriminator_loss(GANLoss("lsgan"), D, real, fake).backward()
    assert fake.grad is None  # the generator's output is detached: D's loss never trains G
    critic = -d(real).mean() + d(fake).mean()
    with_penalty = discriminator_loss(GANLoss("wgangp"), D, real, fake, scale=1.0, lambda_gp=10.0)
    assert with_penalty.item() > critic.item()  # the penalty is >= 0 and here > 0
