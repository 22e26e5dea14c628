"""The ablation benchmark end to end at a tiny setting, its reuse of finished
runs, and the segmenters of `evaluate segmentation --photos`."""
import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from transfigure.benchmarks.ablation import MIN_ITERATIONS, methods, run_ablation
from transfigure.benchmarks.runs import decide_iterations, mean_spread
from transfigure.cli import main
from transfigure.data.synthetic import PALETTE

TINY = ["--set", "netG=resnet_1blocks", "--set", "ngf=4", "--set", "ndf=4", "--set", "pool_size=2", "--set", "netF_nc=16",
        "--set", "num_patches=32"]
LABELS = [m.label for m in methods()] + ["untrained generator (floor)", "identity mapping (floor)",
                                          "real photos (segmenter's ceiling)"]


def _bench_args(out: Path, missing_weights: Path) -> list[str]:
    return ["benchmark", "ablation", "--task", "labels2photo", "--out", str(out), "--size", "32", "--n_train", "8",
            "--n_test", "3", "--iterations", "4", "--seeds", "1", "--feature_weights", str(missing_weights),
            "--no_progress", *TINY]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    out, missing = root / "ablation", root / "no_such_vgg16.pth"
    assert main(_bench_args(out, missing)) == 0
    return out, missing


def test_benchmark_writes_tables_page_and_grids(bench, image_sources):
    out, _ = bench
    table = (out / "table.md").read_text()
    for label in LABELS:
        assert f"| {label}" in table, label
    assert "Cityscapes" in table and "0.58 / 0.22 / 0.16" in table and "0.71 / 0.25 / 0.18" in table
    # Every method row has numbers except the feature baseline, whose weights are missing.
    for line in table.splitlines():
        if line.startswith("| ") and "±" not in line and "---" not in line and line.count("|") > 9:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0].startswith("feature loss + GAN"):
                assert cells[1:7] == ["—"] * 6
            elif cells[0] not in ("method", "real photos (segmenter's ceiling)"):
                assert all(c != "—" for c in cells[1:7]), line

    with open(out / "table.csv") as f:
        rows = list(csv.DictReader(f))
    keys = {r["method"] for r in rows}
    assert {m.key for m in methods()} | {"untrained", "identity", "real"} <= keys
    seed0 = {r["method"]: r for r in rows if r["seed"] == "0"}
    for key in ("pix2pix", "cyclegan", "gan_alone", "cycle_alone", "identity"):
        assert 0 <= float(seed0[key]["p2l_mean_iou"]) <= 1
        assert 0 <= float(seed0[key]["l2p_pixel_acc"]) <= 1

    page = (out / "index.html").read_text()
    sources = image_sources(page)
    assert len(sources) == len(methods()) - 1  # every trained method has a grid
    for src in sources:
        assert (out / src).is_file(), src
        assert Image.open(out / src).size[0] > 0
    for label in LABELS:
        assert label.replace("'", "&#x27;") in page, label

    record = json.loads((out / "benchmark.json").read_text())
    assert record["iterations"] == 4
    state = torch.load(out / "checkpoints" / "cyclegan_seed0" / "latest.ckpt", weights_only=True)
    assert state["total_steps"] == 4 and state["options"]["lambda_identity"] == 0
    assert torch.load(out / "checkpoints" / "gan_alone_seed0" / "latest.ckpt",
                      weights_only=True)["options"]["lambda_A"] == 0
    # CUT and FastCUT: one run per direction, on the shared (plain strided) networks.
    for stem, mode in (("cut", "CUT"), ("fastcut", "FastCUT")):
        for direction in ("AtoB", "BtoA"):
            options = torch.load(out / "checkpoints" / f"{stem}_{direction}_seed0" / "latest.ckpt",
                                 weights_only=True)["options"]
            assert (options["model"], options["CUT_mode"], options["direction"]) == ("cut", mode, direction)
            assert options["no_antialias"] is True and options["nce_layers"] == "0,4,7,10,12"


def test_every_method_has_its_time_per_iteration_and_peak_memory(bench):
    out, _ = bench
    record = json.loads((out / "benchmark.json").read_text())
    costs = record["cost"]["methods"]
    assert set(costs) == {m.key for m in methods()}
    assert "no such file" in costs["feature_gan"]["error"]
    for key in ("cyclegan", "cut", "fastcut", "pix2pix", "gan_alone"):
        assert costs[key]["s_per_iter"] > 0 and costs[key]["peak_mib"] >= 0
    table = (out / "table.md").read_text()
    assert "| s / iteration (× CycleGAN) | peak memory, MiB |" in table
    row = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()
           if line.startswith("| ") and line.count("|") > 9}
    assert row["CycleGAN"][7].endswith("(1.00×)")
    for label in ("CUT", "FastCUT"):
        seconds = costs[label.lower()]["s_per_iter"]
        assert row[label][7] == f"{seconds:.3f} ({seconds / costs['cyclegan']['s_per_iter']:.2f}×)"
    assert "all methods measured together, the time in one fresh process and the memory in another" in table
    with open(out / "table.csv") as f:
        cut = [r for r in csv.DictReader(f) if r["method"] == "cut" and r["seed"] == "0"]
    assert float(cut[0]["seconds_per_iteration"]) == pytest.approx(costs["cut"]["s_per_iter"], abs=1e-4)


def test_feature_variant_shows_the_reason(bench):
    out, missing = bench
    table = (out / "table.md").read_text()
    assert "feature loss + GAN [1]" in table
    assert f"[1] not run: --feature_weights {missing}: no such file" in table
    with open(out / "table.csv") as f:
        feature = [r for r in csv.DictReader(f) if r["method"] == "feature_gan"]
    assert feature and all("no such file" in r["note"] and r["p2l_mean_iou"] == "" for r in feature)
    assert not (out / "checkpoints" / "feature_gan_seed0").exists()


def test_rerun_reuses_finished_runs(bench, capsys):
    out, missing = bench
    ckpts = sorted((out / "checkpoints").rglob("*"))
    before = {p: p.stat().st_mtime_ns for p in ckpts if p.is_file()}
    assert main(_bench_args(out, missing)) == 0
    said = capsys.readouterr().out
    assert "reusing the finished run" in said and "Measuring each method" not in said  # costs: the first run's
    after = {p: p.stat().st_mtime_ns for p in sorted((out / "checkpoints").rglob("*")) if p.is_file()}
    assert after == before


def test_benchmark_refuses_other_settings_and_foreign_folders(bench, tmp_path):
    out, missing = bench
    args = _bench_args(out, missing)
    args[args.index("--n_test") + 1] = "4"
    assert main(args) == 2  # another dataset in the same folder: refused, nothing changed
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        run_ablation(foreign, iterations=4, seeds=1, size=32, n_train=8, n_test=3, progress=False)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_run_name_segmenter_through_the_cli(bench, capsys, tmp_path):
    out, _ = bench
    data = out / "data"
    labels = tmp_path / "labels"
    assert main(["evaluate", "segmentation", "--photos", str(data / "testB"), "--gt", str(data / "testA"),
                 "--palette", str(data), "--segmenter", "pix2pix_BtoA_seed0", "--checkpoints_dir",
                 str(out / "checkpoints"), "--save_labels", str(labels)]) == 0
    printed = capsys.readouterr().out
    assert "pixel acc" in printed and "mean IoU" in printed
    assert sorted(p.name for p in labels.iterdir()) == sorted(p.name for p in (data / "testA").iterdir())


class _NearestPaletteLogits(torch.nn.Module):
    """A 'perfect' segmenter for label images: logits = minus the distance to each palette color."""

    def __init__(self):
        super().__init__()
        self.register_buffer("palette", torch.tensor(PALETTE, dtype=torch.float32) / 127.5 - 1)

    def forward(self, x):
        d = ((x[:, None] - self.palette[None, :, :, None, None]) ** 2).sum(2)
        return -d


class _Invert(torch.nn.Module):
    def forward(self, x):
        return -x


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_segmenters(tiny_dataset, tmp_path, capsys):
    data = tiny_dataset
    logits = tmp_path / "logits.pt"
    torch.jit.script(_NearestPaletteLogits()).save(str(logits))
    image = tmp_path / "image.pt"
    torch.jit.script(torch.nn.Identity()).save(str(image))
    inverted = tmp_path / "invert.pt"
    torch.jit.script(_Invert()).save(str(inverted))
    common = ["evaluate", "segmentation", "--photos", str(data / "testA"), "--gt", str(data / "testA"),
              "--palette", str(data)]
    # Label maps read by a segmenter that knows the palette: perfect scores, from logits and from label images.
    for model in (logits, image):
        assert main([*common, "--segmenter", str(model)]) == 0
        assert "pixel acc 1.000  class acc 1.000  mean IoU 1.000" in capsys.readouterr().out
    # A wrong segmenter scores badly; the temporary label folder is gone afterwards.
    assert main([*common, "--segmenter", str(inverted)]) == 0
    assert "pixel acc 1.000" not in capsys.readouterr().out
    # Not a TorchScript file, not a run: a clear error.
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a model")
    assert main([*common, "--segmenter", str(bogus)]) == 2
    assert "TorchScript" in capsys.readouterr().err
    assert main([*common, "--segmenter", "no_such_run", "--checkpoints_dir", str(tmp_path)]) == 2
    assert "neither a TorchScript file nor a run" in capsys.readouterr().err
    # The --pred mode is unchanged.
    assert main(["evaluate", "segmentation", "--pred", str(data / "testA"), "--gt", str(data / "testA"),
                 "--palette", str(data)]) == 0
    assert "mean IoU 1.000" in capsys.readouterr().out


def test_fixed_iteration_count_unless_a_budget_is_given(tmp_path):
    from transfigure.benchmarks.runs import open_folder, settle_iterations

    def measure():
        raise AssertionError("the default count must not depend on this machine's speed")

    record = open_folder(tmp_path / "a", {"x": 1})
    assert settle_iterations(tmp_path / "a", record, None, None, 2, MIN_ITERATIONS, measure, 1000) == 1000
    record = open_folder(tmp_path / "b", {"x": 1})
    assert settle_iterations(tmp_path / "b", record, None, 900, 2, MIN_ITERATIONS, lambda: {"a": 0.1, "b": 0.2},
                             1000) == 1500
    assert open_folder(tmp_path / "b", {"x": 1})["iterations"] == 1500  # kept for the rerun


def test_iteration_count_and_spread():
    assert decide_iterations(900, {"a": 0.1, "b": 0.2}, 2, MIN_ITERATIONS) == 1500
    assert decide_iterations(1, {"a": 0.1}, 2, MIN_ITERATIONS) == 200         # never below the minimum
    mean, spread = mean_spread([0.5, 0.7])
    assert mean == pytest.approx(0.6) and spread == pytest.approx(0.1)
    assert mean_spread([]) is None


def test_interrupted_run_resumes(tmp_path, capsys):
    """A run left part-way (as after Ctrl-C) continues from its checkpoint on the next invocation."""
    from transfigure.benchmarks.ablation import SHARED, UNPAIRED
    from transfigure.benchmarks.runs import run_options
    from transfigure.train import train

    out = tmp_path / "ablation"
    tiny = {"netG": "resnet_1blocks", "ngf": 4, "ndf": 4, "pool_size": 2}
    common = dict(iterations=4, seeds=1, size=32, n_train=8, n_test=3, overrides=tiny, only=["cyclegan"],
                  progress=False)
    # A finished benchmark whose CycleGAN run is then replaced by one left at 2 of 4 iterations.
    run_ablation(out, **common)
    ckpt_dir = out / "checkpoints" / "cyclegan_seed0"
    state = torch.load(ckpt_dir / "latest.ckpt", weights_only=True)
    assert state["total_steps"] == 4
    partial = run_options(SHARED, UNPAIRED, "cyclegan_seed0", 0, out, 32, 2, tiny, n_train=8)
    partial = type(partial)(**{**partial.__dict__, "checkpoints_dir": str(tmp_path / "other")})
    assert train(partial, progress=False).total_steps == 2
    shutil.rmtree(ckpt_dir)                           # swap in the half-trained run
    (tmp_path / "other" / "cyclegan_seed0").rename(ckpt_dir)
    capsys.readouterr()
    result = run_ablation(out, **common)
    printed = capsys.readouterr().out
    assert result.complete and "Resuming" in printed
    assert torch.load(ckpt_dir / "latest.ckpt", weights_only=True)["total_steps"] == 4
    assert [r.key for r in result.rows][:2] == ["pix2pix", "cyclegan"]


def test_costs_only_measures_without_training(tmp_path, capsys):
    out = tmp_path / "costs"
    assert main(["benchmark", "ablation", "--out", str(out), "--size", "32", "--n_train", "4", "--n_test", "2",
                 "--costs_only", "--only", "cyclegan", "fastcut", "--no_progress", *TINY]) == 0
    text = (out / "costs.md").read_text()
    costs = json.loads((out / "benchmark.json").read_text())["cost"]["methods"]
    assert set(costs) == {"pix2pix", "cyclegan", "fastcut"}
    assert "| CycleGAN | " in text and "(1.00×)" in text
    assert f"| FastCUT | {costs['fastcut']['s_per_iter']:.3f} " in text
    assert not (out / "checkpoints").exists() and not (out / "table.md").exists()
