"""History of generated images shown to the discriminator (Shrivastava et al.).

Keeps up to `size` past fakes; each query returns, per image, either the new
image or (half the time, once the pool is full) a stored one that it then
replaces. Its random choices use its own generator, saved in checkpoints, so
a resumed run draws the same sequence as one that never stopped.
"""
from __future__ import annotations

import random

import torch


class ImagePool:
    def __init__(self, size: int, seed: int = 0):
        self.size = size
        self.images: list[torch.Tensor] = []
        self.rng = random.Random(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach().float():  # kept in fp32 whatever the precision that made them
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif self.rng.random() > 0.5:
                index = self.rng.randint(0, self.size - 1)
                out.append(self.images[index].clone())
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        return {"size": self.size, "images": [t.cpu() for t in self.images], "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.size = state["size"]
        self.images = [t.to(device) for t in state["images"]]
        rng_state = state["rng"]
        # weights_only loading turns the state's inner tuple into a list.
        self.rng.setstate((rng_state[0], tuple(rng_state[1]), rng_state[2]))
