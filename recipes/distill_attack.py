r"""
Attack a (watermarked) model by distillation (Hinton et al. 2015, https://huggingface.co/papers/1503.02531), then
check with the owner's key whether the student still carries the watermark (Yang, Dang and Chang 2019,
https://huggingface.co/papers/1906.06046).

The attacker queries the teacher on their own split of the data (`attacker`, disjoint from the owner's) and trains a
fresh student, of the architecture given by the model flags, on what the teacher exposes (`--teacher_output`:
logits, probabilities, top-k scores or labels). Every `DistillationConfig` / `TrainingArguments` flag works, and
`--config file.yaml` reads the flags from a file that command-line flags override. Only the main process verifies,
after training, on the test split: the teacher (for reference) and the student.

Outputs in `--output_dir`: the student (safetensors + config), checkpoints, `trainer_state.json`, and
`distill_results.json` (both verifications, test accuracies, the student's top-1 agreement with the teacher, the
world size and a digest of the final weights on every process). The key is only read, never written.

Launch commands (from the repository root; the teacher and key come from `ingrain.py`):

    # CPU, one process: distil the smoke run's model
    python recipes/distill_attack.py --config recipes/configs/distill_mnist5k_small_cnn_cpu.yaml

    # CPU, two processes (gloo); `--use_cpu true` is in the YAML file and is required
    accelerate launch --config_file recipes/accelerate_configs/cpu.yaml \
        recipes/distill_attack.py --config recipes/configs/distill_mnist5k_small_cnn_cpu.yaml \
        --per_device_train_batch_size 32

    # one GPU / several GPUs / FSDP / DeepSpeed ZeRO-2
    accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml \
        recipes/distill_attack.py --config recipes/configs/distill_mnist_resnet.yaml
"""

import logging
import os
from dataclasses import dataclass, field

import torch
from transformers import set_seed

import hf_ingrain
from hf_ingrain import DistillationConfig, DistillationTrainer, WatermarkKey, verify
from hf_ingrain.data import iterate_batches
from hf_ingrain.files import write_json
from hf_ingrain.keys import KEY_FILE
from hf_ingrain.scripts import (
    DataArguments,
    IngrainParser,
    ModelArguments,
    check_key_outside_output,
    check_processes_launched,
    finish_processes,
    setup_logging,
    train_and_save,
)
from hf_ingrain.suspects import collect_scores, load_model

logger = logging.getLogger(__name__)

RESULTS_FILE = "distill_results.json"


@dataclass
class ScriptArguments:
    r"""
    Arguments of `distill_attack.py` that are not training arguments.

    Args:
        teacher (`str`):
            The attacked model: a folder written by `save_pretrained` (e.g. the `output_dir` of `ingrain.py`) or a Hub
            model id. Safetensors weights only; no repository code is run.
        key_dir (`str`, *optional*):
            The owner's key, to verify the student (and the teacher) after the attack. Without it the recipe only
            distils and reports accuracies.
        verify_alpha (`float`, *optional*, defaults to 1e-6):
            Significance level of the verifications.
    """

    teacher: str | None = field(default=None, metadata={"help": "The attacked model: a local folder or a Hub id."})
    key_dir: str | None = field(default=None, metadata={"help": "The owner's key, to verify the student afterwards."})
    verify_alpha: float = field(default=1e-6, metadata={"help": "Significance level of the verifications."})


def check_arguments(script_args: ScriptArguments, training_args: DistillationConfig) -> None:
    """Every refusal that does not need the data, raised before any long work."""
    check_processes_launched(training_args)
    if not script_args.teacher:
        raise ValueError("Pass `--teacher`: the model to attack (a folder from `ingrain.py`, or a Hub model id).")
    if script_args.key_dir and not os.path.isfile(os.path.join(script_args.key_dir, KEY_FILE)):
        raise ValueError(
            f"`--key_dir` {script_args.key_dir!r} holds no watermark key ({KEY_FILE} is missing). Pass the folder that "
            "`ingrain.py` wrote, or drop `--key_dir` to distil without verifying."
        )
    if script_args.key_dir:
        check_key_outside_output(script_args.key_dir, training_args.output_dir)


def predictions(model, dataset, batch_size: int = 256) -> torch.Tensor:
    """The model's top-1 class on every example of `dataset`, in order."""
    return collect_scores(model, dataset, batch_size=batch_size)[0].argmax(-1)


def main(args: list[str] | None = None) -> dict:
    """Runs the recipe on `args` (default: the command line); returns the results (on every process)."""
    parser = IngrainParser([ScriptArguments, DataArguments, ModelArguments, DistillationConfig])
    script_args, data_args, model_args, training_args = parser.parse_args_and_config(args)
    setup_logging(training_args, logger)
    check_arguments(script_args, training_args)

    key = WatermarkKey.load(script_args.key_dir) if script_args.key_dir else None
    teacher = load_model(script_args.teacher)
    splits = data_args.load_splits(training_args)
    attacker, test = splits["attacker"], splits["test"]
    input_shape = tuple(attacker[0]["pixel_values"].shape)

    set_seed(training_args.seed)
    student = model_args.build(teacher.config.num_labels, input_shape, teacher.config.id2label)
    trainer = DistillationTrainer(model=student, teacher=teacher, args=training_args, train_dataset=attacker)
    train_result, digests = train_and_save(trainer)

    results = {
        "recipe": "distill_attack",
        "hf_ingrain_version": hf_ingrain.__version__,
        "dataset": data_args.dataset,
        "teacher": script_args.teacher,
        "student_model_type": model_args.model_type,
        "teacher_output": training_args.teacher_output,
        "temperature": training_args.temperature,
        "world_size": training_args.world_size,
        "global_step": trainer.state.global_step,
        "train_metrics": train_result.metrics,
        "weights_sha256_per_process": digests,
    }
    if trainer.is_world_process_zero():
        device = training_args.device
        distilled = load_model(training_args.output_dir).to(device)  # as anyone would load it (also after FSDP)
        teacher = teacher.to(device)
        labels = torch.cat([batch["labels"] for batch in iterate_batches(test, 1024, columns=["labels"])])
        student_top, teacher_top = predictions(distilled, test), predictions(teacher, test)
        results["student_test_accuracy"] = (student_top == labels).float().mean().item()
        results["teacher_test_accuracy"] = (teacher_top == labels).float().mean().item()
        results["student_teacher_agreement"] = (student_top == teacher_top).float().mean().item()
        print(
            f"[distill_attack] world size {training_args.world_size}; test accuracy: teacher "
            f"{results['teacher_test_accuracy']:.4f}, student {results['student_test_accuracy']:.4f}; the student "
            f"agrees with the teacher on {results['student_teacher_agreement']:.3f} of the test split"
        )
        if key is not None:
            results["key_commitment"] = key.commitment()
            for name, model in (("teacher", teacher), ("student", distilled)):
                result = verify(model, key, test, alpha=script_args.verify_alpha)
                results[f"{name}_verification"] = result.to_dict()
                print(f"[distill_attack] {name}: {result}")
        write_json(os.path.join(training_args.output_dir, RESULTS_FILE), results, sort_keys=True)
    finish_processes(trainer)
    return results


if __name__ == "__main__":
    main()
