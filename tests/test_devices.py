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
