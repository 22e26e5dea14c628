"""CUT's projection head H (`netF mlp_sample`): sample the same patch locations
from a generator's feature maps of the input and of the output, pass each
layer's samples through its own two-layer MLP, and L2-normalise them.

The authors create the MLPs lazily on the first batch, when the feature
channels become known; here the channels are given up front (the generator
knows them from its architecture), so the head exists, is initialised and
has optimizer state from the start, and checkpoints and exact resume work as
for every other net. Its state dict keys are the authors' (`mlp_<i>.0.weight`,
`mlp_<i>.2.weight`, ...).
"""
from __future__ import annotations

import torch
from torch import nn


def l2_normalize(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """x / (||x||_2 + eps) over dim 1, the authors' `Normalize(2)`. Their sqrt of the sum
    of squares has an infinite gradient at an all-zero sample (every ReLU of a small
    head dead, zero biases at init), which made NaN; vector_norm's gradient there is 0."""
    return x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + eps)


class PatchSampleF(nn.Module):
    def __init__(self, in_channels: list[int], nc: int = 256, use_mlp: bool = True):
        super().__init__()
        self.n_layers, self.use_mlp = len(in_channels), use_mlp
        if use_mlp:
            for i, channels in enumerate(in_channels):
                setattr(self, f"mlp_{i}", nn.Sequential(nn.Linear(channels, nc), nn.ReLU(), nn.Linear(nc, nc)))

    def forward(self, feats: list[torch.Tensor], num_patches: int, patch_ids: list[torch.Tensor] | None = None,
                generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per layer: (batch x patches, channels) normalised samples, and the patch
        locations used. Without `patch_ids`, each layer draws min(num_patches, H x W)
        distinct locations from `generator` (the same locations for every image of the
        batch, as the authors)."""
        if len(feats) != self.n_layers:
            raise ValueError(f"the projection head has {self.n_layers} layers, got {len(feats)} feature maps")
        samples, ids = [], []
        for i, feat in enumerate(feats):
            flat = feat.permute(0, 2, 3, 1).flatten(1, 2)  # B x (H W) x C
            if patch_ids is not None:
                chosen = patch_ids[i]
            else:
                chosen = torch.randperm(flat.shape[1], generator=generator)[:num_patches].to(feat.device)
            x = flat[:, chosen, :].flatten(0, 1)
            if self.use_mlp:
                x = getattr(self, f"mlp_{i}")(x)
            samples.append(l2_normalize(x))
            ids.append(chosen)
        return samples, ids
