"""`transfigure benchmark speed` end to end at toy sizes: every mode in its own process,
the table and JSON it writes (no timing is asserted: machines are shared and noisy)."""
import json

import pytest
import torch

from shared_data import WEIGHTS, needs_weights
from transfigure.benchmarks.speed import default_modes, TRAIN_MODES, TRANSLATE_MODES
from transfigure.cli import main


def test_default_modes_skip_what_this_hardware_only_emulates(monkeypatch):
    from transfigure.benchmarks import speed

    cpu = torch.device("cpu")
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx2"}))
    assert default_modes(cpu, TRANSLATE_MODES) == ["torch fp32", "torch fp32 channels_last", "onnxruntime fp32",
                                                   "openvino fp32", "auto"]
    assert "torch bf16" not in default_modes(cpu, TRAIN_MODES) and "torch fp16" not in default_modes(cpu, TRAIN_MODES)
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert {"torch bf16", "openvino bf16"} <= set(default_modes(cpu, TRANSLATE_MODES))


@needs_weights
@pytest.mark.slow
def test_speed_benchmark_writes_a_table_with_every_mode(tmp_path, capsys):
    out = tmp_path / "speed"
    assert main(["benchmark", "speed", "--out", str(out), "--size", "32", "--train_modes", "torch fp32",
                 # shinkai: its ONNX conversion is cached for the session, shared with test_pretrained's.
                 "--translate_modes", "torch fp32", "auto", "--style", "shinkai",
                 "--weights", str(WEIGHTS / "shinkai"),
                 "--translate_size", "64x48", "--warmup", "0", "--steps", "1", "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["train"]) == {"torch fp32"} and results["machine"]["device"]
    assert set(results["translate"]) == {"torch fp32", "auto"}
    assert results["translate"]["torch fp32"]["speedup"] == 1.0
    # auto: a converted engine (fp32 on CPUs without native bf16: >100 dB; bf16 where native: ~60 dB)
    assert results["translate"]["auto"]["psnr_db"] > 40
    assert all(r["seconds"] > 0 and r["peak_rss_bytes"] > 2 ** 20 for part in ("train", "translate")
               for r in results[part].values())
    table = (out / "table.md").read_text()
    assert table.count("\n| ") == 1 + 1 + 2 and "auto (" in table and "flags:" in table
