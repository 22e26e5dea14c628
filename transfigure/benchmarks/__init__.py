"""`transfigure benchmark ...`: the papers' comparisons reproduced on built-in
synthetic tasks (ablation: the CycleGAN paper's table; cartoon: CartoonGAN,
its improved variant and CycleGAN)."""
