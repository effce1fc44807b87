"""Task data for mutask: sources, TFDS-style splits, derived tasks and the input pipeline.

``load_task(task, cfg)`` gives a task's train/validation/test splits as lazy ``Examples``
over a source's base splits (``Records``: in-memory arrays, image folders, WebDataset
shards, Hugging Face datasets; local, ``file://`` or ``gs://``). ``TrainSet``/``EvalSet``
(:mod:`.sets`) turn them into model-ready batches on a device, from the small-data cache or
streamed by loader workers (``BatchStream``, :mod:`.loader`). ``source_info`` describes a
source cheaply (class count, native image size). Every bad input raises ``DatasetError``.
"""

from mutask.trainer.data.arrays import ImageSplit, Source
from mutask.trainer.data.augment import DS_KEYS, AugmentDraws, Augmenter
from mutask.trainer.data.builtin import BUILTIN_SOURCES
from mutask.trainer.data.errors import DatasetError
from mutask.trainer.data.examples import TRANSFORMS, Examples
from mutask.trainer.data.records import Records
from mutask.trainer.data.sources import SourceCache, SourceInfo, load_source, source_info
from mutask.trainer.data.splits import SplitSlice, parse_split, resolve_split, select_split
from mutask.trainer.data.stream import BatchStream
from mutask.trainer.data.tasks import TaskData, load_task
from mutask.trainer.data.tensors import collate, eval_batches, prepare, to_model

__all__ = [
    "BUILTIN_SOURCES",
    "DS_KEYS",
    "TRANSFORMS",
    "AugmentDraws",
    "Augmenter",
    "BatchStream",
    "DatasetError",
    "Examples",
    "ImageSplit",
    "Records",
    "Source",
    "SourceCache",
    "SourceInfo",
    "SplitSlice",
    "TaskData",
    "collate",
    "eval_batches",
    "load_source",
    "load_task",
    "parse_split",
    "prepare",
    "resolve_split",
    "select_split",
    "source_info",
    "to_model",
]
