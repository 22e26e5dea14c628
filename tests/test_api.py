"""The Python API: transfigure.load() by run name, weights file and published style;
PIL, NumPy and tensor inputs give outputs of the same kind."""

import numpy as np
import pytest
import torch
from PIL import Image

import transfigure
from transfigure.cli import main

from shared_data import WEIGHTS, needs_shared
TINY = ["--netG", "resnet_1blocks", "--ngf", "4", "--ndf", "4", "--load_size", "32", "--crop_size", "32",
        "--n_epochs", "1", "--n_epochs_decay", "0", "--num_threads", "0", "--pool_size", "2", "--no_progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    data, ckpts = root / "data", root / "ckpts"
    assert main(["data", "synth", "--out", str(data), "--size", "32", "--n_train", "4", "--n_test", "2"]) == 0
    assert main(["train", "--dataroot", str(data), "--name", "tiny", "--checkpoints_dir", str(ckpts), *TINY]) == 0
    return root, data, ckpts


def test_load_a_run_and_translate_pil_numpy_and_tensors(run):
    root, data, ckpts = run
    t = transfigure.load("tiny", checkpoints_dir=ckpts)
    photo = Image.open(data / "testA" / "00000.png").convert("RGB")
    out = t(photo)
    assert isinstance(out, Image.Image) and out.size == photo.size
    pixels = np.asarray(photo)
    arr = t(pixels)
    assert isinstance(arr, np.ndarray) and arr.dtype == np.uint8 and np.array_equal(arr, np.asarray(out))
    floats = t(pixels.astype(np.float32) / 255)
    assert floats.dtype == np.float32 and np.abs(floats * 255 - arr).max() < 1e-3
    x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255
    y = t(x)
    assert y.shape == x.shape and torch.allclose(y * 255, torch.from_numpy(arr).permute(2, 0, 1).float(), atol=1e-3)
    assert t(torch.stack([x, x])).shape == (2, 3, 32, 32)
    # The exported plain generator file gives the same result.
    assert np.array_equal(np.asarray(transfigure.load(ckpts / "tiny" / "latest_net_G_A.pth")(photo)), arr)
    summary = t.translate_folder(data / "testA", root / "out", progress=False)
    assert len(summary.written) == 2 and (root / "out" / "00001.png").is_file()
    with pytest.raises(TypeError, match="PIL image"):
        t("not an image")
    with pytest.raises(ValueError, match="HxWx3"):
        t(np.zeros((4, 4)))
    with pytest.raises(FileNotFoundError, match="no published model"):
        transfigure.load("no_such_thing", checkpoints_dir=ckpts)


@needs_shared(WEIGHTS / "hayao")
def test_load_a_published_style_with_local_weights():
    t = transfigure.load("hayao", weights=WEIGHTS / "hayao")
    out = t(Image.new("RGB", (90, 60), (120, 180, 90)))
    assert out.size == (450, 300)        # long side to 450, as published
    assert np.asarray(transfigure.load(WEIGHTS / "hayao")(Image.new("RGB", (90, 60), (120, 180, 90)))).tolist() \
        == np.asarray(out).tolist()
