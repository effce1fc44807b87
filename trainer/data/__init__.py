"""Task data for mutask: sources, TFDS-style splits, derived tasks and torch batch pipelines.

``load_task(task, cfg)`` gives a task's uint8 train/validation/test splits; ``prepare``
turns a split into normalised tensors once; ``BatchStream`` (+ ``Augmenter``) feeds
training, ``eval_batches`` evaluation. Every bad input raises ``DatasetError``.
"""

from mutask.trainer.data.arrays import ImageSplit, Source
from mutask.trainer.data.augment import DS_KEYS, Augmenter
from mutask.trainer.data.builtin import BUILTIN_SOURCES
from mutask.trainer.data.errors import DatasetError
from mutask.trainer.data.sources import SourceCache, load_source
from mutask.trainer.data.splits import SplitSlice, parse_split, resolve_split, select_split
from mutask.trainer.data.stream import BatchStream
from mutask.trainer.data.tasks import TRANSFORMS, TaskData, load_task
from mutask.trainer.data.tensors import eval_batches, prepare

__all__ = [
    "BUILTIN_SOURCES",
    "DS_KEYS",
    "TRANSFORMS",
    "Augmenter",
    "BatchStream",
    "DatasetError",
    "ImageSplit",
    "Source",
    "SourceCache",
    "SplitSlice",
    "TaskData",
    "eval_batches",
    "load_source",
    "load_task",
    "parse_split",
    "prepare",
    "resolve_split",
    "select_split",
]
