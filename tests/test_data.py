"""Image loading, preprocessing and folder datasets, on small real image files."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from transfigure.config import make_options
from transfigure.data.datasets import AlignedDataset, SingleDataset, UnalignedDataset, create_dataset
from transfigure.data.images import (DatasetFolderError, ImageLoadError, image_to_tensor, list_images, load_image,
                                     save_image, tensor_to_image)
from transfigure.data.transforms import apply_transform, get_params, sample_rng

MODES = ["resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"]


def noise(w, h, channels=3, seed=0):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, channels) if channels > 1 else (h, w), np.uint8)
    return Image.fromarray(a)


def write(path, img=None, size=(24, 20), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    (img if img is not None else noise(*size, seed=seed)).save(path)
    return path


def options(tmp_path=None, **kw):
    base = {"load_size": 72, "crop_size": 64}
    if tmp_path is not None:
        base["dataroot"] = str(tmp_path)
    return make_options({**base, **kw})


def unaligned_root(tmp_path, n_a=3, n_b=2, size=(24, 20)):
    for i in range(n_a):
        write(tmp_path / "trainA" / f"a{i}.png", size=size, seed=i)
    for i in range(n_b):
        write(tmp_path / "trainB" / f"b{i}.png", size=size, seed=100 + i)
    return tmp_path


# --- preprocess modes ---------------------------------------------------------

def expected_shape(mode, w, h, load=72, crop=64):
    if mode in ("resize_and_crop", "crop", "scale_width_and_crop"):
        return (3, crop, crop)
    if mode == "scale_width":
        return (3, int(max(load * h / w, crop)), load)
    return (3, max(4, round(h / 4) * 4), max(4, round(w / 4) * 4))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [(257, 183), (50, 40), (3, 2)])
def test_every_mode_any_size(mode, size):
    opt = options(preprocess=mode)
    img = noise(*size)
    t = apply_transform(img, opt, get_params(opt, img.size, random.Random(1)))
    assert tuple(t.shape) == expected_shape(mode, *size)
    assert t.dtype == torch.float32 and -1 <= t.min() and t.max() <= 1
    if mode == "none":
        assert t.shape[1] % 4 == 0 and t.shape[2] % 4 == 0


def test_crop_takes_the_region_params_name():
    opt = options(preprocess="crop", crop_size=32, no_flip=True)
    img = noise(257, 183)
    params = get_params(opt, img.size, random.Random(3))
    x, y = params["crop_pos"]
    assert 0 <= x <= 257 - 32 and 0 <= y <= 183 - 32
    assert torch.equal(apply_transform(img, opt, params), image_to_tensor(img.crop((x, y, x + 32, y + 32))))
    flipped = apply_transform(img, options(preprocess="crop", crop_size=32), {**params, "flip": True})
    assert torch.equal(flipped, image_to_tensor(img.crop((x, y, x + 32, y + 32))).flip(-1))


# --- randomness ----------------------------------------------------------------

def test_same_seed_epoch_index_same_sample_and_epochs_differ(tmp_path):
    write(tmp_path / "img.png", noise(80, 70))
    opt = options(tmp_path, dataset_mode="single", preprocess="resize_and_crop", seed=7)
    ds, twin = create_dataset(opt), create_dataset(opt)  # twin stands for another worker process
    outputs = []
    for epoch in range(12):
        ds.set_epoch(epoch)
        twin.set_epoch(epoch)
        random.seed(epoch)  # global RNG state must not matter
        a = ds[0]["A"]
        random.seed(1000 + epoch)
        assert torch.equal(a, twin[0]["A"])
        outputs.append(a)
    flipped = [torch.equal(o, outputs[0]) or torch.equal(o, outputs[0].flip(-1)) for o in outputs]
    assert len({o.numpy().tobytes() for o in outputs}) > 6  # crops and flips vary across epochs
    assert not all(flipped)
    other_seed = create_dataset(options(tmp_path, dataset_mode="single", seed=8))
    assert not torch.equal(other_seed[0]["A"], outputs[0])


def test_dataloader_workers_match_main_process(tmp_path):
    opt = options(unaligned_root(tmp_path, 4, 3, size=(90, 80)), seed=3)
    ds = UnalignedDataset(opt)
    ds.set_epoch(5)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    batches = list(loader)
    direct = torch.stack([ds[i]["A"] for i in range(len(ds))])
    assert torch.equal(torch.cat([b["A"] for b in batches]), direct)
    assert sum((b["B_paths"] for b in batches), []) == [ds[i]["B_paths"] for i in range(len(ds))]


def test_sample_rng_is_stable():
    assert sample_rng(0, 1, 2).random() == sample_rng(0, 1, 2).random()
    assert sample_rng(0, 0, 7919).random() != sample_rng(0, 1, 0).random()


# --- aligned -------------------------------------------------------------------

def aligned_file(path, w=37, h=29):
    a = np.asarray(noise(w, h, seed=5))
    ab = np.concatenate([a, 255 - a], axis=1)  # B is the negative of A, pixel for pixel
    return write(path, Image.fromarray(ab)), a


@pytest.mark.parametrize("mode,atol", [("crop", 1e-6), ("resize_and_crop", 2.5 / 127.5), ("none", 2.5 / 127.5)])
def test_aligned_same_crop_and_flip_for_a_and_b(tmp_path, mode, atol):
    _, a = aligned_file(tmp_path / "train" / "even.png", w=37)
    odd = np.concatenate([a, 255 - a, a[:, :1]], axis=1)  # width 75: the spare last column is dropped
    write(tmp_path / "train" / "odd.png", Image.fromarray(odd))
    opt = options(tmp_path, dataset_mode="aligned", preprocess=mode, load_size=40, crop_size=16)
    ds = create_dataset(opt)
    assert isinstance(ds, AlignedDataset) and len(ds) == 2
    seen_flip = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        for i in range(2):
            item = ds[i]
            assert item["A"].shape == item["B"].shape
            assert torch.allclose(item["B"], -item["A"], atol=atol)
            if mode == "crop":  # A is a 16x16 crop of the left half, flipped or not
                left = image_to_tensor(Image.fromarray(a))
                found = [flip for x in range(37 - 15) for y in range(29 - 15) for flip in (False, True)
                         if torch.equal(item["A"], left[:, y:y + 16, x:x + 16].flip(-1) if flip
                                        else left[:, y:y + 16, x:x + 16])]
                assert len(found) == 1
                seen_flip.add(found[0])
    if mode == "crop":
        assert seen_flip == {True, False}


def test_aligned_btoa_swaps_and_too_narrow_fails(tmp_path):
    _, a = aligned_file(tmp_path / "train" / "p.png", w=32, h=32)
    opt = dict(dataset_mode="aligned", preprocess="none", no_flip=True)
    fwd = create_dataset(options(tmp_path, **opt))[0]
    back = create_dataset(options(tmp_path, direction="BtoA", **opt))[0]
    assert torch.equal(fwd["A"], image_to_tensor(Image.fromarray(a)))
    assert torch.equal(back["A"], fwd["B"]) and torch.equal(back["B"], fwd["A"])
    gray = create_dataset(options(tmp_path, input_nc=1, **opt))[0]
    assert gray["A"].shape == (1, 32, 32) and gray["B"].shape == (3, 32, 32)
    write(tmp_path / "train" / "q.png", noise(1, 10))
    with pytest.raises(ImageLoadError, match="q.png"):
        create_dataset(options(tmp_path, **opt))[1]


# --- loading odd files ---------------------------------------------------------

def test_channel_conversion(tmp_path):
    g = write(tmp_path / "g.png", noise(20, 10, channels=1))
    rgb = write(tmp_path / "c.png", Image.new("RGB", (20, 10), (255, 0, 0)))
    im = load_image(g, 3)
    assert im.mode == "RGB" and len(set(im.getpixel((3, 4)))) == 1
    assert load_image(rgb, 1).mode == "L" and load_image(rgb, 1).getpixel((0, 0)) == 76  # ITU-R 601 luma
    assert image_to_tensor(load_image(rgb, 1)).shape == (1, 10, 20)


def test_grayscale_and_rgb_datasets(tmp_path):
    root = unaligned_root(tmp_path)
    item = UnalignedDataset(options(root, input_nc=1, output_nc=3))[0]
    assert item["A"].shape == (1, 64, 64) and item["B"].shape == (3, 64, 64)
    item = UnalignedDataset(options(root, input_nc=3, output_nc=1))[0]
    assert item["A"].shape == (3, 64, 64) and item["B"].shape == (1, 64, 64)


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 1), (255, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 0, 128))
    rgba.putpixel((2, 0), (0, 0, 255, 255))
    got = load_image(write(tmp_path / "rgba.png", rgba), 3)
    assert got.mode == "RGB" and got.getpixel((0, 0)) == (255, 255, 255)
    assert abs(got.getpixel((1, 0))[0] - 127) <= 1 and got.getpixel((2, 0)) == (0, 0, 255)
    la = Image.new("LA", (2, 1), (0, 0))
    la.putpixel((1, 0), (10, 255))
    got = load_image(write(tmp_path / "la.png", la), 1)
    assert got.mode == "L" and got.getpixel((0, 0)) == 255 and got.getpixel((1, 0)) == 10


def test_palette_images(tmp_path):
    p = Image.new("P", (3, 1))
    p.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    for x in range(3):
        p.putpixel((x, 0), x)
    assert [load_image(write(tmp_path / "p.png", p), 3).getpixel((x, 0)) for x in range(3)] == \
        [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    p.info["transparency"] = 1
    got = load_image(write(tmp_path / "pt.png", p), 3)
    assert got.getpixel((1, 0)) == (255, 255, 255) and got.getpixel((0, 0)) == (255, 0, 0)


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 128 * 257, 65535, 1000]], dtype=np.uint16)
    im = Image.fromarray(a)
    assert im.mode.startswith("I")
    got = load_image(write(tmp_path / "deep.png", im), 1)
    assert got.mode == "L" and [got.getpixel((x, 0)) for x in range(4)] == [0, 128, 255, 4]
    assert load_image(tmp_path / "deep.png", 3).getpixel((1, 0)) == (128, 128, 128)


def test_exif_rotation_and_cmyk_jpeg(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    Image.new("RGB", (40, 20), (200, 10, 10)).save(tmp_path / "phone.jpg", exif=exif)
    assert Image.open(tmp_path / "phone.jpg").size == (40, 20)
    assert load_image(tmp_path / "phone.jpg", 3).size == (20, 40)
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(tmp_path / "print.jpg")
    got = load_image(tmp_path / "print.jpg", 3)
    assert got.mode == "RGB" and got.getpixel((3, 3))[0] > 200 and got.getpixel((3, 3))[1] < 60


def bad_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    good = write(folder / "full.png", noise(64, 64))
    (folder / "truncated.png").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (folder / "notes.jpg").write_text("this is not a JPEG\n")
    return [folder / "notes.jpg", folder / "truncated.png"]


def test_corrupt_files_raise_image_load_error_naming_them(tmp_path):
    for path in bad_files(tmp_path):
        with pytest.raises(ImageLoadError, match=path.name) as info:
            load_image(path, 3)
        assert info.value.path == path
    with pytest.raises(ImageLoadError, match="missing.png"):
        load_image(tmp_path / "missing.png", 3)
    ds = SingleDataset(options(preprocess="none"), tmp_path)
    assert [p.name for p in ds.A_paths] == ["full.png", "notes.jpg", "truncated.png"]
    with pytest.raises(ImageLoadError, match="notes.jpg"):
        ds[1]


def test_skip_bad_images_skips_and_counts(tmp_path):
    bad_a = bad_files(tmp_path / "trainA")
    write(tmp_path / "trainA" / "z.png")
    (tmp_path / "trainB").mkdir()
    (tmp_path / "trainB" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    write(tmp_path / "trainB" / "c.png")
    ds = UnalignedDataset(options(tmp_path, skip_bad_images=True))
    assert [p for p, _ in ds.skipped_files] == bad_a + [tmp_path / "trainB" / "b.png"]
    assert all(reason for _, reason in ds.skipped_files)
    assert len(ds) == 2 and all(ds[i]["A"].shape == (3, 64, 64) for i in range(2))
    with pytest.raises(ImageLoadError):
        UnalignedDataset(options(tmp_path))[1]  # without the option the bad file stops the run
    for p in (tmp_path / "trainB").iterdir():
        if p.name != "b.png":
            p.unlink()
    with pytest.raises(DatasetFolderError, match="trainB"):
        UnalignedDataset(options(tmp_path, skip_bad_images=True))


# --- folders -------------------------------------------------------------------

def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DatasetFolderError, match="trainA") as info:
        UnalignedDataset(options(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(info.value)
    write(tmp_path / "trainB" / "b.png")
    (tmp_path / "trainA").mkdir()
    (tmp_path / "trainA" / "readme.txt").write_text("x")
    with pytest.raises(DatasetFolderError, match="trainA") as info:
        UnalignedDataset(options(tmp_path))
    assert str(tmp_path / "trainA") in str(info.value) and "readme.txt" in str(info.value)
    with pytest.raises(DatasetFolderError, match="dataroot"):
        UnalignedDataset(options())
    with pytest.raises(DatasetFolderError, match="train"):
        AlignedDataset(options(tmp_path))


def test_list_images_sorted_hidden_recursive_max(tmp_path):
    for name in ["b.png", "a.JPG", "sub/c.png", "._a.png", ".ipynb_checkpoints/d.png"]:
        write(tmp_path / name)
    (tmp_path / "e.txt").write_text("not an image")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] == \
        ["a.JPG", "b.png", "sub/c.png"]
    assert len(list_images(tmp_path, recursive=True, max_size=2)) == 2
    assert len(UnalignedDataset(options(unaligned_root(tmp_path / "r", 5, 4), max_dataset_size=3))) == 3


def test_serial_batches_pairs_index_with_b_modulo(tmp_path):
    root = unaligned_root(tmp_path, n_a=5, n_b=3)
    ds = UnalignedDataset(options(root, serial_batches=True))
    assert len(ds) == 5
    for i in range(5):
        item = ds[i]
        assert item["A_paths"].endswith(f"a{i}.png") and item["B_paths"].endswith(f"b{i % 3}.png")
    rand = UnalignedDataset(options(root))
    picks = set()
    for epoch in range(6):
        rand.set_epoch(epoch)
        picks |= {rand[i]["B_paths"] for i in range(5)}
    assert len(picks) == 3


def test_btoa_swaps_folders_and_channels(tmp_path):
    root = unaligned_root(tmp_path, n_a=2, n_b=3)
    item = UnalignedDataset(options(root, direction="BtoA", serial_batches=True, input_nc=1))[0]
    assert "trainB" in item["A_paths"] and "trainA" in item["B_paths"]
    assert item["A"].shape[0] == 1 and item["B"].shape[0] == 3
    assert len(UnalignedDataset(options(root, direction="BtoA"))) == 3


# --- tensors and saving --------------------------------------------------------

def test_tensor_image_round_trip_and_atomic_save(tmp_path):
    t = torch.rand(3, 9, 11) * 2 - 1
    back = image_to_tensor(tensor_to_image(t.unsqueeze(0)))
    # Rounded to the nearest of the 256 levels: at most half a level off (truncating would be up to one).
    assert back.shape == t.shape and (back - t).abs().max() <= 0.5 / 127.5 + 1e-6
    levels = torch.arange(256, dtype=torch.float32).reshape(1, 16, 16) / 127.5 - 1
    assert torch.allclose(image_to_tensor(tensor_to_image(levels)), levels, atol=1e-6)  # exact on the levels
    assert np.asarray(tensor_to_image(torch.full((1, 2, 2), 0.999 / 127.5 - 1))).max() == 1  # 0.999 rounds up
    assert tensor_to_image(torch.zeros(1, 5, 6)).mode == "L"
    with pytest.raises(ValueError):
        tensor_to_image(torch.zeros(2, 5, 6))
    out = save_image(t, tmp_path / "new" / "deeper" / "x.png")
    assert torch.equal(image_to_tensor(load_image(out, 3)), image_to_tensor(tensor_to_image(t)))
    save_image(Image.new("L", (3, 3)), tmp_path / "new" / "y.jpg")
    assert sorted(p.name for p in (tmp_path / "new").rglob("*")) == ["deeper", "x.png", "y.jpg"]
    with pytest.raises(ValueError, match="extension"):
        save_image(t, tmp_path / "z.unknown")
