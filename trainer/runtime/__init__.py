"""The trainer pod's runtime: device selection, metrics, signals and status reporting."""
