"""The one device resolver every command and the API use."""
import pytest
import torch

from transfigure.devices import resolve_device


def test_device_requests():
    auto = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    assert resolve_device() == resolve_device(None) == resolve_device("auto") == torch.device(auto.type)
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("cuda", gpu_ids="-1") == torch.device("cpu")  # the official flag wins
    with pytest.raises(ValueError, match="--device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        for request in ("cuda", "cuda:1"):
            with pytest.raises(RuntimeError, match="no CUDA device"):
                resolve_device(request)
        with pytest.raises(RuntimeError, match="gpu_ids"):
            resolve_device("auto", gpu_ids="0")


AVX2_ONLY = frozenset({"sse4_2", "avx", "avx2", "fma"})
AVX512_BF16 = AVX2_ONLY | {"avx512f", "avx512_bf16"}


def test_auto_precision_follows_the_hardware_it_is_told_of():
    from transfigure.devices import choose_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose_precision("auto", cpu, AVX2_ONLY).name == "fp32"
    assert "no avx512_bf16" in choose_precision("auto", cpu, AVX2_ONLY).reason
    assert choose_precision("auto", cpu, AVX512_BF16).name == "bf16"
    assert choose_precision("auto", cpu, AVX2_ONLY | {"amx_bf16"}).name == "bf16"
    assert choose_precision("auto", cuda, cuda_bf16=True).name == "bf16"
    assert choose_precision("auto", cuda, cuda_bf16=False).name == "fp32"
    # Asked-for modes are honoured; the slow ones say so.
    emulated = choose_precision("bf16", cpu, AVX2_ONLY)
    assert emulated.name == "bf16" and "slower" in emulated.warning and "Warning" in emulated.describe()
    assert not choose_precision("bf16", cpu, AVX512_BF16).warning
    assert choose_precision("fp16", cpu, AVX512_BF16).warning
    assert choose_precision("fp32", cpu, AVX512_BF16).name == "fp32"
    assert not choose_precision("fp16", cuda, cuda_bf16=False).warning
    with pytest.raises(ValueError, match="--precision 'fp8'"):
        choose_precision("fp8", cpu, AVX2_ONLY)


def test_this_machines_flags_are_read():
    from transfigure.devices import cpu_flags

    flags = cpu_flags()
    assert isinstance(flags, frozenset)
    if torch.cpu._is_avx2_supported():
        assert "avx2" in flags
