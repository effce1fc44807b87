"""One task iteration end to end, around the pure µ2Net core: the engine's orchestration
(:mod:`.engine`), the component pool, task data, each generation's training, resume,
publish and manifests, the root's bootstrap and the no-forgetting check."""
