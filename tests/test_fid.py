"""FID/KID through torch-fidelity with a custom feature network, the
synthetic-scene feature network, and the cartoon scores (edge F1, color error)."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from transfigure.data.synthetic import cartoon_of_scene, render_scene
from transfigure.evaluate.cartoon import color_error, edge_counts, f1_from_counts, score_cartoon_folders
from transfigure.evaluate.fid import ImageFolderDataset, fid_kid, metric_label, register_feature_network
from transfigure.evaluate.synthetic_features import LABEL, feature_network, load_feature_net, train_feature_net


class ColorStats(nn.Module):
    """Tiny deterministic features: per-channel mean and std, and a coarse 2x2 mean."""

    def forward(self, x):
        return torch.cat([x.mean((2, 3)), x.std((2, 3)), nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)], 1)


def _folder(path, images):
    path.mkdir(parents=True)
    for i, a in enumerate(images):
        Image.fromarray(a).save(path / f"{i:03d}.png")
    return path


def _random_images(seed, n, size=24, brightness=0):
    rng = np.random.default_rng(seed)
    return [np.clip(rng.integers(0, 200, (size, size, 3)) + brightness, 0, 255).astype(np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def stats_network():
    return register_feature_network("test-color-stats", lambda weights_path: ColorStats(), "FID (color statistics)")


def test_fid_against_itself_is_zero_and_matches_a_direct_computation(tmp_path, stats_network):
    a = _folder(tmp_path / "a", _random_images(0, 30))
    b = _folder(tmp_path / "b", _random_images(1, 25, brightness=40))
    same = fid_kid(a, a, extractor=stats_network.name)
    assert abs(same["fid"]) < 1e-6 and abs(same["kid_mean"]) < 1e-3
    result = fid_kid(a, b, extractor=stats_network.name)
    assert result["n_real"] == 30 and result["n_fake"] == 25 and result["fid"] > 1

    def stats(folder):
        x = torch.stack([t for t in ImageFolderDataset(folder)]).double() / 127.5 - 1
        f = ColorStats()(x).numpy()
        return f.mean(0), np.cov(f, rowvar=False)

    (m1, s1), (m2, s2) = stats(a), stats(b)
    # sqrt(S1 S2) through the symmetric form S1^1/2 S2 S1^1/2, another route than torch-fidelity's eigenvalues.
    w, v = np.linalg.eigh(s1)
    root = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root @ s2 @ root)
    direct = ((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum()
    assert result["fid"] == pytest.approx(direct, rel=1e-4)
    assert metric_label(stats_network.name) == "FID (color statistics)"
    assert metric_label(stats_network.name, "KID") == "KID (color statistics)"


def test_fid_input_errors_name_the_folder(tmp_path, stats_network):
    a = _folder(tmp_path / "a", _random_images(0, 5))
    mixed = _folder(tmp_path / "mixed", _random_images(0, 2) + _random_images(1, 1, size=16))
    with pytest.raises(ValueError, match="different sizes in .*mixed"):
        fid_kid(a, mixed, extractor=stats_network.name)
    one = _folder(tmp_path / "one", _random_images(0, 1))
    with pytest.raises(ValueError, match="at least 2 images"):
        fid_kid(a, one, extractor=stats_network.name)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="empty"):
        fid_kid(a, tmp_path / "empty", extractor=stats_network.name)
    # A common size makes mixed folders measurable.
    assert fid_kid(a, mixed, extractor=stats_network.name, size=(20, 20), kid=False)["n_fake"] == 3


def test_synthetic_feature_network_learns_the_scenes_and_is_reused(tmp_path):
    path = train_feature_net(tmp_path / "net.pt", size=32, seed=3, scenes=64, steps=60, batch_size=16,
                             progress=False)
    first = path.read_bytes()
    assert train_feature_net(path, size=32, seed=3, scenes=64, steps=60, batch_size=16, progress=False) == path
    assert path.read_bytes() == first  # same settings: reused, not retrained
    net = load_feature_net(path)
    cls, inst, photo = render_scene(32, 99, "test", 0)
    x = torch.from_numpy(np.stack([photo, cartoon_of_scene(cls, inst, photo)])).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert net(x).shape == (2, 192)
    # It tells a photo from its cartoon after this short training.
    kind, _ = net._parts(x)
    assert net.domain(kind).argmax(1).tolist() == [0, 1]
    assert feature_network().label == LABEL and "not Inception" in LABEL
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_feature_net(tmp_path / "nothere.pt")


def test_edge_f1_and_color_error_on_known_images(tmp_path):
    square = np.full((32, 32, 3), 230, np.uint8)
    square[8:24, 8:24] = 20
    assert f1_from_counts(edge_counts(square, square))["edge_f1"] == 1.0
    shifted = np.roll(square, 1, axis=1)           # within the 1-pixel tolerance
    assert f1_from_counts(edge_counts(shifted, square))["edge_f1"] == 1.0
    far = np.roll(square, 4, axis=1)               # vertical edges 4 px off: only horizontal ones match
    assert 0.2 < f1_from_counts(edge_counts(far, square))["edge_f1"] < 0.8
    blank = np.full_like(square, 230)
    assert f1_from_counts(edge_counts(blank, square)) == {"edge_f1": 0.0, "edge_precision": 0.0, "edge_recall": 0.0}
    white, black = np.full((4, 4, 3), 255, np.uint8), np.zeros((4, 4, 3), np.uint8)
    assert color_error(white, black) == pytest.approx(100.0, abs=1e-3)   # L runs 0 .. 100
    assert color_error(square, square) == 0.0

    pred, true = _folder(tmp_path / "pred", [far, blank]), _folder(tmp_path / "true", [square, square])
    scores = score_cartoon_folders(pred, true)
    assert scores["images"] == 2 and 0 < scores["edge_f1"] < 0.8
    assert scores["color_error"] == pytest.approx((color_error(far, square) + color_error(blank, square)) / 2)
    _folder(tmp_path / "stray", [square, square, square])
    with pytest.raises(FileNotFoundError, match="002.png"):
        score_cartoon_folders(tmp_path / "stray", true)


def test_fid_and_kid_equal_torch_fidelitys_own_result(tmp_path, stats_network):
    import torch_fidelity

    real = _folder(tmp_path / "real", _random_images(2, 40))
    fake = _folder(tmp_path / "fake", _random_images(3, 30, brightness=25))
    ours = fid_kid(real, fake, extractor=stats_network.name)
    theirs = torch_fidelity.calculate_metrics(input1=str(fake), input2=str(real), fid=True, kid=True, cuda=False,
                                              feature_extractor=stats_network.name, kid_subset_size=30,
                                              samples_shuffle=False, cache=False, verbose=False, save_cpu_ram=True)
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-6)
    assert ours["kid_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-6)
    assert ours["kid_std"] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-6)


def test_frechet_distance_matches_scipy_on_random_gaussians():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    from transfigure.evaluate.fid import frechet_distance

    rng = np.random.default_rng(0)
    for dim in (4, 32):
        a, b = rng.standard_normal((dim, dim)), rng.standard_normal((dim, dim))
        s1, s2 = a @ a.T + dim * np.eye(dim) * 0.1, b @ b.T + dim * np.eye(dim) * 0.1
        m1, m2 = rng.standard_normal(dim), rng.standard_normal(dim)
        root = scipy_linalg.sqrtm(s1 @ s2).real
        direct = ((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root)
        assert frechet_distance(m1, s1, m2, s2) == pytest.approx(direct, rel=1e-6)
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0, abs=1e-6)


def test_real_features_are_cached_until_the_folder_changes(tmp_path, monkeypatch, stats_network):
    from transfigure.evaluate.fid import folder_features

    monkeypatch.setenv("TRANSFIGURE_CACHE", str(tmp_path / "cache"))
    real = _folder(tmp_path / "real", _random_images(4, 6))
    first = folder_features(real, stats_network.name, cache=True)
    stored = list((tmp_path / "cache" / "fid_stats").iterdir())
    assert len(stored) == 1 and torch.equal(torch.load(stored[0], weights_only=True), first)
    assert torch.equal(folder_features(real, stats_network.name, cache=True), first)
    Image.fromarray(_random_images(9, 1)[0]).save(real / "003.png")       # one image replaced
    changed = folder_features(real, stats_network.name, cache=True)
    assert not torch.equal(changed, first) and len(list((tmp_path / "cache" / "fid_stats").iterdir())) == 2
    (newest,) = set((tmp_path / "cache" / "fid_stats").iterdir()) - set(stored)
    newest.write_bytes(b"cut sh")  # a damaged cache entry is computed again and replaced, not an error
    assert torch.equal(folder_features(real, stats_network.name, cache=True), changed)
    assert torch.equal(torch.load(newest, weights_only=True), changed)


def test_offline_without_inception_weights_is_one_clear_error(tmp_path, monkeypatch, capsys):
    import socket

    from transfigure.cli import main
    from transfigure.evaluate import fid

    with socket.socket() as s:        # a port nobody listens on: the connection is refused, as offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/{fid.INCEPTION_FILE}"
    monkeypatch.setattr(fid, "INCEPTION_URL", url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    images = _folder(tmp_path / "a", _random_images(0, 3))
    assert main(["evaluate", "fid", "--real", str(images), "--fake", str(images), "--no_progress"]) == 2
    message = capsys.readouterr().err.strip()
    assert "\n" not in message
    assert fid.INCEPTION_FILE in message and url in message and "--inception_weights" in message
    assert not (tmp_path / "torch_home" / "hub" / "checkpoints" / fid.INCEPTION_FILE).exists()
    assert not list((tmp_path / "torch_home" / "hub" / "checkpoints").glob(".transfigure-*"))

    with pytest.raises(fid.InceptionWeightsError, match="no such file"):
        fid.inception_weights(str(tmp_path / "nothere.pth"))
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"net": ColorStats()}, unsafe)       # a pickled module, not plain tensors: never unpickled
    with pytest.raises(fid.InceptionWeightsError, match="unsafe.pth: not a plain TF-Inception weights file"):
        fid.inception_weights(str(unsafe))


def test_inception_path_end_to_end_with_a_local_weights_file(tmp_path, monkeypatch, capsys):
    """The real Inception code path (TF-style resize to 299, 2048 features) through the CLI,
    with a local file of the right layout. Random weights: the published file cannot be
    downloaded here; the layout is the one torch-fidelity loads."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from transfigure.cli import main

    with monkeypatch.context() as m:   # build the module once without its (unavailable) weights
        m.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        m.setattr("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", lambda *a, **k: {})
        torch.manual_seed(0)
        state = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    # He-initialised convolutions keep the activations' scale through the ~90 layers, so
    # the features differ from image to image (PyTorch's default init lets them fade to ~0,
    # where every FID is ~1e-13 and nothing is compared).
    for key, value in state.items():
        if key.endswith("conv.weight"):
            state[key] = torch.randn_like(value) * (2 / value[0].numel()) ** 0.5
    weights = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(state, weights)
    monkeypatch.setenv("TRANSFIGURE_CACHE", str(tmp_path / "cache"))
    a = _folder(tmp_path / "a", _random_images(0, 4, size=40))
    b = _folder(tmp_path / "b", _random_images(1, 3, size=40, brightness=60))
    out = tmp_path / "fid.json"
    assert main(["evaluate", "fid", "--real", str(a), "--fake", str(b), "--inception_weights", str(weights),
                 "--batch_size", "2", "--json", str(out), "--no_progress"]) == 0
    printed = capsys.readouterr().out
    result = __import__("json").loads(out.read_text())
    assert printed.startswith("FID ") and result["fid"] > 1 and result["n_real"] == 4 and "kid_mean" in result
    assert result["label"] == "FID"
    # torch-fidelity's own computation on the same folders and weights file gives the same numbers.
    import torch_fidelity

    theirs = torch_fidelity.calculate_metrics(input1=str(b), input2=str(a), fid=True, kid=True, cuda=False,
                                              feature_extractor_weights_path=str(weights), kid_subset_size=3,
                                              samples_shuffle=False, cache=False, verbose=False)
    print(f"FID ours {result['fid']:.6g}, torch-fidelity {theirs['frechet_inception_distance']:.6g}")
    assert result["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-5)
    assert result["kid_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-5, abs=1e-9)


def test_psnr_and_ssim_on_known_images(tmp_path):
    from transfigure.evaluate.quality import psnr, score_pairs, ssim

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (24, 20, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + 1, 0, 255).astype(np.uint8)
    b[a == 255] = 254                                   # every pixel off by exactly 1
    assert psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2), rel=1e-9)
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)
    noisy = np.clip(a + rng.normal(0, 40, a.shape), 0, 255).astype(np.uint8)
    assert 0 < ssim(a, noisy) < ssim(a, b) < 1
    assert ssim(a, noisy) == pytest.approx(ssim(noisy, a))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a[:8], a[:8])
    scores = score_pairs(_folder(tmp_path / "pred", [a, noisy]), _folder(tmp_path / "true", [a, a]))
    assert scores["pairs"] == 2 and scores["psnr"] == pytest.approx((100 + psnr(noisy, a)) / 2)
