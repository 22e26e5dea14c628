"""Inputs at scale: globs, recursive folders with mirrored names, videos, --max_size,
--tile through the command line, and the Python API's translate_video."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import transfigure
from transfigure.cli import main
from transfigure.nets import define_G
from transfigure.translate import collect_inputs, input_root, output_names
from transfigure.video import translate_video, video_info

ARCH = ["--no_progress"]


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gen") / "tiny_net_G_A.pth"
    torch.save(define_G(3, 3, ngf=4, netG="resnet_1blocks").state_dict(), path)
    (path.parent / "options.yaml").write_text("netG: resnet_1blocks\nngf: 4\n")  # as a run folder has it
    return path


def _image(path: Path, size=(40, 30), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _video(path: Path, frames=12, fps=10.0, size=(48, 32)) -> Path:
    fourcc = {".mp4": "mp4v", ".avi": "MJPG", ".mov": "mp4v"}[path.suffix]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    for i in range(frames):  # a moving bar, so frames differ
        frame = np.full((size[1], size[0], 3), 40, np.uint8)
        frame[:, (i * 3) % size[0]:(i * 3) % size[0] + 6] = (30, 200, 240)
        writer.write(frame)
    writer.release()
    return path


def _frame_count(path: Path) -> int:
    capture, n = cv2.VideoCapture(str(path)), 0
    while capture.read()[0]:
        n += 1
    capture.release()
    return n


def translate(generator_file, *args) -> int:
    return main(["translate", "--checkpoint", str(generator_file), *ARCH, *args])


def test_recursive_folder_mirrors_subfolders_and_keeps_existing_outputs(generator_file, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _image(src / "a.jpg")
    _image(src / "trip" / "b.png", seed=1)
    _image(src / "trip" / "day2" / "c.png", seed=2)
    _image(src / ".hidden" / "d.png", seed=3)
    assert translate(generator_file, "--input", str(src), "--output", str(out)) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png"]
    assert translate(generator_file, "--input", str(src), "--output", str(out), "--recursive") == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "a.png", "trip/b.png", "trip/day2/c.png"]
    assert "Kept 1 existing output(s); use --overwrite" in capsys.readouterr().out

    before = (out / "a.png").stat().st_mtime_ns
    (out / "a.png").write_bytes(b"mine")  # a user's file of the same name is not replaced ...
    assert translate(generator_file, "--input", str(src), "--output", str(out), "--recursive") == 0
    assert (out / "a.png").read_bytes() == b"mine"
    assert translate(generator_file, "--input", str(src), "--output", str(out), "--recursive", "--overwrite") == 0
    assert Image.open(out / "a.png").size == (40, 30)  # ... unless --overwrite
    assert before > 0


def test_glob_patterns_select_files_and_name_outputs_from_their_fixed_prefix(generator_file, tmp_path):
    src = tmp_path / "photos"
    for name in ("x.jpg", "y.jpg", "z.png", "sub/w.jpg"):
        _image(src / name)
    assert [p.name for p in collect_inputs(str(src / "*.jpg"))] == ["x.jpg", "y.jpg"]
    assert [p.name for p in collect_inputs(str(src / "**" / "*.jpg"))] == ["w.jpg", "x.jpg", "y.jpg"]
    assert input_root(str(src / "**" / "*.jpg")) == src
    out = tmp_path / "out"
    assert translate(generator_file, "--input", str(src / "**" / "*.jpg"), "--output", str(out)) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["sub/w.png", "x.png", "y.png"]
    # Two images of one folder with one stem keep their extension apart.
    assert output_names([src / "x.jpg", src / "x.png"], src) == [Path("x.jpg.png"), Path("x.png.png")]
    with pytest.raises(FileNotFoundError, match=r"matches no image or video"):
        collect_inputs(str(src / "*.gif"))


@pytest.mark.parametrize("suffix,fps", [(".mp4", 10.0), (".avi", 7.5)])
def test_video_translates_to_same_frame_count_and_fps_without_audio(generator_file, tmp_path, capsys, suffix, fps):
    clip = _video(tmp_path / f"clip{suffix}", frames=12, fps=fps)
    out = tmp_path / "out"
    assert translate(generator_file, "--input", str(clip), "--output", str(out), "--batch_size", "5") == 0
    result = out / clip.name
    assert _frame_count(result) == 12 == _frame_count(clip)
    got_fps, _, width, height = video_info(result)
    assert got_fps == pytest.approx(fps) and (width, height) == (48, 32)
    printed = capsys.readouterr().out
    assert "1 video(s)" in printed and "audio track is not kept" in printed
    assert not list(out.glob(".*"))  # no temporary file left


def test_interrupted_video_leaves_no_partial_file(tmp_path):
    clip = _video(tmp_path / "clip.mp4", frames=10)
    calls = []

    def failing(images):
        calls.append(len(images))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return images

    with pytest.raises(KeyboardInterrupt):
        translate_video(failing, clip, tmp_path / "out" / "clip.mp4", batch_size=4, progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_broken_video_is_a_clear_error(generator_file, tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    assert translate(generator_file, "--input", str(bad), "--output", str(tmp_path / "out")) == 2
    assert "bad.mp4" in capsys.readouterr().err
    assert not (tmp_path / "out" / "bad.mp4").exists()


def test_max_size_downscales_and_tile_keeps_the_size(generator_file, tmp_path):
    photo = _image(tmp_path / "in" / "big.png", size=(300, 200))
    assert translate(generator_file, "--input", str(photo), "--output", str(tmp_path / "small"),
                     "--max_size", "150") == 0
    assert Image.open(tmp_path / "small" / "big.png").size == (150, 100)
    assert translate(generator_file, "--input", str(photo), "--output", str(tmp_path / "whole")) == 0
    assert translate(generator_file, "--input", str(photo), "--output", str(tmp_path / "tiled"),
                     "--tile", "128", "--tile_overlap", "32") == 0
    whole = np.asarray(Image.open(tmp_path / "whole" / "big.png"), dtype=np.float64)
    tiled = np.asarray(Image.open(tmp_path / "tiled" / "big.png"), dtype=np.float64)
    assert tiled.shape == whole.shape and np.abs(tiled - whole).mean() < 3.0


def test_bad_tile_options_are_refused_before_any_work(generator_file, tmp_path, capsys):
    photo = _image(tmp_path / "p.png")
    assert translate(generator_file, "--input", str(photo), "--output", str(tmp_path / "o"),
                     "--tile", "64", "--tile_overlap", "40") == 2
    assert "--tile_overlap" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_api_translate_video_and_folder(generator_file, tmp_path):
    t = transfigure.load(generator_file, device="cpu")
    clip = _video(tmp_path / "clip.mov", frames=6, fps=12.0)
    assert t.translate_video(clip, tmp_path / "cartoon.mov", progress=False) == 6
    assert _frame_count(tmp_path / "cartoon.mov") == 6 and video_info(tmp_path / "cartoon.mov")[0] == pytest.approx(12)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        t.translate_video(clip, tmp_path / "cartoon.mov", progress=False)
    summary = t.translate_folder(tmp_path, tmp_path / "all", progress=False)
    assert sorted(p.name for p in summary.written) == ["cartoon.mov", "clip.mov"]
