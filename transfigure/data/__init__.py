"""Image loading, preprocessing and folder datasets: import the module you need
(`data.images`, `data.datasets`, ...). Nothing is re-exported here, so a process that only
reads images (smooth-edges' workers) does not import PyTorch."""
