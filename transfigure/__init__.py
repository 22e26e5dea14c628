"""transfigure: image-to-image translation with GANs (CycleGAN, pix2pix, CartoonGAN)."""
__version__ = "0.1.0"
