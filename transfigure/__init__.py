"""transfigure: image-to-image translation with GANs (CycleGAN, pix2pix, CartoonGAN).

    import transfigure
    t = transfigure.load("shinkai")      # a published model, a run name or a weights file
    cartoon = t(pil_image)
"""
__version__ = "0.1.0"


def load(*args, **kwargs):
    """A callable translator; see `transfigure.api.load`."""
    from .api import load as _load
    return _load(*args, **kwargs)
