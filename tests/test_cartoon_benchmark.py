"""`transfigure benchmark cartoon` end to end at a tiny setting: every method
trains through the real loop, the table, CSV, page and grid are written, a
rerun reuses the finished runs, and other settings are refused."""
import csv
from pathlib import Path

import pytest
import torch

from transfigure.benchmarks.cartoon import METRICS, methods
from transfigure.cli import main

TINY = ["--set", "ngf=4", "--set", "ndf=4", "--set", "pool_size=2", "--set", "batch_size=2"]


def _args(out: Path) -> list[str]:
    return ["benchmark", "cartoon", "--out", str(out), "--size", "32", "--n_train", "8", "--n_test", "4",
            "--iterations", "8", "--content_weights", "synthetic", "--content_steps", "20", "--feature_steps", "20",
            "--no_progress", *TINY]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("cartoon") / "bench"
    assert main(_args(out)) == 0
    return out


def test_writes_table_csv_page_and_grid(bench, image_sources):
    table = (bench / "table.md").read_text()
    untrained = ["untrained generator (CartoonGAN)", "untrained generator (improved CartoonGAN)",
                 "untrained generator (CycleGAN, CycleGAN + init phase, CycleGAN + edge smoothing)"]
    labels = [m.label for m in methods()] + untrained + ["test photos unchanged (floor)",
                                                          "ground-truth cartoons (ceiling)"]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] in labels:
            rows[cells[0]] = cells
    assert sorted(rows) == sorted(labels)
    for label, cells in rows.items():
        assert all(c != "—" for c in cells[1:1 + len(METRICS)]), label   # every metric measured
    truth = rows["ground-truth cartoons (ceiling)"]
    assert truth[1] == "1.000" and truth[2] == "0.00"                     # the ground truth against itself
    assert "not Inception" in table and "trained here to label synthetic scenes" in table
    assert "8 iterations per run" in table
    assert "100.30" in rows["CartoonGAN"][-1]                              # the study's figures, for reference

    with open(bench / "table.csv") as f:
        records = {r["method"]: r for r in csv.DictReader(f)}
    assert {m.key for m in methods()} <= set(records)
    for m in methods():
        assert 0 <= float(records[m.key]["edge_f1"]) <= 1 and float(records[m.key]["color_error"]) >= 0
        assert float(records[m.key]["train_seconds"]) > 0

    sources = image_sources((bench / "index.html").read_text())
    assert sources == ["grid.png"] and (bench / "grid.png").is_file()
    # Every run trained all its iterations, on the offline content network, CartoonGAN's with the
    # edge-smoothed cartoons made up front.
    for m in methods():
        state = torch.load(bench / "checkpoints" / f"{m.key}_seed0" / "latest.ckpt", weights_only=True)
        assert state["total_steps"] == 8, m.key
        assert state["options"]["content_net"] == "synthetic-scenes:features"
        assert state["options"]["content_weights"] == str(bench / "content_net.pt")

    assert len(list((bench / "data" / "trainB_smooth").iterdir())) == 8


def test_rerun_reuses_runs_and_refuses_other_settings(bench, capsys, tmp_path):
    files = {p: p.stat().st_mtime_ns for p in (bench / "checkpoints").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(_args(bench)) == 0
    assert capsys.readouterr().out.count("reusing the finished run") == len(methods())
    assert {p: p.stat().st_mtime_ns for p in (bench / "checkpoints").rglob("*") if p.is_file()} == files
    other = _args(bench)
    other[other.index("--n_test") + 1] = "5"
    assert main(other) == 2
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(_args(foreign)) == 2
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
