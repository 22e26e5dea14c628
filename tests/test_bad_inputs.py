"""Bad inputs through the real command line: one clear line naming the file or option,
exit status 2 (130 for Ctrl-C), nothing of the user's overwritten, no code run from a
hostile file. (Issue 15.)"""
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transfigure.cli import main
from shared_data import WEIGHTS, needs_weights
from transfigure.nets import define_G


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "w" / "tiny_net_G_A.pth"
    path.parent.mkdir()
    torch.save(define_G(3, 3, ngf=4, netG="resnet_1blocks").state_dict(), path)
    (path.parent / "options.yaml").write_text("netG: resnet_1blocks\nngf: 4\ninput_nc: 3\n")
    return path


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "in" / "p.png"
    path.parent.mkdir()
    Image.new("RGB", (20, 16), (120, 60, 30)).save(path)
    return path


def run(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return code, err


def one_line(err: str) -> str:
    assert err.count("\n") == 0, err
    return err


def test_export_never_writes_over_its_input_or_into_a_folder(capsys, weights, tmp_path):
    before = weights.read_bytes()
    code, err = run(capsys, "export", "--checkpoint", str(weights), "--format", "torchscript", "--out",
                    str(weights), "--overwrite")
    assert code == 2 and "--out" in one_line(err) and weights.read_bytes() == before
    code, err = run(capsys, "export", "--checkpoint", str(weights), "--format", "torchscript", "--out",
                    str(weights.with_name("copy.pt")), "--overwrite")
    assert code == 0
    code, err = run(capsys, "export", "--checkpoint", str(weights), "--format", "torchscript", "--out", str(tmp_path))
    assert code == 2 and "is a folder" in one_line(err)
    code, err = run(capsys, "export", "--checkpoint", str(weights), "--format", "onnx", "--out",
                    str(tmp_path / "x.txt"))
    assert code == 2 and ".onnx" in one_line(err) and not (tmp_path / "x.txt").exists()


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/abs_run_name", ".."])
def test_a_run_name_cannot_leave_the_checkpoints_folder(capsys, tmp_path, name):
    code, err = run(capsys, "train", "--dataroot", str(tmp_path), "--checkpoints_dir", str(tmp_path / "ck"),
                    "--name", name)
    assert code == 2 and "--name" in one_line(err)
    assert not (tmp_path / "ck").exists() and not (tmp_path.parent.parent / "escaped").exists()


def test_stale_temporary_files_go_and_long_names_fit(capsys, weights, photo, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".transfigure-999999999-0123456789ab.tmp"  # no process has that id: a killed run's
    stale.write_bytes(b"")
    mine = out / ".transfigure-notes.txt"  # not ours by its pattern: left alone
    mine.write_text("keep")
    long_name = photo.with_name("x" * 240 + ".png")
    photo.rename(long_name)
    code, err = run(capsys, "translate", "--checkpoint", str(weights), "--input", str(long_name), "--output",
                    str(out), "--no_progress")
    assert code == 0, err
    assert (out / long_name.name).is_file() and not stale.exists() and mine.read_text() == "keep"


def test_nan_weights_are_refused_at_load_and_by_export(capsys, weights, photo, tmp_path):
    sd = torch.load(weights)
    sd["model.1.weight"][0, 0, 0, 0] = float("nan")
    broken = weights.with_name("broken_net_G_A.pth")
    torch.save(sd, broken)
    code, err = run(capsys, "translate", "--checkpoint", str(broken), "--input", str(photo), "--output",
                    str(tmp_path / "o"), "--no_progress")
    assert code == 2 and "NaN" in one_line(err) and str(broken) in err and not (tmp_path / "o").exists()
    code, err = run(capsys, "export", "--checkpoint", str(broken), "--format", "torchscript", "--out",
                    str(tmp_path / "b.pt"))
    assert code == 2 and "NaN" in one_line(err) and not (tmp_path / "b.pt").exists()


class _Hostile:
    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file if ever unpickled


def test_untrusted_and_broken_weight_files_get_one_honest_line(capsys, photo, tmp_path):
    marker = tmp_path / "MARKER_code_ran"
    _Hostile.marker = str(marker)
    hostile = tmp_path / "hostile.pth"
    with open(hostile, "wb") as f:
        pickle.dump({"model.1.weight": _Hostile()}, f)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    folder = tmp_path / "folder.pth"
    folder.mkdir()
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights")
    scripted = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Conv2d(3, 3, 1)).save(str(scripted))
    expected = {hostile: "not a plain weights file", empty: "is empty", folder: "is a folder",
                text: "not a PyTorch file", scripted: "TorchScript archive"}
    for path, says in expected.items():
        code, err = run(capsys, "translate", "--checkpoint", str(path), "--input", str(photo), "--output",
                        str(tmp_path / "o"), "--no_progress")
        assert code == 2 and says in one_line(err) and str(path) in err, (path, err)
        assert "weights_only=False" not in err
    assert not marker.exists()
    assert not (tmp_path / "o").exists()


def test_ctrl_c_is_one_line_and_status_130(capsys, weights, photo, tmp_path, monkeypatch):
    import transfigure.translate as translate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(translate, "translate_inputs", interrupted)
    code, err = run(capsys, "translate", "--checkpoint", str(weights), "--input", str(photo), "--output",
                    str(tmp_path / "o"), "--no_progress")
    assert code == 130 and "stopped" in one_line(err) and "run the same command again" in err


@pytest.mark.parametrize("option,value,says", [("--ngf", "8", "--ngf 8 (recorded: 4)"),
                                               ("--netG", "resnet_foo", "--netG resnet_foo"),
                                               ("--input_nc", "1", "--input_nc 1 (recorded: 3)"),
                                               ("--direction", "BtoA", "--direction BtoA")])
def test_options_that_contradict_a_run_are_errors(capsys, weights, photo, tmp_path, option, value, says):
    code, err = run(capsys, "translate", "--checkpoint", str(weights), "--input", str(photo), "--output",
                    str(tmp_path / "o"), "--no_progress", option, value)
    assert code == 2 and says in one_line(err) and not (tmp_path / "o").exists()
    # Options that agree with the record are fine.
    code, err = run(capsys, "translate", "--checkpoint", str(weights), "--input", str(photo), "--output",
                    str(tmp_path / "ok"), "--no_progress", "--ngf", "4")
    assert code == 0, err


@needs_weights
def test_a_published_styles_weights_under_another_name_are_refused(capsys, photo, tmp_path):
    for argv in (["translate", "--pretrained", "shinkai"], ["cartoonize", "--style", "shinkai"]):
        code, err = run(capsys, *argv, "--weights", str(WEIGHTS / "hayao"), "--input", str(photo), "--output",
                        str(tmp_path / "o"), "--no_progress")
        assert code == 2 and "published hayao weights, not shinkai" in one_line(err) and "hayao" in err
    assert not (tmp_path / "o").exists()
    code, err = run(capsys, "cartoonize", "--style", "shinkai", "--weights", str(WEIGHTS / "shinkai"), "--input",
                    str(photo), "--output", str(tmp_path / "right"), "--no_progress")
    assert code == 0, err


def test_multi_page_images_are_not_silently_cut_to_their_first_page(capsys, weights, tmp_path):
    pages = tmp_path / "in" / "scan.tif"
    pages.parent.mkdir()
    first, second = Image.new("RGB", (16, 12), "red"), Image.new("RGB", (16, 12), "blue")
    first.save(pages, save_all=True, append_images=[second])
    code = main(["translate", "--checkpoint", str(weights), "--input", str(pages), "--output", str(tmp_path / "o"),
                 "--no_progress"])
    err = capsys.readouterr().err
    assert code == 1 and "scan.tif: holds 2 pages or frames" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "scan.png").exists()


def test_an_output_that_is_a_file_is_named(capsys, weights, photo, tmp_path):
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    for argv in (["translate", "--checkpoint", str(weights)], ["cartoonize", "--style", "paprika"]):
        code, err = run(capsys, *argv, "--input", str(photo), "--output", str(taken), "--no_progress",
                        *(["--weights", str(weights)] if argv[0] == "cartoonize" else []))
        assert code == 2 and "--output" in one_line(err) and taken.read_text() == "mine", err


def test_an_image_too_large_for_memory_is_refused_before_allocating(capsys, weights, tmp_path, monkeypatch):
    import transfigure.runner as runner

    big = tmp_path / "in" / "big.png"
    big.parent.mkdir()
    Image.new("RGB", (400, 300), (10, 200, 90)).save(big)
    monkeypatch.setattr(runner, "available_memory", lambda device: 2 ** 20)  # a machine with 1 MiB free
    code, err = run(capsys, "translate", "--checkpoint", str(weights), "--input", str(big), "--output",
                    str(tmp_path / "o"), "--no_progress")
    assert code == 2 and "--tile 512" in one_line(err) and "--max_size" in err and "400x300" in err
    code, err = run(capsys, "translate", "--checkpoint", str(weights), "--input", str(big), "--output",
                    str(tmp_path / "o"), "--no_progress", "--tile", "128", "--tile_overlap", "32")
    assert code == 0, err


def test_training_options_and_files_out_of_range_are_named(capsys, tmp_path):
    base = ["train", "--dataroot", str(tmp_path), "--checkpoints_dir", str(tmp_path / "ck"), "--name", "r"]
    for extra, says in ((["--lr", "-1"], "--lr"), (["--preprocess", "none", "--batch_size", "2"], "--preprocess none"),
                        (["--config", str(tmp_path / "bad.yaml")], "not readable YAML")):
        (tmp_path / "bad.yaml").write_text("netG: [unclosed\n  - : :")
        code, err = run(capsys, *base, *extra)
        assert code == 2 and says in one_line(err), err
    assert not (tmp_path / "ck").exists()


def test_a_yaml_file_that_would_run_code_is_refused(capsys, weights, photo, tmp_path):
    marker = tmp_path / "MARKER_yaml_ran"
    hostile = f"netG: !!python/object/apply:os.system ['touch {marker}']\n"
    (tmp_path / "preset.yaml").write_text(hostile)
    code, err = run(capsys, "train", "--dataroot", str(tmp_path), "--checkpoints_dir", str(tmp_path / "ck"),
                    "--config", str(tmp_path / "preset.yaml"))
    assert code == 2 and "preset.yaml" in one_line(err)
    (weights.parent / "options.yaml").write_text(hostile)
    code, err = run(capsys, "translate", "--checkpoint", str(weights), "--input", str(photo), "--output",
                    str(tmp_path / "o"), "--no_progress")
    assert code == 2 and "options.yaml" in one_line(err)
    assert not marker.exists()


def test_a_run_folder_with_a_broken_options_file_is_named(capsys, weights, photo, tmp_path):
    (weights.parent / "options.yaml").write_text("- just\n- a list\n")
    code, err = run(capsys, "translate", "--checkpoint", str(weights), "--input", str(photo), "--output",
                    str(tmp_path / "o"), "--no_progress")
    assert code == 2 and "options.yaml: not a mapping" in one_line(err)


def test_an_output_under_a_file_is_refused_before_any_work(capsys, weights, photo, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run(capsys, "translate", "--checkpoint", str(weights), "--input", str(photo), "--output",
                    str(blocker / "sub" / "out"), "--no_progress")
    assert code == 2 and "is a file" in one_line(err) and blocker.read_text() == "x"


def test_smooth_edges_refuses_an_output_that_is_a_file(capsys, tmp_path):
    src = tmp_path / "cartoons"
    src.mkdir()
    Image.new("RGB", (16, 16), "white").save(src / "c.png")
    taken = tmp_path / "taken"
    taken.write_text("mine")
    code, err = run(capsys, "data", "smooth-edges", "--src", str(src), "--out", str(taken), "--no_progress")
    assert code == 2 and "--out" in one_line(err) and taken.read_text() == "mine"


def test_a_plain_file_takes_the_architecture_options_but_not_a_direction(capsys, weights, photo, tmp_path):
    plain = tmp_path / "plain.pth"
    shutil.copy(weights, plain)  # no options.yaml beside it: the options describe it
    argv = ["translate", "--checkpoint", str(plain), "--input", str(photo), "--no_progress", "--netG",
            "resnet_1blocks", "--ngf", "4"]
    code, err = run(capsys, *argv, "--output", str(tmp_path / "o"))
    assert code == 0, err
    code, err = run(capsys, *argv, "--output", str(tmp_path / "o2"), "--direction", "BtoA")
    assert code == 2 and "--direction BtoA" in one_line(err) and "one generator" in err
    assert not (tmp_path / "o2").exists()


def test_weights_that_overflow_give_an_error_not_black_images(capsys, weights, photo, tmp_path):
    sd = torch.load(weights)
    sd["model.1.weight"].fill_(3e38)  # finite weights, infinite activations
    huge = weights.with_name("huge_net_G_A.pth")
    torch.save(sd, huge)
    code, err = run(capsys, "translate", "--checkpoint", str(huge), "--input", str(photo), "--output",
                    str(tmp_path / "o"), "--no_progress")
    assert code == 2 and "NaN or Inf" in one_line(err)
    assert not list(tmp_path.glob("o/*.png"))
    code, err = run(capsys, "export", "--checkpoint", str(huge), "--format", "torchscript", "--out",
                    str(tmp_path / "h.pt"))
    assert code == 2 and "NaN or Inf" in one_line(err) and not (tmp_path / "h.pt").exists()


@pytest.mark.parametrize("extractor", ["inception", "synthetic-scenes"])
def test_fid_feature_weights_of_another_network_or_no_network_are_named(capsys, tmp_path, extractor):
    for side in "ab":
        (tmp_path / side).mkdir()
        for i in range(2):
            Image.new("RGB", (32, 32), (60 * i, 90, 30)).save(tmp_path / side / f"{i}.png")
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {"x": torch.zeros(3)}, "x": torch.zeros(3)}, other)
    text = tmp_path / "text.pth"
    text.write_text("not weights")
    for path, says in ((other, "another network's"), (text, "not a PyTorch file")):
        code, err = run(capsys, "evaluate", "fid", "--real", str(tmp_path / "a"), "--fake", str(tmp_path / "b"),
                        "--extractor", extractor, "--extractor_weights", str(path), "--no_progress")
        assert code == 2 and says in one_line(err) and str(path) in err, err
    with pytest.raises(SystemExit) as stop:  # argparse: usage, then the error
        main(["evaluate", "fid", "--real", str(tmp_path / "a"), "--fake", str(tmp_path / "b"), "--size", "0", "8"])
    assert stop.value.code == 2 and "argument --size: must be at least 2" in capsys.readouterr().err


def test_an_unreadable_training_image_says_how_to_skip_it(capsys, tmp_path):
    for side in ("trainA", "trainB"):
        (tmp_path / side).mkdir()
        for i in range(8):
            Image.new("RGB", (36, 36), (20 * i, 90, 30)).save(tmp_path / side / f"{i}.png")
    (tmp_path / "trainA" / "zz_broken.jpg").write_bytes(b"not an image")
    base = ["train", "--dataroot", str(tmp_path), "--checkpoints_dir", str(tmp_path / "ck"), "--name", "r", "--netG",
            "resnet_1blocks", "--ngf", "4", "--ndf", "4", "--load_size", "32", "--crop_size", "32", "--n_epochs", "1",
            "--n_epochs_decay", "0", "--no_progress", "--num_threads", "2"]  # read in loader workers
    code, err = run(capsys, *base)
    assert code == 2 and "zz_broken.jpg" in one_line(err) and "--skip_bad_images" in err
    code, err = run(capsys, *base, "--skip_bad_images")
    assert code == 0, err


# ---------------------------------------------------------------- as the user's shell runs it

def transfigure_process(*argv, as_unprivileged_root=False, **popen):
    """The CLI in its own process. As root, `as_unprivileged_root` drops the capabilities
    that let root write anywhere, so a read-only folder is read-only as for any user."""
    prefix = []
    if as_unprivileged_root and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            if os.environ.get("CI") == "true":
                pytest.fail("setpriv (util-linux) is missing: root cannot test read-only folders without it")
            pytest.skip("running as root without setpriv (util-linux): read-only folders cannot be tested")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]
    return subprocess.Popen([*prefix, sys.executable, "-m", "transfigure", *map(str, argv)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def test_read_only_output_folders_are_refused_before_any_work(weights, photo, tmp_path):
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    dataset = tmp_path / "data"
    for side in ("trainA", "trainB"):
        (dataset / side).mkdir(parents=True)
        Image.new("RGB", (24, 24)).save(dataset / side / "0.png")
    commands = {
        "--output": ["translate", "--checkpoint", weights, "--input", photo, "--output", read_only / "o"],
        "--output ": ["cartoonize", "--style", "paprika", "--weights", weights, "--input", photo, "--output",
                      read_only],
        "--out": ["data", "smooth-edges", "--src", photo.parent, "--out", read_only / "smooth"],
        "--checkpoints_dir": ["train", "--dataroot", dataset, "--checkpoints_dir", read_only, "--name", "r"],
        "--out ": ["export", "--checkpoint", weights, "--format", "torchscript", "--out", read_only / "m.pt"],
    }
    try:  # all at once: each is a process that starts Python and PyTorch
        running = {option: transfigure_process(*argv, "--no_progress" if argv[0] != "export" else "--overwrite",
                                               as_unprivileged_root=True) for option, argv in commands.items()}
        for option, proc in running.items():
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 2, (option, err)
            assert err.count("\n") == 1 and option.strip() in err and "no permission to write" in err, err
        assert list(read_only.iterdir()) == []
    finally:
        read_only.chmod(0o755)


def wait_for(condition, timeout=90.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("command", ["smooth-edges", "cartoonize"])
def test_ctrl_c_from_the_terminal_is_one_line_and_a_rerun_finishes(tmp_path, command):
    src = tmp_path / "in"
    src.mkdir()
    count = 40
    noise = np.random.default_rng(0)
    for i in range(count):  # smooth-edges: noisy images, full of edges, take its workers long enough to interrupt
        pixels = noise.integers(0, 256, (256, 256, 3), dtype=np.uint8) if command == "smooth-edges" else \
            np.full((128, 128, 3), (6 * i, 90, 30), np.uint8)
        Image.fromarray(pixels).save(src / f"{i:02d}.png")
    out = tmp_path / "out"
    if command == "smooth-edges":
        argv = ["data", "smooth-edges", "--src", src, "--out", out, "--workers", "2"]
    else:
        from transfigure.nets.cartoongan import CartoonGANGenerator
        torch.save(CartoonGANGenerator().state_dict(), tmp_path / "style.pth")
        argv = ["cartoonize", "--style", "hosoda", "--weights", tmp_path / "style.pth", "--input", src, "--output", out,
                "--load_size", "96"]
    proc = transfigure_process(*argv, "--no_progress", start_new_session=True)
    wait_for(lambda: out.is_dir() and any(out.glob("*.png")) or proc.poll() is not None)
    os.killpg(proc.pid, signal.SIGINT)  # as the terminal does: the whole process group, workers included
    _, err = proc.communicate(timeout=60)
    lines = [line for line in err.splitlines() if "warning" not in line.lower()]
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert len(lines) == 1 and "stopped" in lines[0], err
    done = sorted(p.name for p in out.glob("*.png"))
    assert len(done) < count and not [p for p in out.glob(".*")]  # stopped part-way; no temporary files left
    if command == "cartoonize":
        return  # a rerun skipping finished outputs: test_cartoonize; smooth-edges' workers are tested below
    proc = transfigure_process(*argv, "--no_progress")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert len(list(out.glob("*.png"))) == count
