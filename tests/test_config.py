import pytest

from transfigure.config import ConfigError, make_options


def test_defaults_are_the_papers():
    o = make_options()
    assert (o.lr, o.beta1, o.pool_size, o.lambda_A, o.lambda_identity) == (2e-4, 0.5, 50, 10.0, 0.5)
    assert (o.netG, o.norm, o.gan_mode, o.load_size, o.crop_size) == ("resnet_9blocks", "instance", "lsgan", 286, 256)


def test_flags_override_preset():
    o = make_options({"config": "demo", "ngf": "8"})
    assert o.ngf == 8  # flag wins
    assert o.netG == "resnet_3blocks"  # from the preset


def test_preset_file_path(tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text("ngf: 12\nno_flip: true\n")
    o = make_options({"config": str(preset)})
    assert o.ngf == 12 and o.no_flip is True


def test_bad_values_name_the_option(tmp_path):
    with pytest.raises(ConfigError, match="--norm"):
        make_options({"norm": "group"})
    with pytest.raises(ConfigError, match="--ngf"):
        make_options({"ngf": "many"})
    with pytest.raises(ConfigError, match="--crop_size 300"):
        make_options({"crop_size": 300})
    with pytest.raises(ConfigError, match="nosuchpreset"):
        make_options({"config": "nosuchpreset"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("lamda_A: 3\n")
    with pytest.raises(ConfigError, match="lamda_A"):
        make_options({"config": str(bad)})
