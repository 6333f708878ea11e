r"""
The one way in to a model that is not the caller's own: loading it safely, and querying it.

Every part of hf_ingrain that reads a model from a folder or the Hub (`verify`, `verify_from_hub`, the attacks'
`teacher="org/repo"`, the CLI, the recipes) goes through [`load_suspect`], so one policy applies everywhere:

- **safetensors weights only.** Pickle weights (`pytorch_model.bin`) can run code when loaded; they are refused
  unless the caller passes `allow_pickle=True`, and then loaded with a logged warning.
- **No repository code, ever.** `trust_remote_code` is never set, and a config that maps custom code (`auto_map`,
  `custom_pipelines`) or names a model type transformers does not know is refused before any weight is read.
- **One commit.** A Hub revision (branch, tag or sha) is resolved once to a commit sha, and every file is downloaded
  at that sha: the result names exactly what was tested.
- **Only what a classifier needs**, from the top of the folder or repository: `config.json`, the weights, the
  preprocessing files and the model card; never `checkpoint-*/` subfolders, optimizer states or training arguments.

Every query goes through [`model_inputs`] and [`forward_logits`]: the model is unwrapped from accelerate, DDP,
`torch.compile` and PEFT wrappers to read what it takes (its `main_input_name` and its processor's
`model_input_names`, not `forward`'s signature, which a wrapper hides), floating inputs are cast to the model's dtype
(a bf16 suspect takes float32 pixels) and moved to its device, and [`collect_scores`] batches a whole data set.
"""

from .loading import (
    CARD_FILE,
    CONFIG_FILE,
    SAFE_PATTERNS,
    Suspect,
    check_config_is_safe,
    is_hub_id,
    load_model,
    load_or_train,
    load_suspect,
    resolve_model,
    selected_files,
    weight_files,
)
from .querying import (
    collect_scores,
    forward_logits,
    inference_copy,
    model_input_names,
    model_inputs,
    model_logits,
    unwrap_model,
)
from .scores import SCORE_KINDS, as_score_matrix, keep_top, restrict_scores, score_kind

__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "SAFE_PATTERNS",
    "SCORE_KINDS",
    "Suspect",
    "as_score_matrix",
    "check_config_is_safe",
    "collect_scores",
    "forward_logits",
    "inference_copy",
    "is_hub_id",
    "keep_top",
    "load_model",
    "load_or_train",
    "load_suspect",
    "model_input_names",
    "model_inputs",
    "model_logits",
    "resolve_model",
    "restrict_scores",
    "score_kind",
    "selected_files",
    "unwrap_model",
    "weight_files",
]
