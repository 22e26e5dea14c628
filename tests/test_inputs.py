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
    assert translate(generator_file, "--input", str(bad), "--output", str(tmp_path / "out")) == 1
    assert "bad.mp4: cannot be opened as a video" in capsys.readouterr().err
    assert not (tmp_path / "out" / "bad.mp4").exists()
    assert translate(generator_file, "--input", str(bad), "--output", str(tmp_path / "out"), "--strict") == 2
    assert "bad.mp4" in capsys.readouterr().err


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
    diff = np.abs(tiled - whole).mean()
    print(f"tiled vs whole: mean {diff:.4f}/255")
    # Tiles see other borders, so a few pixels differ (0.09/255 here); an ignored --tile gives 0.
    assert tiled.shape == whole.shape and 0 < diff < 0.3


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


def test_video_frames_keep_their_order_and_colour_order(tmp_path):
    """Each frame a different flat colour; a function that keeps only the red channel: the
    output's frame i must be frame i's red, so frames neither reorder nor pass BGR as RGB."""
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (32, 24))
    reds = [20 + 30 * i for i in range(7)]
    for red in reds:
        writer.write(np.full((24, 32, 3), (200, 90, red), np.uint8))  # OpenCV frames are BGR
    writer.release()

    def red_only(images):
        return [Image.merge("RGB", (im.getchannel("R"), *[Image.new("L", im.size, 0)] * 2)) for im in images]

    assert translate_video(red_only, clip, tmp_path / "out.avi", batch_size=3, progress=False) == len(reds)
    capture, frames = cv2.VideoCapture(str(tmp_path / "out.avi")), []
    while (read := capture.read())[0]:
        frames.append(read[1].reshape(-1, 3).mean(0))  # mean B, G, R
    capture.release()
    assert len(frames) == len(reds)
    for (b, g, r), red in zip(frames, reds):
        assert abs(r - red) < 4 and b < 4 and g < 4, (b, g, r, red)


def test_direction_btoa_uses_generator_b(tmp_path):
    """A run folder with two different generators: --direction BtoA (CLI and API) is G_B's
    output, AtoB G_A's, each computed here on the unpadded image."""
    run = tmp_path / "ckpts" / "two_way"
    run.mkdir(parents=True)
    nets = {}
    for name, seed in (("G_A", 1), ("G_B", 2)):
        torch.manual_seed(seed)
        nets[name] = define_G(3, 3, ngf=4, netG="resnet_1blocks").eval()
        torch.save(nets[name].state_dict(), run / f"latest_net_{name}.pth")
    (run / "options.yaml").write_text("model: cycle_gan\nnetG: resnet_1blocks\nngf: 4\n")
    photo = _image(tmp_path / "p.png", size=(36, 28))
    x = torch.from_numpy(np.asarray(Image.open(photo))).permute(2, 0, 1)[None].float() / 127.5 - 1
    for direction, name in (("AtoB", "G_A"), ("BtoA", "G_B")):
        with torch.no_grad():
            expected = ((nets[name](x)[0, :, :28, :36].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
        out = tmp_path / direction
        assert main(["translate", "--name", "two_way", "--checkpoints_dir", str(tmp_path / "ckpts"), "--direction",
                     direction, "--input", str(photo), "--output", str(out), "--no_progress"]) == 0
        got = np.asarray(Image.open(out / "p.png")).astype(int)
        assert np.abs(got - expected).max() <= 1, direction
        api = transfigure.load("two_way", checkpoints_dir=str(tmp_path / "ckpts"), direction=direction, device="cpu")
        assert np.abs(np.asarray(api(Image.open(photo))).astype(int) - expected).max() <= 1, direction


def test_one_unreadable_file_does_not_stop_the_others(generator_file, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _image(src / "a.png"), _image(src / "c.png", seed=1)
    (src / "b.jpg").write_bytes(b"not a jpeg at all")
    assert translate(generator_file, "--input", str(src), "--output", str(out)) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    err = capsys.readouterr().err
    assert "Could not read 1 input(s)" in err and "b.jpg" in err
    # --strict stops at the first unreadable input, naming it.
    assert translate(generator_file, "--input", str(src), "--output", str(tmp_path / "strict"), "--strict") == 2
    assert "b.jpg" in capsys.readouterr().err
    assert not (tmp_path / "strict" / "c.png").exists()
