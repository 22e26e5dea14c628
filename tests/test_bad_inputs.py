"""Bad inputs through the real command line: one clear line naming the file or option,
exit status 2 (130 for Ctrl-C), nothing of the user's overwritten, no code run from a
hostile file. (Issue 15; the cases handled so far.)"""
import os
import pickle

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
    (path.parent / "options.yaml").write_text("netG: resnet_1blocks\nngf: 4\n")
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
