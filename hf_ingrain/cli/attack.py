"""`hf-ingrain attack <name>`: attack a saved model, save it with its card; one subcommand per attack of the registry
([`~hf_ingrain.attacks.registry.AttackSpec`] with a `run_cli`).

    hf-ingrain attack distill  --model PATH_OR_ID --output DIR [--data NAME_OR_PATH] [--temperature 4] ...
    hf-ingrain attack extract  --model PATH_OR_ID --output DIR --queries strokes --num_queries 10000 [--student_arch vit]
    hf-ingrain attack overwrite --model PATH_OR_ID --output DIR --key_output THIEF_KEY_DIR [--data NAME_OR_PATH]
    hf-ingrain attack prune    --model PATH_OR_ID --output DIR [--rate 0.5]
    hf-ingrain attack --help   (every attack, one line each)

Every attack's arguments are dataclasses parsed with [`~hf_ingrain.scripts.IngrainParser`], so each field is a flag
(with underscores or dashes) and `--config file.yaml` reads them from a file: the target's
([`~hf_ingrain.attacks.arguments.AttackArguments`]), for an attack that trains the attacker's data and optimisation
([`~hf_ingrain.attacks.arguments.AttackTrainingArguments`]), then the attack's own, declared in its file. The
attacker's data is the `attacker` split of [`~hf_ingrain.data.load_image_dataset`] (default: the embedded MNIST
sample). The target is loaded with [`~hf_ingrain.suspects.load_model`]: safetensors only, no repository code, one
commit. Attacks chain through their folders: `--model` of one attack is the `--output` of the previous one (prune,
then finetune, then distill).
"""

from ..attacks.arguments import AttackArguments, AttackTrainingArguments
from ..attacks.registry import AttackSpec, attack_specs


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("attack", help="Run a watermark-removal attack on a model and save the result.")
    parser.set_defaults(func=lambda args, rest=(): parser.print_help() or 2, parses_own_arguments=True)
    attacks = parser.add_subparsers(dest="attack", metavar="ATTACK")
    for spec in attack_specs().values():
        if spec.run_cli is not None:
            attacks.add_parser(spec.name, help=spec.help, add_help=False).set_defaults(
                func=run, parses_own_arguments=True
            )


def argument_types(spec: AttackSpec) -> list[type]:
    """The dataclasses the subcommand of `spec` parses, in the order `run_cli` takes them."""
    return [AttackArguments] + ([AttackTrainingArguments] if spec.trains else []) + list(spec.arguments)


def parse(attack: str, argv: list[str]) -> tuple:
    """The dataclasses of `attack` parsed from `argv` (the words after `hf-ingrain attack ATTACK`)."""
    from ..scripts import IngrainParser

    spec = attack_specs()[attack]
    parser = IngrainParser(argument_types(spec), prog=f"hf-ingrain attack {attack}", description=spec.help)
    return parser.parse_args_and_config(argv)


def run(args, rest: list[str]) -> int:
    from ..attacks.model_io import save_attacked_model
    from ..files import check_new_folder
    from ..suspects import load_model

    spec = attack_specs()[args.attack]
    parsed = parse(args.attack, rest)
    target = parsed[0]
    check_new_folder(target.output, what="the attacked model")  # before any long work
    if spec.check_cli is not None:
        spec.check_cli(*parsed)
    model = load_model(target.model, revision=target.revision)
    attacked, parameters, *notes = spec.run_cli(model, *parsed)
    for line in notes[0] if notes else []:  # what the attack has to tell the user (overwrite: where its key went)
        print(line)
    name = spec.card_name or spec.name
    path = save_attacked_model(attacked, target.output, name, parameters, source=target.model)
    print(f"{name}: saved the attacked model and its card to {path}")
    return 0
