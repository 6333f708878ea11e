r"""
Data as users have it: data sets, raw inputs through their processors, and the benign query set of a verification.

- `images`: [`load_image_dataset`] (owner / attacker / test splits of any `image`/`label` data set, or the embedded
  MNIST sample), [`iterate_batches`], the one way the package reads a data set in batches, and [`draw_examples`], a
  seeded draw of examples as tensors.
- `text`: [`load_text_dataset`], the same for text (the embedded emoji-name corpus, or any `text`/`label` data set).
- `preparation`: [`prepare_dataset`], raw images or texts through the model's own processor or tokenizer, and
  [`load_data`] / [`load_processor`], data and processors as users keep them.
- `query_set`: the benign queries of a verification read once (checked, deduplicated, digested): the set a key
  commits to.
- `committed_test`: the test a key commits to with the queries (protocol, alpha, budget, ladder).
- `image_ops`: tensor operations on image batches (a Gaussian blur) and the label-only ladders' names.
"""

from .image_ops import gaussian_blur
from .images import (
    EMBEDDED_DATASET,
    SPLITS,
    draw_examples,
    first_example,
    iterate_batches,
    load_image_dataset,
    split_indices,
)
from .preparation import check_model_modality, load_data, load_processor, prepare_dataset
from .query_set import QuerySet, TensorQueries, read_queries
from .text import EMBEDDED_TEXT_DATASET, load_text_dataset

__all__ = [
    "EMBEDDED_DATASET",
    "EMBEDDED_TEXT_DATASET",
    "QuerySet",
    "SPLITS",
    "TensorQueries",
    "check_model_modality",
    "draw_examples",
    "first_example",
    "gaussian_blur",
    "iterate_batches",
    "load_data",
    "load_image_dataset",
    "load_processor",
    "load_text_dataset",
    "prepare_dataset",
    "read_queries",
    "split_indices",
]
