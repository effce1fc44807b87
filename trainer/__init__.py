"""mutask trainer: the µ2Net engine, ViT models, data, storage and the `mutask` CLI."""
