import json
import re

import numpy as np
import pytest
from PIL import Image

from transfigure.data.synthetic import (CLASSES, PALETTE, ROAD, SKY, load_palette,
                                        make_labels2photo, make_pair)

SIZE, N_TRAIN, N_TEST = 32, 8, 4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "d"
    summary = make_labels2photo(root, size=SIZE, n_train=N_TRAIN, n_test=N_TEST, seed=0, progress=False)
    return root, summary


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _load(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_deterministic_byte_identical(dataset, tmp_path):
    root, _ = dataset
    make_labels2photo(tmp_path / "again", size=SIZE, n_train=N_TRAIN, n_test=N_TEST, seed=0, progress=False)
    assert _files(root) == _files(tmp_path / "again")


def test_test_set_independent_of_n_train(dataset, tmp_path):
    root, _ = dataset
    make_labels2photo(tmp_path / "more", size=SIZE, n_train=N_TRAIN + 3, n_test=N_TEST, seed=0, progress=False)
    for name in ("testA/00000.png", "testB/00003.png", "train/00007.png"):
        assert (root / name).read_bytes() == (tmp_path / "more" / name).read_bytes()


def test_other_seed_differs():
    assert not np.array_equal(make_pair(SIZE, seed=0)[1], make_pair(SIZE, seed=1)[1])
    assert not np.array_equal(make_pair(SIZE, seed=0)[0], make_pair(SIZE, seed=1)[0])


def test_layout_and_counts(dataset):
    root, summary = dataset
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        names = [f"{i:05d}.png" for i in range(n)]
        for d in (f"{split}A", f"{split}B", split):
            assert sorted(p.name for p in (root / d).iterdir()) == names
        assert Image.open(root / f"{split}A" / names[0]).size == (SIZE, SIZE)
        assert Image.open(root / split / names[0]).size == (2 * SIZE, SIZE)
    meta = json.loads((root / "palette.json").read_text())
    assert (meta["task"], meta["A"], meta["B"], meta["size"], meta["seed"]) == ("labels2photo", "labels", "photos", SIZE, 0)
    assert summary["n_train"] == N_TRAIN and summary["paths"]["testB"] == str(root / "testB")
    names, colors = load_palette(root)
    assert names == list(CLASSES) and colors.dtype == np.uint8 and colors.shape == (len(CLASSES), 3)
    assert load_palette(root / "palette.json")[0] == names


def test_aligned_is_hstack_of_a_and_b(dataset):
    root, _ = dataset
    for split, name in (("train", "00005.png"), ("test", "00002.png")):
        a, b = _load(root / f"{split}A" / name), _load(root / f"{split}B" / name)
        assert np.array_equal(_load(root / split / name), np.hstack([a, b]))


def test_labels_flat_palette_colors_with_sky_and_road(dataset):
    root, _ = dataset
    for path in sorted((root / "trainA").glob("*.png")) + sorted((root / "testA").glob("*.png")):
        px = _load(path).reshape(-1, 3)
        present = {tuple(c) for c in np.unique(px, axis=0)}
        assert present <= {tuple(c) for c in PALETTE.tolist()}, path
        assert tuple(PALETTE[SKY]) in present and tuple(PALETTE[ROAD]) in present, path


def test_photos_textured_and_unlike_label_colors():
    sums, counts = np.zeros((len(CLASSES), 3)), np.zeros(len(CLASSES))
    for i in range(20):
        _, photo, cls = make_pair(SIZE, seed=0, split="train", index=i)
        for c in np.unique(cls):
            region = photo[cls == c].astype(float)
            if len(region) >= 6:                             # tiny slivers may be almost flat
                assert region.std(0).max() > 4, (i, CLASSES[c])
            sums[c] += region.sum(0)
            counts[c] += len(region)
    assert (counts > 0).all()                                # every class appears somewhere
    mean = sums / counts[:, None]
    # Far from its own label color, so an identity mapping snapped to the palette scores badly.
    assert (np.linalg.norm(mean - PALETTE, axis=1) > 80).all(), mean


def test_refuses_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path))):
        make_labels2photo(tmp_path, size=SIZE, n_train=2, n_test=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_refuses_other_parameters_reuses_same(tmp_path):
    out = tmp_path / "d"
    make_labels2photo(out, size=SIZE, n_train=2, n_test=1, progress=False)
    with pytest.raises(FileExistsError, match="seed"):
        make_labels2photo(out, size=SIZE, n_train=2, n_test=1, seed=3, progress=False)
    assert make_labels2photo(out, size=SIZE, n_train=2, n_test=1, progress=False)["reused"]
    (out / "testB" / "00000.png").unlink()                   # an interrupted run is completed
    summary = make_labels2photo(out, size=SIZE, n_train=2, n_test=1, progress=False)
    assert not summary["reused"] and (out / "testB" / "00000.png").is_file()


def test_photo2cartoon_pairs_only_in_test(tmp_path):
    from transfigure.data.synthetic import cartoon_of_scene, make_photo2cartoon, render_scene

    a = make_photo2cartoon(tmp_path / "a", size=32, n_train=3, n_test=2, seed=5, progress=False)
    make_photo2cartoon(tmp_path / "b", size=32, n_train=3, n_test=2, seed=5, progress=False)
    for d in ("trainA", "trainB", "testA", "testB"):
        for name in ("00000.png", "00001.png"):
            assert (tmp_path / "a" / d / name).read_bytes() == (tmp_path / "b" / d / name).read_bytes()
    assert not (tmp_path / "a" / "train").exists()  # unpaired task: no aligned layout
    cls, inst, photo = render_scene(32, 5, "test", 1)
    expected = cartoon_of_scene(cls, inst, photo)
    assert np.array_equal(np.array(Image.open(tmp_path / "a" / "testB" / "00001.png")), expected)
    assert np.array_equal(np.array(Image.open(tmp_path / "a" / "testA" / "00001.png")), photo)
    # Training cartoons show other scenes than the training photos.
    cls, inst, photo = render_scene(32, 5, "train", 0)
    assert not np.array_equal(np.array(Image.open(tmp_path / "a" / "trainB" / "00000.png")),
                              cartoon_of_scene(cls, inst, photo))
    assert a["reused"] is False and make_photo2cartoon(tmp_path / "a", size=32, n_train=3, n_test=2, seed=5,
                                                       progress=False)["reused"] is True


def test_cartoon_is_flat_with_outlines():
    from transfigure.data.synthetic import OUTLINE, cartoon_of_scene, render_scene

    cls, inst, photo = render_scene(64, 0, "test", 0)
    cartoon = cartoon_of_scene(cls, inst, photo)
    colors = np.unique(cartoon.reshape(-1, 3), axis=0)
    assert len(colors) <= len(np.unique(cls.astype(np.int64) * 100_000 + inst)) + 1  # one per object + outline
    assert len(np.unique(photo.reshape(-1, 3), axis=0)) > 10 * len(colors)
    outline = np.all(cartoon == OUTLINE.astype(np.uint8), -1)
    assert 0.02 < outline.mean() < 0.4
