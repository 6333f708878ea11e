"""What a training script checks and does around `trainer.train()`, on one process or many: the launch, the folders,
the logging, training and saving, the weights of every process, the exit."""

import logging
import os

import torch
import transformers

from ..hashing import tensors_sha256
from ..keys import check_key_outside


def setup_logging(training_args, logger: logging.Logger) -> None:
    """Timestamped logs, at the level the training arguments give this process (the main one is the most verbose)."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)


def check_key_outside_output(key_dir: str, output_dir: str) -> None:
    """Refuses a key folder and an output folder that contain one another (see `hf_ingrain.keys.check_key_outside`)."""
    check_key_outside(key_dir, output_dir)


def train_and_save(trainer) -> tuple:
    """Trains (resuming from `--resume_from_checkpoint`: a path, or `true` / `last` for the latest checkpoint), saves
    the model, the metrics and the trainer state, and checks that every process ended with the same weights.

    Returns:
        `tuple`: the `TrainOutput` and the weight digest of every process.
    """
    resume = trainer.args.resume_from_checkpoint
    resume = True if isinstance(resume, str) and resume.lower() in ("true", "last") else resume
    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    digests = weights_digest_per_process(trainer)
    if len(set(digests)) > 1:
        raise RuntimeError(f"The processes ended with different weights ({digests}): gradients were not synchronised.")
    return train_result, digests


def check_processes_launched(training_args) -> None:
    """Refuses a run whose launcher started several processes that the training arguments do not see.

    `accelerate launch --multi_gpu --num_processes 2` on a machine without GPUs starts two processes, but unless the
    script gets `--use_cpu true` each of them trains alone, with no gradient synchronisation, and they all write to
    the same output folder.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size != launched:
        raise ValueError(
            f"The launcher started {launched} processes but the training arguments see {training_args.world_size}: "
            "they would train separately, without gradient synchronisation. On CPUs pass `--use_cpu true` "
            "(with `accelerate launch --multi_gpu` or `torchrun`, not `accelerate launch --cpu`)."
        )


def weights_digest_per_process(trainer) -> list[str]:
    """SHA-256 of the trained weights on every process (index = process rank): all equal when gradients were synced.

    Not meaningful under FSDP, where each process holds a shard of the weights; returns `[]` there.
    """
    if trainer.is_fsdp_enabled:
        return []
    digest = tensors_sha256(trainer.model.state_dict())
    digests = [digest]
    if trainer.args.world_size > 1 and torch.distributed.is_initialized():
        digests = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(digests, digest)
    return digests


def finish_processes(trainer) -> None:
    """Waits for every process, then shuts the process group down cleanly.

    Without it, a rank that finishes first (the others still verifying on rank 0) tears down gloo's threads at
    interpreter exit and aborts ("terminate called without an active exception"), failing the launch.
    """
    trainer.accelerator.wait_for_everyone()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
