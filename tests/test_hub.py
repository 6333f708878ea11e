"""Publishing to and verifying from the Hub (hf_ingrain.hub), against the loopback Hub server of tests/hub_server.py.

The real huggingface_hub client talks HTTP to 127.0.0.1 (the `loopback_hub` fixture of conftest.py); nothing of
huggingface_hub is patched beyond the endpoint and offline constants that `HubServer.configure_client` sets.
"""

import json
import logging
import os
import re
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from safetensors.torch import save_file
from transformers import Trainer

from conftest import random_image_dataset, tiny_cnn, training_args
from trained_models import single_thread  # noqa: F401 (autouse fixture: this module runs on one thread)
from hf_ingrain import IngrainConfig, IngrainTrainer, WatermarkKey, verify
from hf_ingrain.cli import main
from hf_ingrain.data.query_set import read_queries
from hf_ingrain.hub import (
    HubVerificationResult,
    is_hub_id,
    push_to_hub,
    verify_from_hub,
)
from hf_ingrain.hub.model_card import WATERMARK_FIELDS
from hf_ingrain.keys.querying import SAVED_ATTRIBUTE, _weights_digest, forget_scores

pytestmark = pytest.mark.hub

SECRET_NAMES = {"seed", "salt", "carriers", "carrier_labels", "ingrainer", "key"}



@pytest.fixture(scope="module")
def watermarked(embedded_splits, tmp_path_factory):
    """A tiny CNN ingrained with a key trained on the owner split, and the Trainer that made it (~30 s of CPU).

    Measured: agreement 0.335 vs null rate 0.206 on the 1000 test images, p = 1.6e-21 with one thread (0.348 vs
    0.204, p = 3e-26 with two), 15 orders of magnitude below the default alpha 1e-6, so `verified` does not hinge on
    the floating-point details of one machine.
    """
    key = WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=50, seed=0)
    key.train_ingrainer(
        benign_dataset=embedded_splits["owner"], num_steps=250, batch_size=128, show_progress=False, num_reference_keys=0
    )
    model = tiny_cnn(seed=1)
    output_dir = tmp_path_factory.mktemp("trainer")
    args = IngrainConfig(
        **training_args(
            output_dir, output_dir=str(output_dir), max_steps=-1, num_train_epochs=8, per_device_train_batch_size=64,
            learning_rate=3e-3, logging_steps=50, seed=1, hub_model_id="tester/trainer-model", hub_token="x",
        ),
        ingrain_lambda=0.5, ingrain_cache_logits=True,
    )
    trainer = IngrainTrainer(model=model, args=args, train_dataset=embedded_splits["owner"], ingrainer=key)
    trainer.train()
    trainer.save_model()
    result = verify(model, key, embedded_splits["test"])
    assert result.verified, result  # the fixture is only useful if the model verifies locally
    return SimpleNamespace(key=key, model=model, trainer=trainer, output_dir=str(output_dir),
                           queries=embedded_splits["test"], result=result)


def key_secrets(key) -> list[bytes]:
    """Byte strings that only the key holds: its salt, and windows of its carriers, labels and ingrainer weights."""
    secrets = [key.salt, key.salt.hex().encode()]
    tensors = [key.carriers, key.carrier_labels, *key.ingrainer.state_dict().values()]
    for tensor in tensors:
        data = tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
        if len(data) <= 64:
            windows = [data] if len(data) >= 16 else []
        else:
            windows = [data[:64], data[len(data) // 2: len(data) // 2 + 64], data[-64:]]
        # a window of one repeated value (e.g. zeros) says nothing about the key; keep only varied ones
        secrets += [w for w in windows if len(set(w)) >= 8]
    return secrets


def leaked(server, key) -> list[tuple[str, str]]:
    """(repo, path) of every uploaded file or upload sample containing a byte string of the key."""
    secrets = key_secrets(key)
    return [(repo, path) for repo, path, data in server.uploaded_bytes() if any(s in data for s in secrets)]


def resolved_downloads(server, repo_id) -> list[tuple[str, str]]:
    """(revision, path) of every file the client fetched from `repo_id` (GET .../resolve/{revision}/{path})."""
    prefix = f"/{repo_id}/resolve/"
    return [
        tuple(path[len(prefix):].split("/", 1)) for method, path in server.requests
        if method == "GET" and path.startswith(prefix)
    ]


def walk_keys(value):
    if isinstance(value, dict):
        for name, item in value.items():
            yield name
            yield from walk_keys(item)


def card_of(server, repo_id, revision="main") -> ModelCard:
    return ModelCard(server.repo_files(repo_id, revision)["README.md"].decode())


# ------------------------------------------------------------------ round trips
def test_push_then_verify_round_trip(loopback_hub, watermarked, tmp_path):
    repo = "tester/ingrained"
    key, queries = watermarked.key, watermarked.queries
    sha = push_to_hub(
        watermarked.model, repo, key, verification_dataset=queries, private=True, token="x", ingrain_lambda=0.5,
        ingrain_temperature=4.0,
    )

    # one commit on top of the repository's initial one, holding exactly the published files
    assert loopback_hub.commits(repo)[0] == sha and len(loopback_hub.commits(repo)) == 2
    files = loopback_hub.repo_files(repo, sha)
    assert set(files) == {".gitattributes", "config.json", "model.safetensors", "README.md", "watermark.json"}
    block = card_of(loopback_hub, repo).data.watermark
    assert block == json.loads(files["watermark.json"])
    assert block["key_commitment"] == key.commitment()
    assert block["verification"]["verified"] is True
    assert block["verification"]["p_value"] == pytest.approx(watermarked.result.p_value)
    assert block["parameters"] == {"ingrain_temperature": 4.0, "ingrain_lambda": 0.5, "alpha": 1e-6,
                                   "num_queries": len(queries), "num_labels": 10}

    result = verify_from_hub(repo, key, queries, token="x", cache_dir=str(tmp_path / "cache"))
    assert isinstance(result, HubVerificationResult)
    assert result.verified and result.commitment_match is True
    assert (result.repo_id, result.revision, result.commit_sha) == (repo, "main", sha)
    # the downloaded weights are the published ones: the same agreements as the local model
    assert result.num_agreements == watermarked.result.num_agreements
    # only config, safetensors weights and the card were fetched, and all at the resolved commit sha
    downloads = resolved_downloads(loopback_hub, repo)
    assert {path for _, path in downloads} == {"config.json", "model.safetensors", "README.md"}
    assert {revision for revision, _ in downloads} == {sha}

    # a second push makes a new commit; the first stays verifiable by its sha, and the result names it
    second = push_to_hub(watermarked.model, repo, key, verification_dataset=queries, token="x", commit_message="again")
    assert second != sha and loopback_hub.commits(repo)[0] == second
    pinned = verify_from_hub(repo, key, queries, revision=sha, token="x", cache_dir=str(tmp_path / "cache"))
    assert (pinned.revision, pinned.commit_sha) == (sha, sha)

    # the repository is private: no token, no model
    with pytest.raises(ValueError, match="not found.*private"):
        verify_from_hub(repo, key, queries, token=False, cache_dir=str(tmp_path / "c2"))
    assert leaked(loopback_hub, key) == []


def test_push_trainer_output_folder_through_the_cli(loopback_hub, watermarked, tmp_path, capsys):
    key_dir = tmp_path / "owner_key"
    watermarked.key.save(str(key_dir))
    assert os.path.exists(os.path.join(watermarked.output_dir, "training_args.bin"))  # a pickle that must stay local

    code = main(["push", watermarked.output_dir, "tester/cli-model", "--key", str(key_dir), "--ingrain-lambda", "0.5"])
    out = capsys.readouterr().out
    assert code == 0, out
    sha = loopback_hub.commits("tester/cli-model")[0]
    assert sha in out
    files = loopback_hub.repo_files("tester/cli-model")
    assert set(files) == {".gitattributes", "config.json", "model.safetensors", "README.md", "watermark.json"}

    code = main(["verify", "tester/cli-model", "--key", str(key_dir), "--revision", sha, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert report["verified"] and report["commitment_match"] is True and report["commit_sha"] == sha
    assert main(["verify", "tester/no-such-model", "--key", str(key_dir)]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert leaked(loopback_hub, watermarked.key) == []


def test_ingrain_trainer_push_to_hub_publishes_safe_files_and_merges_the_trainers_card(
    loopback_hub, watermarked, tmp_path
):
    # What the official example scripts call at the end of training: `trainer.push_to_hub(**kwargs)`.
    key, queries = watermarked.key, watermarked.queries
    reference = push_to_hub(watermarked.model, "tester/reference", key, verification_dataset=queries, ingrain_lambda=0.5,
                            ingrain_temperature=4.0)
    card_kwargs = dict(finetuned_from="tester/base-model", dataset_tags="ylecun/mnist", dataset="ylecun/mnist",
                       tasks="image-classification")
    info = watermarked.trainer.push_to_hub(verification_dataset=queries, tags=["digits"], **card_kwargs)

    assert loopback_hub.commits("tester/trainer-model")[0] == info.oid
    assert os.path.exists(os.path.join(watermarked.output_dir, "training_args.bin"))  # written, never uploaded
    files = loopback_hub.repo_files("tester/trainer-model")
    assert set(files) == {".gitattributes", "config.json", "model.safetensors", "README.md", "watermark.json"}
    trainer_card = card_of(loopback_hub, "tester/trainer-model")
    reference_card = card_of(loopback_hub, "tester/reference", reference)
    # the same block as the standalone publisher's, plus the strength the trainer measured at the end of training
    trainer_block, reference_block = dict(trainer_card.data.watermark), dict(reference_card.data.watermark)
    strength = trainer_block.pop("training_strength")
    assert reference_block.pop("training_strength") is None and trainer_block == reference_block
    measured = watermarked.trainer.watermark_strength
    assert strength["step"] == watermarked.trainer.state.global_step and strength["takes"] == measured.takes
    assert strength["predicted_p_value"] == pytest.approx(measured.predicted_p_value)
    # what Trainer.create_model_card writes is kept: base model, data set, tags, hyperparameters
    Trainer.create_model_card(watermarked.trainer, model_name="trainer-model", tags=["digits"], **card_kwargs)
    plain = ModelCard.load(os.path.join(watermarked.output_dir, "README.md")).data.to_dict()
    merged = trainer_card.data.to_dict()
    assert plain["base_model"] == "tester/base-model" and plain["datasets"] == ["ylecun/mnist"]
    assert {k: v for k, v in plain.items() if k != "tags"} == {k: merged[k] for k in plain if k != "tags"}
    assert set(plain["tags"]) | set(IngrainTrainer._tag_names) <= set(merged["tags"])
    text = trainer_card.text.replace("trainer-model", "reference")
    assert "## Watermark strength at the end of training" in text
    text = re.sub(r"\n\n## Watermark strength at the end of training\n.*?(?=\n\n## )", "", text, flags=re.S)
    assert text.startswith(reference_card.text.rstrip()) and "### Training hyperparameters" in text

    result = verify_from_hub("tester/trainer-model", key, queries, cache_dir=str(tmp_path / "cache"))
    assert result.verified and result.commitment_match is True and result.commit_sha == info.oid
    assert leaked(loopback_hub, key) == []


# ------------------------------------------------------------------ what is published
def test_nothing_of_the_key_is_uploaded_and_the_check_can_see_it(loopback_hub, watermarked):
    key = watermarked.key
    push_to_hub(watermarked.model, "tester/public", key, verification_dataset=watermarked.queries)
    assert leaked(loopback_hub, key) == []
    block = card_of(loopback_hub, "tester/public").data.watermark
    assert set(block) <= set(WATERMARK_FIELDS)
    assert not SECRET_NAMES & set(walk_keys(block))

    # control: the same check finds the key when a key file is uploaded
    api = HfApi(token="x")
    api.create_repo("tester/oops")
    carriers = key.carriers.contiguous().numpy().tobytes()
    api.upload_file(path_or_fileobj=b"header" + carriers, path_in_repo="carriers.bin", repo_id="tester/oops")
    assert ("tester/oops", "carriers.bin") in leaked(loopback_hub, key)


# ------------------------------------------------------------------ refusals and errors
def _upload(api, repo_id, files: dict):
    from huggingface_hub import CommitOperationAdd

    api.create_repo(repo_id, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in files.items()]
    return api.create_commit(repo_id, operations, commit_message="upload").oid


def _model_files(model) -> tuple[bytes, dict]:
    config = model.config.to_dict()
    config["architectures"] = [type(model).__name__]
    return json.dumps(config).encode(), {k: v.contiguous() for k, v in model.state_dict().items()}


def test_pickle_only_repository_is_refused_unless_allowed(loopback_hub, small_key, tmp_path, caplog):
    import io

    model = tiny_cnn()
    config, state = _model_files(model)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    sha = _upload(HfApi(token="x"), "tester/pickled", {"config.json": config, "pytorch_model.bin": buffer.getvalue()})
    queries = random_image_dataset(32)

    with pytest.raises(ValueError, match=r"pickle weights only \(pytorch_model.bin\).*allow_pickle=True"):
        verify_from_hub("tester/pickled", small_key, queries, cache_dir=str(tmp_path))
    assert resolved_downloads(loopback_hub, "tester/pickled") == []  # refused before downloading anything

    with caplog.at_level(logging.WARNING, logger="hf_ingrain.hub"):
        result = verify_from_hub("tester/pickled", small_key, queries, allow_pickle=True, cache_dir=str(tmp_path))
    assert "UNSAFE" in caplog.text
    assert result.commit_sha == sha and result.commitment_match is None  # no card, so no commitment to check
    assert result.num_agreements == verify(model, small_key, queries).num_agreements  # the uploaded weights


@pytest.mark.parametrize("custom", ["auto_map", "unknown_model_type"])
def test_repository_needing_custom_code_is_refused(loopback_hub, small_key, tmp_path, custom):
    marker = tmp_path / "code_ran"
    config, state = _model_files(tiny_cnn())
    config = json.loads(config)
    if custom == "auto_map":
        config["auto_map"] = {"AutoModelForImageClassification": "modeling_evil.EvilModel"}
    else:
        config["model_type"] = "evil_net"
    weights = tmp_path / "model.safetensors"
    save_file(state, str(weights))
    code = f"open({str(marker)!r}, 'w').write('ran')\n".encode()
    _upload(HfApi(token="x"), "tester/custom", {
        "config.json": json.dumps(config).encode(), "model.safetensors": weights.read_bytes(), "modeling_evil.py": code,
    })

    with pytest.raises(ValueError, match="custom code.*never runs code"):
        verify_from_hub("tester/custom", small_key, random_image_dataset(16), cache_dir=str(tmp_path / "cache"))
    assert not marker.exists()
    fetched = {path for _, path in resolved_downloads(loopback_hub, "tester/custom")}
    assert fetched == {"config.json"}  # the config was read; neither the code nor the weights were fetched


def test_tampered_key_is_reported_as_commitment_mismatch(loopback_hub, watermarked, tmp_path, caplog):
    key, queries = watermarked.key, watermarked.queries
    sha = push_to_hub(watermarked.model, "tester/claimed", key, verification_dataset=queries)
    carriers = key.carriers.clone()
    carriers[0, 0, 0, 0] = 1.0 - carriers[0, 0, 0, 0]  # one changed pixel
    tampered = WatermarkKey(carriers, key.carrier_labels, key.num_labels, key.salt, key.seed, input_shape=key.input_shape,
                            value_range=key.value_range, vocab_size=key.vocab_size, ingrainer=key.ingrainer,
                            training_info=key.training_info)
    assert tampered.commitment() != key.commitment()

    with caplog.at_level(logging.WARNING, logger="hf_ingrain.hub"):
        result = verify_from_hub("tester/claimed", tampered, queries, cache_dir=str(tmp_path))
    assert result.commitment_match is False
    assert result.published_commitment == key.commitment()
    assert "does NOT match your key" in caplog.text
    # the mismatch is reported, and the watermark test still ran on the model at that commit
    assert result.commit_sha == sha and result.num_queries == len(queries)
    assert "DOES NOT match" in str(result)


def test_unknown_repository_or_revision_is_a_clear_error(loopback_hub, small_key, tmp_path):
    queries = random_image_dataset(16)
    with pytest.raises(ValueError, match="Repository 'tester/missing' not found"):
        verify_from_hub("tester/missing", small_key, queries, cache_dir=str(tmp_path))

    config, state = _model_files(tiny_cnn())
    weights = tmp_path / "model.safetensors"
    save_file(state, str(weights))
    _upload(HfApi(token="x"), "tester/exists", {"config.json": config, "model.safetensors": weights.read_bytes()})
    for revision in ("no-such-branch", "f" * 40):
        with pytest.raises(ValueError, match=f"Revision '{revision}' not found in 'tester/exists'"):
            verify_from_hub("tester/exists", small_key, queries, revision=revision, cache_dir=str(tmp_path))

    # the CLI turns the same errors into one line and exit code 2
    key_dir = tmp_path / "key"
    small_key.save(str(key_dir))
    model_dir = tmp_path / "model"
    tiny_cnn().save_pretrained(str(model_dir))
    assert main(["push", str(tmp_path / "nowhere"), "tester/x", "--key", str(key_dir)]) == 2
    assert main(["push", str(model_dir), "not a repo id", "--key", str(key_dir)]) == 2


# ------------------------------------------------------------------ no server needed
def test_is_hub_id_tells_repository_ids_from_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("out/model")
    assert is_hub_id("someone/suspect") and is_hub_id("me/my-model.v2")
    assert not is_hub_id("out/model")  # an existing folder wins
    for name in ("./me/model", "/abs/path", "~/model", "model", "a/b/c", "me/../x", "me/", "me/a--b"):
        assert not is_hub_id(name), name


def test_push_and_verify_check_their_arguments_before_any_work(small_key, tmp_path):
    model = tiny_cnn()
    with pytest.raises(ValueError, match="namespace/name"):
        push_to_hub(model, "no-namespace", small_key, verification_dataset=random_image_dataset(8))
    with pytest.raises(ValueError, match="verification_dataset="):
        push_to_hub(model, "me/model", small_key)
    with pytest.warns(FutureWarning, match="verification_dataset"), pytest.raises(ValueError, match="namespace/name"):
        push_to_hub(model, "no-namespace", small_key, dataset=random_image_dataset(8))  # 0.1's name, still read
    with pytest.raises(ValueError, match="WatermarkKey"):
        verify_from_hub("me/model", "not a key", random_image_dataset(8))
    with pytest.raises(ValueError, match="call `trainer.save_model\\(\\)`"):
        push_to_hub(str(tmp_path), "me/model", small_key, verification_dataset=random_image_dataset(8))


# ------------------------------------------------------------------ one loader for every Hub model
def test_checkpoint_subfolders_are_never_downloaded(loopback_hub, small_key, tmp_path):
    config, state = _model_files(tiny_cnn())
    weights = tmp_path / "model.safetensors"
    save_file(state, str(weights))
    _upload(HfApi(token="x"), "tester/with-checkpoints", {
        "config.json": config, "model.safetensors": weights.read_bytes(),
        "checkpoint-5/config.json": config, "checkpoint-5/model.safetensors": weights.read_bytes(),
        "checkpoint-5/optimizer.pt": b"not a pickle you want",
    })
    verify_from_hub("tester/with-checkpoints", small_key, random_image_dataset(16), cache_dir=str(tmp_path / "c"))
    fetched = {path for _, path in resolved_downloads(loopback_hub, "tester/with-checkpoints")}
    assert fetched == {"config.json", "model.safetensors"}


def test_a_teacher_and_an_attack_target_from_the_hub_go_through_the_same_loader(loopback_hub, tmp_path, capsys):
    import io

    from hf_ingrain import DistillationConfig, DistillationTrainer

    teacher = tiny_cnn(seed=2)
    config, state = _model_files(teacher)
    weights = tmp_path / "model.safetensors"
    save_file(state, str(weights))
    sha = _upload(HfApi(token="x"), "tester/teacher", {"config.json": config, "model.safetensors": weights.read_bytes()})
    args = DistillationConfig(**training_args(tmp_path / "distill", max_steps=1))
    trainer = DistillationTrainer(
        model=tiny_cnn(seed=3), teacher="tester/teacher", args=args, train_dataset=random_image_dataset(8)
    )
    assert torch.equal(trainer.teacher.classifier.weight, teacher.classifier.weight)
    resolved = {path.split("/")[4] for _, path in loopback_hub.requests if path.startswith("/tester/teacher/resolve/")}
    assert resolved == {sha}  # every file read at the one commit the revision resolved to (cached files: HEAD only)

    buffer = io.BytesIO()
    torch.save(state, buffer)
    _upload(HfApi(token="x"), "tester/pickled-teacher", {"config.json": config, "pytorch_model.bin": buffer.getvalue()})
    with pytest.raises(ValueError, match="pickle weights only"):
        DistillationTrainer(model=tiny_cnn(), teacher="tester/pickled-teacher", args=args)
    output = tmp_path / "pruned"
    assert main(["attack", "prune", "--model", "tester/teacher", "--revision", sha, "--output", str(output)]) == 0
    assert "tester/teacher" in (output / "README.md").read_text()
    assert main(["attack", "prune", "--model", "tester/pickled-teacher", "--output", str(tmp_path / "p2")]) == 2
    assert "pickle weights only" in capsys.readouterr().err and not (tmp_path / "p2").exists()


def test_the_verify_summary_names_the_commit_and_the_published_commitment(loopback_hub, watermarked, tmp_path, capsys):
    key_dir = tmp_path / "owner_key"
    watermarked.key.save(str(key_dir))
    sha = push_to_hub(watermarked.model, "tester/summary", watermarked.key, verification_dataset=watermarked.queries)
    assert main(["verify", "tester/summary", "--key", str(key_dir)]) == 0
    out = capsys.readouterr().out
    assert f"commit {sha}" in out and "commitment matches the key" in out


# ------------------------------------------------------------------ claims: which came first
def _claim_key(seed, model, owner):
    """A key whose ingrainer IS `model`: what a thief builds after seeing a public model (the constructor takes any
    ingrainer; train_ingrainer would refuse it)."""
    drawn = WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=20, seed=seed)
    key = WatermarkKey(drawn.carriers, drawn.carrier_labels, 10, drawn.salt, seed, input_shape=(1, 28, 28),
                       ingrainer=model)
    key.commit_queries(owner)
    return key


def test_a_key_made_after_seeing_the_model_cannot_claim_it(loopback_hub, local_tsa, watermarked, tmp_path, capsys):
    import copy

    queries = watermarked.queries
    owner_key = WatermarkKey(
        watermarked.key.carriers, watermarked.key.carrier_labels, 10, watermarked.key.salt, watermarked.key.seed,
        input_shape=(1, 28, 28), ingrainer=watermarked.key.ingrainer, training_info=watermarked.key.training_info,
    )
    owner_key.commit_queries(queries)  # the owner commits to the test split, timestamps it, publishes: the reference
    token = local_tsa.stamp(owner_key.commitment())
    push_to_hub(watermarked.model, "owner/model", owner_key, verification_dataset=queries, timestamp=token)
    push_to_hub(watermarked.model, "someone/copy", owner_key, verification_dataset=queries)  # a copy published later
    claim = verify_from_hub("someone/copy", owner_key, queries, reference_repo_id="owner/model",
                            timestamp_ca=local_tsa.ca_file, cache_dir=str(tmp_path / "c"))
    assert claim.test_verified and claim.claim["precedence"] and claim.claim["timestamp"]["verified"]
    assert claim.committed_queries is True
    # this fixture's key has no reference ingrainers and no audit: what refuses the claim here is the key alone (an
    # audited key with 16 references stands: tests/test_precedence.py)
    assert not claim.verified and claim.claim["refusals"]
    assert all(r.startswith(("The key was not audited", "The key has 0 reference")) for r in claim.claim["refusals"])
    # the Hub's dates alone (no CA to check the token with) establish nothing, whoever the owner is
    unchecked = verify_from_hub("someone/copy", owner_key, queries, reference_repo_id="owner/model",
                                cache_dir=str(tmp_path / "c"))
    assert unchecked.test_verified and not unchecked.verified and unchecked.claim["hub_precedence"]
    published = card_of(loopback_hub, "owner/model").data.watermark  # the token is named; nothing of the key
    assert published["timestamp"]["file"] == "commitment.tsr" and set(published) <= set(WATERMARK_FIELDS)
    assert not SECRET_NAMES & set(walk_keys(published)) and leaked(loopback_hub, owner_key) == []

    # The thief: copies the owner's model into an "ingrainer", makes a key of it (any model fits random carriers
    # once it is the ingrainer), publishes that key's commitment after the fact and claims the owner's model.
    thief_key = _claim_key(5, copy.deepcopy(watermarked.model), queries)
    thief_dir = tmp_path / "thief_key"
    thief_key.save(str(thief_dir))
    thief_key = WatermarkKey.load(str(thief_dir))  # as kept: a trained model's config holds `use_cache` until saved
    push_to_hub(watermarked.model, "thief/model", thief_key, verification_dataset=queries)
    stolen_claim = verify_from_hub("owner/model", thief_key, queries, reference_repo_id="thief/model",
                                   cache_dir=str(tmp_path / "c"))
    print(stolen_claim)
    assert stolen_claim.test_verified and stolen_claim.agreement == 1.0  # the test alone is fooled, as in 0.1...
    assert not stolen_claim.verified  # ...the claim is not: the thief's commitment is younger than the model
    reasons = stolen_claim.claim["refusals"]
    assert any("Hub commit dates alone" in r and "not before the suspect's first publication" in r for r in reasons)
    # and from the shell: exit 1, with both dates and the reason
    assert main(["verify", "owner/model", "--key", str(thief_dir), "--reference", "thief/model"]) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and "first published" in out and "suspect since" in out


def test_a_claim_on_other_queries_or_another_commitment_is_refused(loopback_hub, watermarked, tmp_path):
    queries = watermarked.queries
    key = watermarked.key
    sha = push_to_hub(watermarked.model, "owner/plain", key, verification_dataset=queries)  # commitment, no committed set in key
    card = card_of(loopback_hub, "owner/plain", sha).data.watermark
    assert card["queries"]["digest"] == verify(watermarked.model, key, queries).query_digest  # push's set
    push_to_hub(watermarked.model, "someone/copy2", key, verification_dataset=queries)
    other = queries.select(range(500))
    claim = verify_from_hub("someone/copy2", key, other, reference_repo_id="owner/plain", cache_dir=str(tmp_path))
    assert claim.test_verified and not claim.verified and claim.committed_queries is False
    assert any("not the set" in reason for reason in claim.claim["refusals"])
    # the test run at publication is the committed one: a claim runs it by default, and refuses any other
    assert card["queries"]["test"] == {"protocol": "ingrain", "alpha": 1e-6, "max_queries": None, "ladder": None}
    on_the_committed = verify_from_hub("someone/copy2", key, queries, reference_repo_id="owner/plain",
                                       cache_dir=str(tmp_path))
    assert on_the_committed.committed_queries is True and on_the_committed.committed_test is True
    assert not any("not the one committed" in reason for reason in on_the_committed.claim["refusals"])
    # scores kept with a key (read from its folder, which anyone can write) are never a claim's: forged ones bend a
    # plain verify, and the claim queries the ingrainers again and runs the same test as before
    forget_scores(key)
    first, rest = key.ingrainer_scores(queries)
    members = [key.ingrainer, *key.reference_ingrainers]
    key.__dict__[SAVED_ATTRIBUTE] = {"query_digest": read_queries(key, queries).ordered_digest,
                                     "scores": -torch.stack([first, *rest]), "weights_digest": _weights_digest(members)}
    assert verify(watermarked.model, key, queries).p_value != on_the_committed.p_value
    again = verify_from_hub("someone/copy2", key, queries, reference_repo_id="owner/plain", cache_dir=str(tmp_path))
    assert again.p_value == on_the_committed.p_value and SAVED_ATTRIBUTE not in key.__dict__
    for chosen, named in [(dict(alpha=1e-3), "alpha 0.001 (committed 1e-06)"),
                          (dict(protocol="ingrain_errors", max_queries=300), "protocol 'ingrain_errors'")]:
        later = verify_from_hub("someone/copy2", key, queries, reference_repo_id="owner/plain", cache_dir=str(tmp_path),
                                **chosen)
        assert not later.verified and later.committed_test is False
        assert any("not the one committed at first publication: " + named in reason
                   for reason in later.claim["refusals"]), later.claim["refusals"]
    stranger = WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=5, seed=3)
    stranger.ingrainer = key.ingrainer
    wrong = verify_from_hub("someone/copy2", stranger, queries, reference_repo_id="owner/plain", cache_dir=str(tmp_path))
    assert not wrong.verified and "not this key's" in wrong.claim["refusals"][0]
    with pytest.raises(ValueError, match="is the suspect itself"):
        verify_from_hub("someone/copy2", key, queries, reference_repo_id="someone/copy2")
