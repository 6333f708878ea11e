r"""
Does the watermark take on real text within the task's own training, and does the strength that tunes itself help?
The official text-classification script's path (a tokenizer, `map` to token ids, `DataCollatorWithPadding`, a small
BERT from config, `IngrainTrainer` with a key from `generate_for`) on a labelled text data set, for each seed:

- `plain`: a `Trainer`, the task alone (its p-value must not verify);
- `fixed`: `IngrainTrainer` with λ = `ingrain_lambda` for `num_train_epochs`;
- `auto`: the same with `ingrain_lambda_mode="auto"` (`hf_ingrain.trainer.controller`);
- `until_taken`: λ fixed, at least `num_train_epochs` and at most `max_epochs`, stopped by `WatermarkTakesCallback`
  once the watermark takes;
- `independent`: another party, never near the key or the owner's texts: its own tokenizer and a BERT of another seed
  (seed + 2000), trained plainly on the thief's texts (the attacker split). Its p-value must not verify.

With `--students 4 label`, each ingrained model is then distilled into a fresh BERT of another seed on the thief's
texts (the attacker split, as many as `train_size`, `num_train_epochs`): from its logits at each temperature given, or
from its top-1 labels (`label`); rows `student_T4`, `student_label`, with the `teacher` mode they learned from. A
teacher whose row is already in the file is trained again for a missing student (the same seed gives the same model).
With `--attacks finetune_FTAL prune_50 ...` (columns of the benchmark, `hf_ingrain.attacks`), each ingrained model is
also attacked, the thief's texts padded to `max_length` for the attacks that train; rows named as the column, with
their `teacher`. The attacks that need a new model of the owner's architecture or images are refused: fine-tuning
(`finetune_*`), pruning, quantisation and weight noise run.

The strength is measured on 512 of the owner's texts that no model trains on; every model is verified on the test
split (at most `test_size` texts) with the key-draw test, as `verify` does. One command, resumable (rows already in
`--results_file` are kept):

    python docs/strength/text_strength.py --data ../shared/data/health_tweets --train_size 4000 --seeds 0 \
        --key_dir keys/text_strength --results_file docs/strength/health_tweets.json

With `--pretrain_data OTHER --pretrained_dir DIR`, every model is fine-tuned from a checkpoint instead (the usual
case; no Hub weights offline): a BERT trained plainly on `--pretrain_size` texts of another data set with a tokenizer
of its own, saved in DIR with that tokenizer once (loaded afterwards), and loaded by every model as a user's script
loads it (`from_pretrained(DIR, num_labels=..., ignore_mismatched_sizes=True)`, its tokenizer for every text): the
owner's, the thief's students and the independent party's (which keep to the public checkpoint's tokenizer too).

`--data` is a local folder laid out like a Hub text data set (`text` / `sentence` and `label` columns) or a Hub id.
Every model is also verified with the scores protocol (`protocol="ingrain_scores"`: `p_value_scores`,
`correlation`). With `--other_key_seeds 1 2 3`, every model is also judged by keys it never saw (made like the key from
those seeds, saved beside it as `KEY_DIR_seed1`, ...): the false claims of `other_keys_p_values_scores` and, with
more than two classes, `other_keys_p_values`. A binary task cannot carry the runner-up protocol's watermark (the
runner-up is the other class): on one, read `p_value_scores`.
"""

import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace

import torch

logger = logging.getLogger(__name__)

MODES = ("plain", "fixed", "auto", "until_taken", "independent")
KEYLESS = ("plain", "independent")  # the modes trained without the key
TEXT_ATTACKS = ("finetune_", "prune_", "quantize_", "noise_")  # the benchmark columns that take a text model as is
HELD_OUT = 512  # the owner's texts after the training ones: the strength measurement's, never trained on


@dataclass
class TextStrengthArguments:
    r"""
    Arguments of `text_strength.py` (see the module docstring).
    """

    data: str = field(metadata={"help": "A local text data set folder (text and label columns) or a Hub id."})
    key_dir: str = field(metadata={"help": "The key's folder: loaded if there, else made from --key_seed."})
    results_file: str = field(metadata={"help": "Where the rows go (JSON); rows already there are kept."})
    train_size: int = field(default=4000, metadata={"help": "The owner's texts to train on."})
    test_size: int = field(default=1000, metadata={"help": "Test texts verified on (the first of the test split)."})
    seeds: list[int] = field(default_factory=lambda: [0])
    modes: list[str] = field(default_factory=lambda: list(MODES))
    num_train_epochs: float = field(default=4.0, metadata={"help": "The task's own training length."})
    max_epochs: float = field(default=15.0, metadata={"help": "until_taken: the most epochs allowed."})
    ingrain_lambda: float = field(default=0.5)
    ingrain_exclude_label: bool = field(default=False, metadata={"help": "IngrainConfig's field: the true class left "
                                                                         "out of the ingrain term."})
    ingrain_target_scale: float = field(default=1.0, metadata={"help": "IngrainConfig's field: flatter targets."})
    ingrain_temperature: float | None = field(default=None, metadata={"help": "IngrainConfig's field (default: its "
                                                                              "default)."})
    learning_rate: float = field(default=2e-3)
    batch_size: int = field(default=64)
    max_length: int = field(default=48, metadata={"help": "Tokens per text (truncation)."})
    vocab_size: int = field(default=8000)
    hidden_size: int = field(default=64, metadata={"help": "The BERT's width (its feed-forward layer is twice it)."})
    num_hidden_layers: int = field(default=2, metadata={"help": "The BERT's layers."})
    key_seed: int = field(default=0)
    ingrainer_steps: int | None = field(default=600, metadata={"help": "The key's training steps (600 made the "
                                                                      "tables of docs/strength; None: the package's)."})
    num_reference_keys: int | None = field(default=None, metadata={"help": "The key's references (default: the "
                                                                          "package's)."})
    second_key_dir: str | None = field(default=None, metadata={"help": "Also verify every model with this key "
                                                                 "(p_value_2), made when missing as the key with its "
                                                                 "references extended to --second_num_reference_keys."})
    second_num_reference_keys: int = field(default=32)
    students: list[str] = field(default_factory=list, metadata={"help": "Students of each ingrained model: a "
                                                                 "temperature (its logits), or `label` (its labels)."})
    other_key_seeds: list[int] = field(default_factory=list, metadata={"help": "Also judge every model by keys it "
                                                                       "never saw, made from these seeds."})
    attacks: list[str] = field(default_factory=list, metadata={"help": "Benchmark columns applied to each ingrained "
                                                                "model (finetune_FTAL, prune_50, ...)."})
    pretrain_data: str | None = field(default=None, metadata={"help": "Fine-tune every model from a checkpoint "
                                                                       "trained plainly on this other text data set."})
    pretrained_dir: str | None = field(default=None, metadata={"help": "Where that checkpoint and its tokenizer are "
                                                                        "kept (trained and saved when missing)."})
    pretrain_size: int = field(default=23000, metadata={"help": "The checkpoint's training texts (at most)."})

    def __post_init__(self):
        unknown = sorted(set(self.modes) - set(MODES))
        if unknown:
            raise ValueError(f"Unknown modes {unknown}: choose among {list(MODES)}.")
        for kind in self.students:
            if kind != "label" and not _positive(kind):
                raise ValueError(f"Unknown student {kind!r}: a temperature > 0 (e.g. 4) or `label`.")
        from hf_ingrain.attacks.registry import check_attack_name

        for name in self.attacks:
            check_attack_name(name)  # a clear error naming the columns, before any training
            if not name.startswith(TEXT_ATTACKS):
                raise ValueError(f"The attack {name!r} needs images or a new model of the owner's architecture; on "
                                 f"text choose a column starting with one of {list(TEXT_ATTACKS)}.")
        if (self.pretrain_data is None) != (self.pretrained_dir is None):
            raise ValueError("--pretrain_data and --pretrained_dir go together: the data the checkpoint is trained on "
                             "and the folder it is kept in.")
        if self.key_seed in self.other_key_seeds:
            raise ValueError(f"--other_key_seeds holds the key's own seed ({self.key_seed}): give other seeds.")
        if self.max_epochs < self.num_train_epochs:
            raise ValueError(
                f"`max_epochs` ({self.max_epochs}) must be >= `num_train_epochs` ({self.num_train_epochs})."
            )


def student_mode(kind: str) -> str:
    """The row name of a student of kind `kind` (`--students`): `student_T4`, `student_label`."""
    return f"student_{'T' + kind if kind != 'label' else 'label'}"


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def load(args: TextStrengthArguments, tokenizer=None) -> dict:
    """Owner (training) texts, the training and held-out texts as token ids, the test texts of `args.data`, and a
    tokenizer trained on the owner's (or `tokenizer`, a checkpoint's)."""
    from hf_ingrain.data import load_text_dataset
    from hf_ingrain.data.text import wordpiece_tokenizer

    splits = load_text_dataset(args.data)
    owner = splits["owner"]
    if len(owner) < args.train_size + HELD_OUT // 4:
        raise ValueError(f"`train_size` {args.train_size} leaves too few of the owner's {len(owner)} texts held out.")
    held_out = min(HELD_OUT, len(owner) - args.train_size)
    num_labels = len(set(owner["labels"]))
    if num_labels < 2:
        raise ValueError(f"{args.data!r} has {num_labels} class; a classifier needs 2 or more.")
    train = owner.select(range(args.train_size))
    tokenizer = tokenizer or wordpiece_tokenizer(train["text"], args.vocab_size, args.max_length)
    attacker = splits["attacker"].select(range(min(args.train_size, len(splits["attacker"]))))
    return {
        "train": train,
        "train_ids": token_ids(train, tokenizer),
        "attacker": attacker,
        "attacker_ids": token_ids(attacker, tokenizer),
        # the attacks' Trainer has no collator of ours: the thief's texts padded here, when there are attacks
        "attacker_padded": token_ids(attacker, tokenizer, args.max_length) if args.attacks else None,
        "held_out_ids": token_ids(owner.select(range(args.train_size, args.train_size + held_out)), tokenizer),
        "test": splits["test"].select(range(min(args.test_size, len(splits["test"])))),
        "num_labels": num_labels,
        "tokenizer": tokenizer,
        "pretrained": args.pretrained_dir,
    }


def token_ids(split, tokenizer, max_length: int | None = None):
    """The script's `map`: token ids, padded per batch by the collator (or, with `max_length`, padded to it here, for
    the attacks' Trainer, which has no collator of ours)."""
    padding = {} if max_length is None else {"padding": "max_length", "max_length": max_length}
    return split.map(lambda batch: tokenizer(batch["text"], truncation=True, **padding), batched=True,
                     remove_columns=["text"])


def bert(num_labels: int, vocab_size: int, max_length: int, seed: int, hidden_size: int = 64, num_layers: int = 2):
    """A small BERT from config (no pretrained weights offline)."""
    from transformers import AutoModelForSequenceClassification, BertConfig

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=max(2, hidden_size // 64), intermediate_size=2 * hidden_size,
                        max_position_embeddings=max_length, num_labels=num_labels)
    return AutoModelForSequenceClassification.from_config(config)


def new_model(args: TextStrengthArguments, data: dict, seed: int, vocab_size: int | None = None):
    """A model to train: the BERT from config of `seed`, or, with a checkpoint, the checkpoint loaded as a user's
    script loads it (a new head for a new label set, initialised from `seed`)."""
    if data["pretrained"] is None:
        return bert(data["num_labels"], vocab_size or len(data["tokenizer"]), args.max_length, seed, args.hidden_size,
                    args.num_hidden_layers)
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    torch.manual_seed(seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a new head is expected when the label sets differ
    try:
        return AutoModelForSequenceClassification.from_pretrained(data["pretrained"], num_labels=data["num_labels"],
                                                                  ignore_mismatched_sizes=True)
    finally:
        hf_logging.set_verbosity(verbosity)


def pretrained_checkpoint(args: TextStrengthArguments):
    """The checkpoint's tokenizer, after training the checkpoint on `--pretrain_data` and saving it with its tokenizer
    in `--pretrained_dir` (to a staging folder, then renamed) unless it is there."""
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments

    from hf_ingrain.data import load_text_dataset
    from hf_ingrain.data.text import wordpiece_tokenizer
    from hf_ingrain.files import atomic_folder

    if not os.path.isfile(os.path.join(args.pretrained_dir, "config.json")):
        owner = load_text_dataset(args.pretrain_data)["owner"]
        texts = owner.select(range(min(args.pretrain_size, len(owner))))
        tokenizer = wordpiece_tokenizer(texts["text"], args.vocab_size, args.max_length)
        model = bert(len(set(texts["labels"])), len(tokenizer), args.max_length, 1234, args.hidden_size,
                     args.num_hidden_layers)
        with tempfile.TemporaryDirectory() as scratch:
            training = TrainingArguments(
                output_dir=scratch, num_train_epochs=args.num_train_epochs, learning_rate=args.learning_rate,
                per_device_train_batch_size=args.batch_size, seed=1234, save_strategy="no", report_to="none",
                use_cpu=not torch.cuda.is_available(), disable_tqdm=True, logging_strategy="no")
            Trainer(model=model, args=training, train_dataset=token_ids(texts, tokenizer), processing_class=tokenizer,
                    data_collator=DataCollatorWithPadding(tokenizer)).train()
        with atomic_folder(args.pretrained_dir, what="the pretrained checkpoint", replace=True) as staging:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        logger.info("Pretrained a BERT on %d texts of %s, saved in %s.", len(texts), args.pretrain_data,
                    args.pretrained_dir)
    return AutoTokenizer.from_pretrained(args.pretrained_dir)


def load_or_make_key(args: TextStrengthArguments, data: dict):
    from hf_ingrain import WatermarkKey
    from hf_ingrain.keys import KEY_FILE

    if os.path.isfile(os.path.join(args.key_dir, KEY_FILE)):
        return WatermarkKey.load(args.key_dir)
    tokenizer = data["tokenizer"]
    key = WatermarkKey.generate_for(new_model(args, data, 0), tokenizer, seed=args.key_seed)
    options = {name: value for name, value in (("num_steps", args.ingrainer_steps),
                                               ("num_reference_keys", args.num_reference_keys)) if value is not None}
    key.train_ingrainer(benign_dataset=data["train"], processor=tokenizer, **options)
    key.save(args.key_dir)  # committed to the test texts by main(), once its second key is made from it
    return key


def load_or_extend_key(args: TextStrengthArguments, data: dict):
    """The second key: loaded, or made and saved as the key with its references extended to
    `--second_num_reference_keys` (`WatermarkKey.extend_references`: the same ingrainer and first references)."""
    from hf_ingrain import WatermarkKey
    from hf_ingrain.keys import KEY_FILE

    if os.path.isfile(os.path.join(args.second_key_dir, KEY_FILE)):
        return WatermarkKey.load(args.second_key_dir)
    key = WatermarkKey.load(args.key_dir)
    key.extend_references(args.second_num_reference_keys, benign_dataset=data["train"], processor=data["tokenizer"])
    key.save(args.second_key_dir)
    return key


def train_one(args: TextStrengthArguments, data: dict, key, mode: str, seed: int, output_dir: str,
              second_key=None) -> dict:
    """Trains the model of `mode` with `seed`, verifies it on the test texts, returns its row."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from hf_ingrain import IngrainConfig, IngrainTrainer, WatermarkTakesCallback
    from hf_ingrain.data.text import wordpiece_tokenizer

    tokenizer, model_seed = data["tokenizer"], seed
    train, held_out = data["train_ids"], data["held_out_ids"]
    if mode == "independent":  # another party: its own texts, initial weights and (from config) tokenizer
        if data["pretrained"] is None:
            tokenizer = wordpiece_tokenizer(data["attacker"]["text"], args.vocab_size, args.max_length)
        train, model_seed = token_ids(data["attacker"], tokenizer), seed + 2000
    epochs = args.max_epochs if mode == "until_taken" else args.num_train_epochs
    common = dict(output_dir=output_dir, num_train_epochs=epochs, learning_rate=args.learning_rate,
                  per_device_train_batch_size=args.batch_size, seed=seed, data_seed=seed, save_strategy="no",
                  report_to="none", use_cpu=not torch.cuda.is_available(), disable_tqdm=True, logging_strategy="no")
    model = new_model(args, data, model_seed, len(tokenizer))
    kwargs = dict(model=model, train_dataset=train, processing_class=tokenizer,
                  data_collator=DataCollatorWithPadding(tokenizer))
    started, callback = time.perf_counter(), None
    if mode in KEYLESS:
        trainer = Trainer(args=TrainingArguments(**common), **kwargs)
    else:
        config = IngrainConfig(**common, ingrain_lambda=args.ingrain_lambda,
                               ingrain_exclude_label=args.ingrain_exclude_label,
                               ingrain_target_scale=args.ingrain_target_scale,
                               **({} if args.ingrain_temperature is None else
                                  {"ingrain_temperature": args.ingrain_temperature}),
                               ingrain_lambda_mode="auto" if mode == "auto" else "fixed")
        callbacks = [WatermarkTakesCallback(min_epochs=args.num_train_epochs)] if mode == "until_taken" else None
        callback = callbacks[0] if callbacks else None
        trainer = IngrainTrainer(args=config, ingrainer=key, strength_dataset=held_out, callbacks=callbacks, **kwargs)
    trainer.train()
    seconds = round(time.perf_counter() - started, 1)
    # a two-class key has no runner-up test: the scores protocol alone (and the second key judges the same model)
    row = verified_row(args, data, key, model, second_key, mode=mode, seed=seed,
                       epochs=round(trainer.state.epoch or 0, 2), seconds=seconds, tokenizer=tokenizer)
    if mode not in KEYLESS:
        strength = trainer.watermark_strength
        row.update(final_lambda=trainer.ingrain_weight(),
                   predicted_p_value=None if strength is None else strength.predicted_p_value,
                   stopped_at=None if callback is None else callback.stopped_at)
    logger.info("%s", row)
    return row, model


def verified_row(args, data, key, model, second_key, tokenizer=None, **fields) -> dict:
    """A model's row: its accuracy and both protocols' verdicts with the key (and the second key), the test texts
    read by its tokenizer (default: the owner's)."""
    from hf_ingrain import verify

    tokenizer = tokenizer or data["tokenizer"]
    scores = verify(model, key, data["test"], processor=tokenizer, protocol="ingrain_scores")
    result = verify(model, key, data["test"], processor=tokenizer) if key.num_labels > 2 else None
    row = {**fields, "accuracy": scores.details.get("accuracy"), "agreement": result and result.agreement,
           "null_rate": result and result.null_rate, "p_value": result and result.p_value,
           "verified": result and result.verified, "correlation": scores.agreement,
           "p_value_scores": scores.p_value, "verified_scores": scores.verified}
    others = data.get("other_keys", [])  # keys the model never saw: every verdict of theirs is a false claim
    if others:
        row["other_keys_p_values_scores"] = [
            verify(model, other, data["test"], processor=tokenizer, protocol="ingrain_scores").p_value
            for other in others]
        if key.num_labels > 2:
            row["other_keys_p_values"] = [verify(model, other, data["test"], processor=tokenizer).p_value
                                          for other in others]
    if second_key is not None:
        second = verify(model, second_key, data["test"], processor=tokenizer) if key.num_labels > 2 else None
        second_scores = verify(model, second_key, data["test"], processor=tokenizer, protocol="ingrain_scores")
        row.update(p_value_2=second and second.p_value, verified_2=second and second.verified,
                   p_value_scores_2=second_scores.p_value, num_references_2=len(second_key.reference_ingrainers))
    return row


def distill_one(args, data, key, teacher, teacher_mode: str, kind: str, seed: int, output_dir: str,
                second_key=None) -> dict:
    """A student of `teacher` (a fresh BERT, seed + 1000) on the thief's texts: its logits at temperature `kind`, or
    its top-1 labels (`kind="label"`); verified like every model."""
    from transformers import DataCollatorWithPadding

    from hf_ingrain import DistillationConfig, DistillationTrainer

    tokenizer = data["tokenizer"]
    student = new_model(args, data, seed + 1000)  # the thief starts from the public checkpoint too, if there is one
    output = dict(teacher_output="label") if kind == "label" else dict(temperature=float(kind))
    config = DistillationConfig(output_dir=output_dir, num_train_epochs=args.num_train_epochs,
                                learning_rate=args.learning_rate, per_device_train_batch_size=args.batch_size,
                                seed=seed, data_seed=seed, save_strategy="no", report_to="none",
                                use_cpu=not torch.cuda.is_available(), disable_tqdm=True, logging_strategy="no",
                                **output)
    started = time.perf_counter()
    DistillationTrainer(model=student, teacher=teacher.eval(), args=config, train_dataset=data["attacker_ids"],
                        processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer)).train()
    seconds = round(time.perf_counter() - started, 1)
    row = verified_row(args, data, key, student.eval(), second_key, mode=student_mode(kind), seed=seed,
                       teacher=teacher_mode, epochs=args.num_train_epochs, seconds=seconds)
    logger.info("%s", row)
    return row


def attack_one(args, data, key, teacher, teacher_mode: str, name: str, seed: int, second_key=None) -> dict:
    """`teacher` attacked by the benchmark column `name` with the benchmark's default settings (the fine-tunings:
    the paper's SGD, 3 epochs) on the thief's texts; verified like every model."""
    from hf_ingrain.attacks.registry import BenchmarkContext, attack_for_column
    from hf_ingrain.benchmark.config import ExperimentConfig

    def refused(*_, **__):  # TEXT_ATTACKS need none of these
        raise ValueError(f"The attack {name!r} needs a new model of the owner's architecture or images.")

    context = BenchmarkContext(config=ExperimentConfig(), attacker=data["attacker_padded"], seed=seed + 7,
                               input_shape=None, new_model=refused, thief_model=refused, training_args=refused)
    started = time.perf_counter()
    attacked = attack_for_column(name)(teacher.eval(), context).eval()
    seconds = round(time.perf_counter() - started, 1)
    row = verified_row(args, data, key, attacked, second_key, mode=name, seed=seed, teacher=teacher_mode,
                       seconds=seconds)
    logger.info("%s", row)
    return row


def table(rows: list[dict]) -> str:
    from hf_ingrain.verification.statistics import format_p_value

    def cell(value, spec):
        return "-" if value is None else format(value, spec)

    lines = ["| mode | seed | epochs | final λ | accuracy | agreement | null rate | p-value | verified | correlation "
             "| p-value, scores |", "|---|---|---|---|---|---|---|---|---|---|---|"]

    def order(row):
        return (MODES.index(row["mode"]) if row["mode"] in MODES else len(MODES), row["seed"], row["mode"])

    for row in sorted(rows, key=order):
        p_value, scores = row["p_value"], row.get("p_value_scores")
        lines.append(
            f"| {row['mode']}{' of ' + row['teacher'] if row.get('teacher') else ''} | "
            f"{row['seed']} | {cell(row.get('epochs'), 'g')} | {cell(row.get('final_lambda'), '.3g')} | "
            f"{row['accuracy']:.3f} | {cell(row['agreement'], '.3f')} | {cell(row['null_rate'], '.3f')} | "
            f"{'-' if p_value is None else format_p_value(p_value, relation=False)} | "
            f"{'-' if p_value is None else ('yes' if row['verified'] else 'no')} | "
            f"{cell(row.get('correlation'), '.3f')} | "
            f"{'-' if scores is None else format_p_value(scores, relation=False)} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    import json

    from transformers import HfArgumentParser

    from hf_ingrain.files import write_json

    (args,) = HfArgumentParser(TextStrengthArguments).parse_args_into_dataclasses(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("transformers").setLevel(logging.WARNING)
    rows = []
    if os.path.isfile(args.results_file):
        with open(args.results_file, encoding="utf-8") as f:
            rows = json.load(f)["rows"]
    data = load(args, None if args.pretrain_data is None else pretrained_checkpoint(args))
    key = load_or_make_key(args, data)
    second_key = None
    if args.second_key_dir is not None:
        second_key = load_or_extend_key(args, data)
    data["other_keys"] = [load_or_make_key(replace(args, key_dir=f"{args.key_dir}_seed{seed}", key_seed=seed,
                                                   other_key_seeds=[]), data) for seed in args.other_key_seeds]
    for each in (key, second_key, *data["other_keys"]):  # the test texts, committed before any model is seen
        if each is not None:
            each.commit_queries(data["test"], processor=data["tokenizer"])

    def done(mode, seed, teacher=None):
        return any(r["mode"] == mode and r["seed"] == seed and r.get("teacher") == teacher for r in rows)

    with tempfile.TemporaryDirectory() as scratch:  # nothing is saved but the results
        for seed in args.seeds:
            for mode in args.modes:
                students = [kind for kind in args.students if mode not in KEYLESS
                            and not done(student_mode(kind), seed, mode)]
                attacks = [name for name in args.attacks if mode not in KEYLESS and not done(name, seed, mode)]
                if done(mode, seed) and not students and not attacks:
                    continue
                row, model = train_one(args, data, key, mode, seed, os.path.join(scratch, f"{mode}-{seed}"),
                                       second_key)
                if not done(mode, seed):
                    rows.append(row)
                for kind in students:
                    rows.append(distill_one(args, data, key, model, mode, kind, seed,
                                            os.path.join(scratch, f"{mode}-{seed}-student-{kind}"), second_key))
                for name in attacks:
                    rows.append(attack_one(args, data, key, model, mode, name, seed, second_key))
                write_json(args.results_file, {"arguments": asdict(args), "rows": rows})
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
