"""End to end through the command line: data -> train -> translate -> evaluate, and the demo."""
import re
import subprocess
import sys

import pytest
import torch
from PIL import Image

from transfigure.cli import main

TINY = ["--netG", "resnet_1blocks", "--ngf", "4", "--ndf", "4", "--load_size", "32", "--crop_size", "32",
        "--n_epochs", "1", "--n_epochs_decay", "1", "--num_threads", "0", "--pool_size", "2", "--no_progress"]


@pytest.fixture
def trained_run(tmp_path):
    data = tmp_path / "data"
    assert main(["data", "synth", "--out", str(data), "--size", "32", "--n_train", "4", "--n_test", "2"]) == 0
    ckpts = tmp_path / "ckpts"
    assert main(["train", "--dataroot", str(data), "--name", "tiny", "--checkpoints_dir", str(ckpts), *TINY]) == 0
    return data, ckpts


def test_train_translate_any_size(trained_run, tmp_path):
    data, ckpts = trained_run
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (257, 183), (90, 140, 200)).save(photos / "odd.jpg")
    Image.new("L", (31, 17), 128).save(photos / "gray_small.png")
    Image.new("RGBA", (40, 40), (10, 200, 30, 128)).save(photos / "alpha.png")
    out = tmp_path / "out"
    assert main(["translate", "--name", "tiny", "--checkpoints_dir", str(ckpts), "--direction", "BtoA",
                 "--input", str(photos), "--output", str(out), "--compare", "--no_progress"]) == 0
    assert Image.open(out / "odd.png").size == (257, 183)
    assert Image.open(out / "gray_small.png").size == (31, 17)
    assert Image.open(out / "alpha.png").mode == "RGB"
    assert Image.open(out / "compare" / "odd.png").size == (2 * 257, 183)

    # Existing outputs are kept unless --overwrite.
    before = (out / "odd.png").stat().st_mtime_ns
    assert main(["translate", "--name", "tiny", "--checkpoints_dir", str(ckpts), "--input", str(photos / "odd.jpg"),
                 "--output", str(out), "--no_progress"]) == 0
    assert (out / "odd.png").stat().st_mtime_ns == before


def test_translate_never_writes_over_an_input(trained_run, tmp_path, capsys):
    data, ckpts = trained_run
    folder = tmp_path / "pngs"
    folder.mkdir()
    Image.new("RGB", (32, 32), "red").save(folder / "a.png")
    original = (folder / "a.png").read_bytes()
    code = main(["translate", "--name", "tiny", "--checkpoints_dir", str(ckpts), "--input", str(folder),
                 "--output", str(folder), "--overwrite", "--no_progress"])
    assert code == 2
    assert "overwrite an input" in capsys.readouterr().err
    assert (folder / "a.png").read_bytes() == original


def test_translate_with_plain_weight_files(trained_run, tmp_path):
    data, ckpts = trained_run
    image = sorted((data / "testA").iterdir())[0]
    outputs = {}
    for filename in ("latest_net_G_A.pth", "latest_net_G_A.safetensors", "latest.ckpt"):
        out = tmp_path / filename
        assert main(["translate", "--checkpoint", str(ckpts / "tiny" / filename), "--input", str(image),
                     "--output", str(out), "--no_progress"]) == 0
        outputs[filename] = (out / f"{image.stem}.png").read_bytes()
    assert len(set(outputs.values())) == 1

    # A plain .pth on its own (no options.yaml beside it) takes the architecture from flags.
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "g.pth").write_bytes((ckpts / "tiny" / "latest_net_G_A.pth").read_bytes())
    assert main(["translate", "--checkpoint", str(lone / "g.pth"), "--netG", "resnet_1blocks", "--ngf", "4",
                 "--input", str(image), "--output", str(tmp_path / "lone_out"), "--no_progress"]) == 0
    assert (tmp_path / "lone_out" / f"{image.stem}.png").read_bytes() == outputs["latest.ckpt"]


def test_clear_errors(tmp_path, capsys):
    assert main(["train", "--dataroot", str(tmp_path / "missing"), "--name", "x", "--checkpoints_dir",
                 str(tmp_path), *TINY]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "missing") in err and "trainA" in err
    assert main(["translate", "--checkpoint", str(tmp_path / "none.pth"), "--input", str(tmp_path),
                 "--output", str(tmp_path / "o")]) == 2
    assert "none.pth" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    assert main(["translate", "--checkpoint", str(bad), "--input", str(img), "--output", str(tmp_path / "o")]) == 2
    assert "bad.pth" in capsys.readouterr().err
    assert main(["train", "--dataroot", str(tmp_path), "--norm", "group"]) == 2
    assert "--norm" in capsys.readouterr().err


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "transfigure", "train", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for flag in ("--dataroot", "--lambda_identity", "--continue_train", "--preprocess", "--config", "--seed"):
        assert flag in out


def test_demo_page(tmp_path, image_sources):
    from transfigure.demo import run_demo

    page = run_demo(dataroot=str(tmp_path / "data"), checkpoints_dir=str(tmp_path / "ckpts"),
                    results_dir=str(tmp_path / "results"), n_train=6, n_test=3, progress=False,
                    overrides={"n_epochs": 1, "n_epochs_decay": 0, "ngf": 4, "ndf": 4, "netG": "resnet_1blocks"})
    sources = image_sources(page.read_text())
    assert len(sources) == 3
    for src in sources:
        assert (page.parent / src).is_file(), src
    text = page.read_text()
    for label in ("trained CycleGAN", "untrained", "identity mapping"):
        assert label in text
    assert re.search(r"<b>0\.\d{3}</b>", text)
    # A second run reuses the finished training run instead of overwriting it.
    stamp = (tmp_path / "ckpts" / "demo" / "latest.ckpt").stat().st_mtime_ns
    run_demo(dataroot=str(tmp_path / "data"), checkpoints_dir=str(tmp_path / "ckpts"),
             results_dir=str(tmp_path / "results"), n_train=6, n_test=3, progress=False,
             overrides={"n_epochs": 1, "n_epochs_decay": 0, "ngf": 4, "ndf": 4, "netG": "resnet_1blocks"})
    assert (tmp_path / "ckpts" / "demo" / "latest.ckpt").stat().st_mtime_ns == stamp


def test_pix2pix_end_to_end_on_aligned_data(tmp_path):
    data = tmp_path / "data"
    assert main(["data", "synth", "--out", str(data), "--size", "32", "--n_train", "4", "--n_test", "2"]) == 0
    ckpts = tmp_path / "ckpts"
    # Photo -> labels from the aligned A|B files; the official unet layout at a tiny width.
    assert main(["train", "--config", "pix2pix", "--dataroot", str(data), "--name", "p2p", "--checkpoints_dir",
                 str(ckpts), "--direction", "BtoA", "--netG", "unet_32", "--ngf", "4", "--ndf", "4",
                 "--load_size", "32", "--crop_size", "32", "--n_epochs", "1", "--n_epochs_decay", "0",
                 "--num_threads", "0", "--no_progress"]) == 0
    saved = torch.load(ckpts / "p2p" / "latest_net_G.pth", weights_only=True)
    assert "model.model.1.model.3.model.3.model.1.weight" in saved  # nested official key path
    for flags in ([], ["--eval"]):
        out = tmp_path / f"out{len(flags)}"
        assert main(["translate", "--name", "p2p", "--checkpoints_dir", str(ckpts), "--input", str(data / "testB"),
                     "--output", str(out), "--no_progress", *flags]) == 0
        assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png"]
    assert main(["translate", "--name", "p2p", "--checkpoints_dir", str(ckpts), "--direction", "AtoB",
                 "--input", str(data / "testB"), "--output", str(tmp_path / "wrong"), "--no_progress"]) == 2
    # The plain file loads strictly through the official-layout loader with the architecture flags.
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "g.pth").write_bytes((ckpts / "p2p" / "latest_net_G.pth").read_bytes())
    assert main(["translate", "--checkpoint", str(lone / "g.pth"), "--netG", "unet_32", "--ngf", "4", "--norm",
                 "batch", "--no_dropout", "false", "--eval", "--input", str(data / "testB"),
                 "--output", str(tmp_path / "plain"), "--no_progress"]) == 0
    assert (tmp_path / "plain" / "00000.png").read_bytes() == (tmp_path / "out1" / "00000.png").read_bytes()


def test_cartoon_data_commands(tmp_path):
    data = tmp_path / "cartoon"
    assert main(["data", "synth", "--task", "photo2cartoon", "--out", str(data), "--size", "32", "--n_train", "3",
                 "--n_test", "2"]) == 0
    assert sorted(p.name for p in data.iterdir() if p.is_dir()) == ["testA", "testB", "trainA", "trainB"]
    smooth = data / "trainB_smooth"
    assert main(["data", "smooth-edges", "--src", str(data / "trainB"), "--out", str(smooth), "--no_progress"]) == 0
    assert sorted(p.name for p in smooth.iterdir()) == sorted(p.name for p in (data / "trainB").iterdir())
    # Refuses to write into the folder it reads.
    assert main(["data", "smooth-edges", "--src", str(data / "trainB"), "--out", str(data / "trainB"),
                 "--no_progress"]) == 2


def test_output_piped_into_a_reader_that_stops_ends_quietly():
    """`transfigure models | head`: the reader goes away; no BrokenPipeError traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "transfigure", "models"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader stops before anything is read
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == ""
