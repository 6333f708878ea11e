"""What a multi-process script checks and does around training: the launch, the weights of every process, the exit."""

import os

import torch

from ..hashing import tensors_sha256


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
