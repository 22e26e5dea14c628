"""Training visuals, `evaluate run` and `report` on tiny real runs of the
synthetic labels <-> photo task."""
import csv
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from transfigure.cli import main
from transfigure.evaluate.fid import register_feature_network
from transfigure.evaluate.report import write_report
from transfigure.evaluate.run import evaluate_run
from transfigure.evaluate.synthetic_features import train_feature_net

TINY = ["--netG", "resnet_1blocks", "--ngf", "4", "--ndf", "4", "--load_size", "32", "--crop_size", "32",
        "--n_epochs", "2", "--n_epochs_decay", "0", "--num_threads", "0", "--pool_size", "2", "--no_progress",
        "--print_freq", "2"]


class MeanColor(nn.Module):
    def forward(self, x):
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data, ckpts = root / "data", root / "ckpts"
    assert main(["data", "synth", "--out", str(data), "--size", "32", "--n_train", "6", "--n_test", "4"]) == 0
    for name, cycle in (("run_a", "10"), ("run_b", "5")):
        assert main(["train", "--dataroot", str(data), "--name", name, "--checkpoints_dir", str(ckpts),
                     "--lambda_A", cycle, *TINY]) == 0
    network = register_feature_network("test-mean-color", lambda path: MeanColor(), "FID (mean color, test)")
    return root, data, ckpts, network.name


def test_training_writes_loss_log_samples_and_a_page(runs, image_sources):
    _, _, ckpts, _ = runs
    run = ckpts / "run_a"
    records = [json.loads(line) for line in (run / "loss_log.jsonl").read_text().splitlines()]
    assert len(records) == 6 and {"G_A", "D_A", "cycle_A", "total_steps"} <= set(records[0])
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    sources = image_sources((run / "index.html").read_text())
    assert sources[0] == "losses.png" and sources[1:] == ["samples/epoch_002.png", "samples/epoch_001.png"]
    assert all((run / s).is_file() for s in sources)


def test_evaluate_run_measures_both_directions_and_reuses_translations(runs):
    root, data, ckpts, extractor = runs
    results = root / "results"
    metrics = evaluate_run("run_a", ckpts, results, extractor=extractor, progress=False)
    stored = json.loads((results / "run_a" / "metrics.json").read_text())
    assert stored["directions"].keys() == {"AtoB", "BtoA"} and stored["fid_label"] == "FID (mean color, test)"
    for d in ("AtoB", "BtoA"):
        m = stored["directions"][d]
        assert m["images"] == 4 and m["fid_target"] >= 0 and m["fid_source"] >= 0 and "kid_target" in m
        assert 0 < m["ssim"] <= 1 and m["psnr"] > 0          # the synthetic test split has pairs
    # photo -> labels (BtoA: A holds the labels) is scored as segmentation; labels -> photo needs a segmenter.
    assert 0 <= stored["directions"]["BtoA"]["mean_iou"] <= 1 and "mean_iou" not in stored["directions"]["AtoB"]
    assert "segmenter" in stored["missing"]["AtoB segmentation"]
    assert metrics["directions"]["AtoB"]["fid_target"] == stored["directions"]["AtoB"]["fid_target"]

    images = results / "run_a" / "test_latest" / "AtoB" / "images"
    stamps = {p: p.stat().st_mtime_ns for p in images.iterdir()}
    evaluate_run("run_a", ckpts, results, extractor=extractor, progress=False)
    assert {p: p.stat().st_mtime_ns for p in images.iterdir()} == stamps          # checkpoint unchanged: reused
    latest = ckpts / "run_a" / "latest.ckpt"
    os.utime(latest, ns=(latest.stat().st_atime_ns, latest.stat().st_mtime_ns + 10**9))
    evaluate_run("run_a", ckpts, results, extractor=extractor, progress=False)
    assert all(p.stat().st_mtime_ns != stamps[p] for p in images.iterdir())       # changed: translated again


def test_evaluate_run_scores_each_direction_against_the_right_folders(runs):
    """Recomputed from the files: AtoB's translations of testA against testB (target) and
    testA (source), BtoA's the other way; PSNR by hand against the same-named target image;
    BtoA's label maps against testA's."""
    from PIL import Image

    from transfigure.evaluate.fid import FolderFeatures, distances
    from transfigure.evaluate.segmentation import score_label_folders
    from transfigure.data.synthetic import load_palette

    root, data, ckpts, extractor = runs
    results = root / "results_folders"
    stored = evaluate_run("run_b", ckpts, results, extractor=extractor, progress=False)["directions"]
    features = FolderFeatures(extractor)
    for d, source, target in (("AtoB", data / "testA", data / "testB"), ("BtoA", data / "testB", data / "testA")):
        images = results / "run_b" / "test_latest" / d / "images"
        assert sorted(p.name for p in images.iterdir()) == sorted(p.with_suffix(".png").name
                                                                for p in source.iterdir())
        fake = features(images)
        assert stored[d]["fid_target"] == pytest.approx(distances(features(target), fake)["fid"], rel=1e-6)
        assert stored[d]["fid_source"] == pytest.approx(distances(features(source), fake)["fid"], rel=1e-6)
        assert stored[d]["fid_target"] != pytest.approx(stored[d]["fid_source"], rel=1e-3)  # the two differ here
        psnrs = []
        for f in sorted(images.iterdir()):
            a = np.asarray(Image.open(f).convert("RGB"), np.float64)
            b = np.asarray(Image.open(target / f.name).convert("RGB"), np.float64)
            psnrs.append(10 * np.log10(255 ** 2 / np.mean((a - b) ** 2)))
        assert stored[d]["psnr"] == pytest.approx(np.mean(psnrs), rel=1e-6)
    _, colors = load_palette(data)
    assert stored["BtoA"]["mean_iou"] == pytest.approx(
        score_label_folders(results / "run_b" / "test_latest" / "BtoA" / "images", data / "testA", colors)["mean_iou"])


def test_evaluate_run_cli_with_the_synthetic_scene_features(runs, capsys):
    root, data, ckpts, _ = runs
    weights = train_feature_net(root / "features.pt", size=32, scenes=32, steps=10, batch_size=8, progress=False)
    assert main(["evaluate", "run", "--name", "run_b", "--checkpoints_dir", str(ckpts), "--results_dir",
                 str(root / "results"), "--extractor", "synthetic-scenes", "--extractor_weights", str(weights),
                 "--no_progress"]) == 0
    out = capsys.readouterr().out
    assert "synthetic-scene features, not Inception" in out and "metrics.json" in out
    assert main(["evaluate", "run", "--name", "nope", "--checkpoints_dir", str(ckpts)]) == 2
    assert "no run here" in capsys.readouterr().err


def test_report_compares_runs_with_grids_plots_and_reasons(runs, image_sources, capsys):
    root, data, ckpts, extractor = runs
    results = root / "results"
    for name in ("run_a", "run_b"):
        evaluate_run(name, ckpts, results, extractor=extractor, progress=False)
    assert main(["train", "--dataroot", str(data), "--name", "run_c", "--checkpoints_dir", str(ckpts), *TINY]) == 0
    out = root / "report"
    assert main(["report", "--runs", "run_a", "run_b", "run_c", "--out", str(out), "--checkpoints_dir", str(ckpts),
                 "--results_dir", str(results)]) == 0
    page = (out / "index.html").read_text()
    sources = image_sources(page)
    assert sorted(sources) == sorted(["grid_AtoB.png", "grid_BtoA.png", "losses_run_a.png", "losses_run_b.png",
                                      "losses_run_c.png"])
    assert all((out / s).is_file() for s in sources)
    table = (out / "table.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| run_")}
    assert rows.keys() == {"run_a", "run_b", "run_c"}
    assert "**" in rows["run_a"] + rows["run_b"] and "— [" in rows["run_c"]
    assert "not evaluated: run `transfigure evaluate run --name run_c`" in table
    assert "<td>lambda_A</td>" in page and "<b>" in page              # differing settings, best values marked
    with open(out / "table.csv") as f:
        records = {r["run"]: r for r in csv.DictReader(f)}
    assert float(records["run_a"]["AtoB_fid_target"]) >= 0 and records["run_c"]["AtoB_fid_target"] == ""
    # A folder that is not a report is never written into.
    foreign = root / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        write_report(["run_a"], foreign, ckpts, results)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_tensorboard_logs(tmp_path):
    import tensorboard  # noqa: F401  (in the test extra, so this test always runs)
    data = tmp_path / "data"
    assert main(["data", "synth", "--out", str(data), "--size", "32", "--n_train", "4", "--n_test", "2"]) == 0
    assert main(["train", "--dataroot", str(data), "--name", "tb", "--checkpoints_dir", str(tmp_path / "c"),
                 *TINY]) == 0
    events = list((tmp_path / "c" / "tb" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
