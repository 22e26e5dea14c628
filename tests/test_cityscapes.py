"""`data prepare-cityscapes` against the reference's prepare_cityscapes_dataset.py steps,
re-done here on small archives laid out as the official ones."""
import zipfile

import numpy as np
from PIL import Image

from transfigure.cli import main

CITIES = {"train": ["aachen", "bochum"], "val": ["frankfurt"]}


def official_archives(tmp_path):
    """gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip with the official member names,
    and the same files unzipped (the reference reads the folders)."""
    rng = np.random.default_rng(0)
    folders = {"gtFine": tmp_path / "unzipped", "leftImg8bit": tmp_path / "unzipped"}
    for split, cities in CITIES.items():
        for city in cities:
            for n in range(2):
                stem = f"{city}_{n:06d}_000019"
                label = Image.fromarray(rng.integers(0, 8, (48, 96)).astype(np.uint8) * 30, "L").convert("P")
                photo = Image.fromarray(rng.integers(0, 256, (48, 96, 3)).astype(np.uint8))
                for top, name, image in (("gtFine", f"{stem}_gtFine_color.png", label.convert("RGBA")),
                                         ("gtFine", f"{stem}_gtFine_labelIds.png", label),
                                         ("leftImg8bit", f"{stem}_leftImg8bit.png", photo)):
                    path = folders[top] / top / split / city / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    image.save(path)
    zips = {}
    for top in ("gtFine", "leftImg8bit"):
        zips[top] = tmp_path / f"{top}_trainvaltest.zip"
        with zipfile.ZipFile(zips[top], "w") as z:
            for path in sorted((tmp_path / "unzipped" / top).rglob("*.png")):
                z.write(path, path.relative_to(tmp_path / "unzipped").as_posix())
    return zips, tmp_path / "unzipped"


def reference_steps(unzipped, out):
    """The reference script's process_cityscapes, step for step (glob, sort, RGB, resize to 256
    with Pillow's default filter, photo left and labels right, JPEG 100 without subsampling)."""
    for phase, save_phase in (("val", "test"), ("train", "train")):
        for sub in (save_phase, save_phase + "A", save_phase + "B"):
            (out / sub).mkdir(parents=True)
        segmaps = sorted(unzipped.glob(f"gtFine/{phase}/*/*_color.png"))
        photos = sorted(unzipped.glob(f"leftImg8bit/{phase}/*/*_leftImg8bit.png"))
        for i, (s, p) in enumerate(zip(segmaps, photos)):
            segmap = Image.open(s).convert("RGB").resize((256, 256))
            photo = Image.open(p).convert("RGB").resize((256, 256))
            pair = Image.new("RGB", (512, 256))
            pair.paste(segmap, (256, 0))
            pair.paste(photo, (0, 0))
            pair.save(out / save_phase / f"{i}.jpg", format="JPEG", subsampling=0, quality=100)
            photo.save(out / (save_phase + "A") / f"{i}_A.jpg", format="JPEG", subsampling=0, quality=100)
            segmap.save(out / (save_phase + "B") / f"{i}_B.jpg", format="JPEG", subsampling=0, quality=100)


def test_prepare_cityscapes_writes_what_the_reference_script_writes(tmp_path, capsys):
    zips, unzipped = official_archives(tmp_path)
    reference_steps(unzipped, tmp_path / "reference")
    for source, name in ((zips, "from_zips"), ({k: unzipped for k in zips}, "from_folders")):
        out = tmp_path / name
        assert main(["data", "prepare-cityscapes", "--gtFine", str(source["gtFine"]), "--leftImg8bit",
                     str(source["leftImg8bit"]), "--out", str(out), "--no_progress"]) == 0
        assert "train 4 pairs" in capsys.readouterr().out
        files = sorted(p.relative_to(out) for p in out.rglob("*.jpg"))
        assert files == sorted(p.relative_to(tmp_path / "reference") for p in (tmp_path / "reference").rglob("*.jpg"))
        assert len(files) == 3 * (4 + 2)
        for f in files:
            assert (out / f).read_bytes() == (tmp_path / "reference" / f).read_bytes(), f


def test_mismatched_archives_leave_no_folder(tmp_path, capsys):
    zips, _ = official_archives(tmp_path)
    assert main(["data", "prepare-cityscapes", "--gtFine", str(zips["gtFine"]), "--leftImg8bit",
                 str(zips["gtFine"]), "--out", str(tmp_path / "c"), "--no_progress"]) == 2
    assert "0 photos" in capsys.readouterr().err and not (tmp_path / "c").exists()
