"""The offline content network: trained on synthetic scenes, its features keep a scene's
layout across styles (a photo and its cartoon are near) and tell scenes apart, and it
plugs into training as `--content_net synthetic-scenes:features`."""
import numpy as np
import pytest
import torch

from transfigure.data.synthetic import cartoon_of_scene, render_scene
from transfigure.nets.features import FeatureWeightsError, build_feature_extractor
from transfigure.nets.scene_content import train_scene_content_net


@pytest.fixture(scope="module")
def content_net(tmp_path_factory):
    return train_scene_content_net(tmp_path_factory.mktemp("content") / "content_net.pt", size=32, scenes=100,
                                   steps=60, progress=False)


def _tensor(a):
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 127.5 - 1


def test_features_keep_content_across_styles(content_net):
    net = build_feature_extractor("synthetic-scenes:features", str(content_net), "--content_weights")
    random_net = build_feature_extractor("vgg19:conv4_4", "random")
    same, other, same_random, other_random = [], [], [], []
    for i in range(8):  # held-out scenes (the test split)
        cls, inst, photo = render_scene(32, 0, "test", i)
        _, _, neighbour = render_scene(32, 0, "test", i + 100)
        p, c, n = _tensor(photo), _tensor(cartoon_of_scene(cls, inst, photo)), _tensor(neighbour)
        with torch.no_grad():
            fp, fc, fn = net(p), net(c), net(n)
            same.append((fp - fc).abs().mean().item())
            other.append((fp - fn).abs().mean().item())
            rp, rc, rn = random_net(p), random_net(c), random_net(n)
            same_random.append((rp - rc).abs().mean().item())
            other_random.append((rp - rn).abs().mean().item())
    ratio, ratio_random = np.mean(same) / np.mean(other), np.mean(same_random) / np.mean(other_random)
    print(f"photo-to-own-cartoon / photo-to-other-scene feature distance: trained {ratio:.2f}, "
          f"random VGG19 conv4_4 {ratio_random:.2f}")
    assert ratio < 0.6             # its own cartoon is much nearer than another scene
    assert ratio < ratio_random    # and nearer than random features make it


def test_reused_when_settings_match_and_errors_name_the_option(content_net, tmp_path):
    stamp = content_net.stat().st_mtime_ns
    assert train_scene_content_net(content_net, size=32, scenes=100, steps=60, progress=False) == content_net
    assert content_net.stat().st_mtime_ns == stamp
    with pytest.raises(FeatureWeightsError, match="--content_weights FILE"):
        build_feature_extractor("synthetic-scenes:features", None, "--content_weights")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a network")
    with pytest.raises(FeatureWeightsError, match="junk.pt"):
        build_feature_extractor("synthetic-scenes:features", str(junk), "--content_weights")
    with pytest.raises(FeatureWeightsError, match="no layer 'conv9'"):
        build_feature_extractor("synthetic-scenes:conv9", str(content_net), "--content_weights")
