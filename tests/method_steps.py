"""Driving a method one iteration at a time, through the training loop's own `optimize`."""
from transfigure.train import optimize


def train_step(method, batch, optimizers) -> dict[str, float]:
    """One iteration; the losses of every optimizer in one dict."""
    return {k: v for phase in optimize(method, batch, optimizers).values() for k, v in phase.items()}
