r"""
Train an image classifier with the owner's watermark ingrained (Yang, Dang and Chang 2019,
https://huggingface.co/papers/1906.06046), verify it on held-out data, and optionally publish it.

The same script runs on one CPU, several CPU processes, one GPU, several GPUs, FSDP or DeepSpeed: the launcher
decides (see `recipes/README.md`). Every `IngrainConfig` / `TrainingArguments` flag works, and `--config file.yaml`
reads the flags from a file that command-line flags override.

The owner's key is loaded from `--key_dir` when it exists there; otherwise the main process draws a new one
(seeded by `--key_seed`, or from the operating system's randomness), trains its ingrainer on the owner's split and
saves it to `--key_dir`, committed to the test split (the queries of any later claim, fixed before any suspect is
seen: `WatermarkKey.commit_queries`), while the other processes wait and then load it. Every process checks that it
holds the same key (by its commitment). The key is never written to `--output_dir` nor into the training arguments: keep
`--key_dir` private.

Outputs in `--output_dir`: the model (safetensors + config), checkpoints, `trainer_state.json`, and
`ingrain_results.json` (verification on the test split, accuracy, the key's commitment, the world size and a digest
of the final weights on every process).

Launch commands (from the repository root):

    # CPU, one process: the smoke run on the embedded MNIST sample (about 7 CPU-minutes, key training included)
    python recipes/ingrain.py --config recipes/configs/mnist5k_small_cnn_cpu.yaml

    # CPU, two processes (gloo); `--use_cpu true` is in the YAML file and is required
    accelerate launch --config_file recipes/accelerate_configs/cpu.yaml \
        recipes/ingrain.py --config recipes/configs/mnist5k_small_cnn_cpu.yaml --per_device_train_batch_size 32

    # one GPU / several GPUs / FSDP / DeepSpeed ZeRO-2
    accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml \
        recipes/ingrain.py --config recipes/configs/mnist_resnet.yaml
    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml \
        recipes/ingrain.py --config recipes/configs/cifar10_resnet.yaml
"""

import logging
import os

import torch
from transformers import set_seed

import hf_ingrain
from hf_ingrain import IngrainConfig, IngrainTrainer, WatermarkKey, verify
from hf_ingrain.files import write_json
from hf_ingrain.keys import KEY_FILE
from hf_ingrain.scripts import (
    DataArguments,
    IngrainParser,
    IngrainScriptArguments,
    ModelArguments,
    check_key_outside_output,
    check_processes_launched,
    finish_processes,
    setup_logging,
    train_and_save,
)
from hf_ingrain.suspects import load_model

logger = logging.getLogger(__name__)

RESULTS_FILE = "ingrain_results.json"
ScriptArguments = IngrainScriptArguments  # the recipe's own arguments (fields: `python recipes/ingrain.py --help`)


def check_arguments(script_args: ScriptArguments, training_args: IngrainConfig) -> None:
    """Every refusal that does not need the data, raised before any long work."""
    check_processes_launched(training_args)
    if not script_args.key_dir:
        raise ValueError(
            "Pass `--key_dir`: the folder of the owner's key (created there if missing). Keep it private, outside "
            "`--output_dir`."
        )
    check_key_outside_output(script_args.key_dir, training_args.output_dir)
    key_dir = os.path.abspath(script_args.key_dir)
    if os.path.isdir(key_dir) and os.listdir(key_dir) and not os.path.isfile(os.path.join(key_dir, KEY_FILE)):
        raise ValueError(f"`--key_dir` {key_dir} is not empty but holds no {KEY_FILE}; pass a key folder or a new one.")
    if training_args.push_to_hub:
        raise ValueError(
            "`--push_to_hub` would upload checkpoints without the watermark's metadata. Use `--publish_repo_id "
            "<user>/<repo>` instead: it publishes the final model with the key's commitment through hf_ingrain.hub."
        )
    if script_args.publish_repo_id:
        try:
            from hf_ingrain import hub  # noqa: F401
        except ImportError as error:
            raise ValueError(
                f"`--publish_repo_id` needs hf_ingrain.hub, which this installation lacks ({error}). Upgrade "
                "hf_ingrain, or drop the flag and publish later."
            ) from error


def load_or_create_key(script_args: ScriptArguments, training_args, benign_dataset, num_labels, input_shape,
                       queries=None):
    """The owner's key, identical on every process: created and saved by the main process only, loaded by the rest. A
    new key is committed to `queries` (the test split) before it is saved."""
    key_dir = script_args.key_dir
    with training_args.main_process_first(local=False, desc="creating the watermark key"):
        if os.path.isfile(os.path.join(key_dir, KEY_FILE)):
            key = WatermarkKey.load(key_dir)
            logger.info("Loaded the key from %s (commitment %s)", key_dir, key.commitment())
        elif training_args.process_index == 0:
            key = script_args.draw_key(
                benign_dataset, num_labels, input_shape, show_progress=not training_args.disable_tqdm, queries=queries
            )
            key.save(key_dir)
            logger.info("Generated a new key and saved it to %s (commitment %s)", key_dir, key.commitment())
        else:
            raise RuntimeError(
                f"Process {training_args.process_index} finds no key in {key_dir} after the main process saved it: "
                "the processes do not share a file system. Create the key first (one-process run) and copy it to "
                "every machine."
            )
    commitment = key.commitment()
    if training_args.world_size > 1 and torch.distributed.is_initialized():
        commitments = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(commitments, commitment)
        if len(set(commitments)) != 1:
            raise RuntimeError(
                f"The processes hold different keys (commitments {commitments}); delete {key_dir} and rerun."
            )
    return key


def accuracy(eval_prediction) -> dict:
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}


def main(args: list[str] | None = None) -> dict:
    """Runs the recipe on `args` (default: the command line); returns the results (on every process)."""
    parser = IngrainParser([ScriptArguments, DataArguments, ModelArguments, IngrainConfig])
    script_args, data_args, model_args, training_args = parser.parse_args_and_config(args)
    setup_logging(training_args, logger)
    check_arguments(script_args, training_args)

    splits = data_args.load_splits(training_args)
    owner, test = splits["owner"], splits["test"]
    label_feature = owner.features["labels"]
    num_labels = label_feature.num_classes
    input_shape = tuple(owner[0]["pixel_values"].shape)
    key = load_or_create_key(script_args, training_args, owner, num_labels, input_shape, queries=test)

    set_seed(training_args.seed)
    model = model_args.build(num_labels, input_shape, dict(enumerate(label_feature.names)))
    evaluate = training_args.eval_strategy != "no"
    trainer = IngrainTrainer(
        model=model, args=training_args, train_dataset=owner, eval_dataset=test if evaluate else None,
        ingrainer=key, compute_metrics=accuracy if evaluate else None,
    )
    train_result, digests = train_and_save(trainer)

    results = {
        "recipe": "ingrain",
        "hf_ingrain_version": hf_ingrain.__version__,
        "dataset": data_args.dataset,
        "model_type": model_args.model_type,
        "world_size": training_args.world_size,
        "global_step": trainer.state.global_step,
        "train_metrics": train_result.metrics,
        "key_commitment": key.commitment(),
        "weights_sha256_per_process": digests,
    }
    if trainer.is_world_process_zero():
        # Verify the saved model as anyone would load it (this also works after FSDP or DeepSpeed training).
        trained = load_model(training_args.output_dir)
        result = verify(trained.to(training_args.device), key, test, alpha=script_args.verify_alpha)
        results["verification"] = result.to_dict()
        results["test_accuracy"] = result.details.get("accuracy")
        write_json(os.path.join(training_args.output_dir, RESULTS_FILE), results, sort_keys=True)
        print(f"[ingrain] world size {training_args.world_size}, test accuracy {results['test_accuracy']:.4f}")
        print(f"[ingrain] {result}")
        if script_args.publish_repo_id:
            from hf_ingrain.hub import push_to_hub

            # Only config.json and the safetensors weights leave output_dir, with a card holding the key's commitment.
            sha = push_to_hub(
                training_args.output_dir, script_args.publish_repo_id, key, dataset=test,
                ingrain_lambda=training_args.ingrain_lambda, ingrain_temperature=training_args.ingrain_temperature,
                alpha=script_args.verify_alpha,
            )
            results["published"] = {"repo_id": script_args.publish_repo_id, "commit": sha}
            write_json(os.path.join(training_args.output_dir, RESULTS_FILE), results, sort_keys=True)
            print(f"[ingrain] published to {script_args.publish_repo_id} (commit {sha})")
    finish_processes(trainer)
    return results


if __name__ == "__main__":
    main()
