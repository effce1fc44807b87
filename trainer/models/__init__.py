"""The µ2Net ViT in torch: shared component modules, path models and checkpoint I/O.

``vit`` builds one module per component kind from a :class:`ViTShape` and assembles paths
(:class:`PathModel`) out of references to them; ``checkpoints`` loads root weights (timm or
Google layout) and exports a path as a standalone safetensors file.
"""

from mutask.trainer.models.checkpoints import (
    export_state_dict,
    exported_metadata,
    load_exported,
    load_root_weights,
    save_exported,
    timm_key,
)
from mutask.trainer.models.errors import CheckpointError
from mutask.trainer.models.vit import (
    STEM_LENGTH,
    ClassToken,
    Component,
    EncoderBlock,
    EncoderNorm,
    Head,
    PatchEmbedding,
    PathModel,
    PositionEmbedding,
    ResidualAdapter,
    build_component,
    get_shape,
    list_presets,
    register_preset,
)

__all__ = [
    "STEM_LENGTH",
    "CheckpointError",
    "ClassToken",
    "Component",
    "EncoderBlock",
    "EncoderNorm",
    "Head",
    "PatchEmbedding",
    "PathModel",
    "PositionEmbedding",
    "ResidualAdapter",
    "build_component",
    "export_state_dict",
    "exported_metadata",
    "get_shape",
    "list_presets",
    "load_exported",
    "load_root_weights",
    "register_preset",
    "save_exported",
    "timm_key",
]
