"""Precedence a third party can check (hf_ingrain.hub.provenance, .lineage, .timestamps), against the loopback Hub
server (tests/hub_server.py) and a local time-stamping authority made with openssl (tests/local_tsa.py).

Each way a claim was "verified" on dates the claimant could write, as a test that it no longer is: a reference
backdated by a `git push`, a token obtained after the suspect appeared, a token of another commitment or from an
untrusted authority, a later re-upload of the victim. And the honest owner who timestamps at publication, whose claim
still stands.
"""

import copy
import os
import shutil
import tempfile

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from trained_models import single_thread  # noqa: F401 (autouse fixture: this module runs on one thread)

from hf_ingrain import WatermarkKey
from hf_ingrain.cli import main
from hf_ingrain.hub import push_to_hub, verify_from_hub
from hf_ingrain.hub.lineage import HUB_DATE_SOURCE, instant
from hf_ingrain.hub.publish import write_watermark_card
from hf_ingrain.hub.timestamps import read_timestamp

pytestmark = pytest.mark.hub

BACKDATED = "2020-01-01T00:00:00.000Z"



@pytest.fixture(scope="module")
def queries(embedded_splits):
    return embedded_splits["test"].select(range(200))


@pytest.fixture(scope="module")
def benign(embedded_splits):
    """The owner data an honest test key is spread over (and audited on)."""
    return embedded_splits["owner"].select(range(512))


@pytest.fixture
def model(mnist_teacher):
    """A briefly trained CNN (its predictions spread over the classes, so a test on it can verify); a fresh copy per
    test, each test a fresh Hub."""
    return copy.deepcopy(mnist_teacher)


def derived_from(model):
    """Other weights, nearly the same predictions: what fine-tuning or distilling `model` publishes."""
    derived = copy.deepcopy(model)
    with torch.no_grad():
        derived.classifier.bias.add_(1e-3)
    return derived


def key_of(model, queries, seed):
    """A key whose ingrainer IS `model`: the test verifies it at agreement 1.0, whoever made it (an owner, or a thief
    after seeing the model). What these tests judge is the date, not the test."""
    drawn = WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=20, seed=seed)
    key = WatermarkKey(drawn.carriers, drawn.carrier_labels, 10, drawn.salt, seed, input_shape=(1, 28, 28),
                       ingrainer=copy.deepcopy(model))
    key.commit_queries(queries)
    folder = tempfile.mkdtemp(prefix="precedence_key_")
    try:  # as the owner keeps it: a Trainer's model carries `use_cache` in its config until saved, and the
        key.save(os.path.join(folder, "key"))  # commitment covers the config; the saved key is the one that lasts
        return WatermarkKey.load(os.path.join(folder, "key"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def honest_key(queries, seed, benign):
    """An honest owner's key: drawn and trained from its seed (a few steps on a slice of owner data: a test of dates,
    not of strength) with the 16 reference ingrainers a claim needs, saved and loaded, and its audit; the owner's model
    is the key's own ingrainer (the test verifies it at agreement 1.0)."""
    from hf_ingrain.keys import audit_key

    key = WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=20, seed=seed)
    key.train_ingrainer(benign_dataset=benign, num_steps=60, batch_size=128, num_reference_keys=16,
                        show_progress=False, device="cpu")
    key.commit_queries(queries)
    folder = tempfile.mkdtemp(prefix="precedence_key_")
    try:
        key.save(os.path.join(folder, "key"))
        key = WatermarkKey.load(os.path.join(folder, "key"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    model = copy.deepcopy(key.ingrainer)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return key, model, audit_key(key, benign)


def model_files(tmp_path, model, key, queries, base_model=None) -> dict:
    """The files `push_to_hub` would publish, as a folder a `git push` (or a re-upload) sends."""
    folder = tmp_path / f"folder-{len(os.listdir(tmp_path))}"
    model.save_pretrained(str(folder))
    if key is not None:
        write_watermark_card(str(folder), model, key, queries)
    files = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    if base_model:
        files["README.md"] = f"---\nbase_model: {base_model}\n---\n# A re-upload\n".encode()
    return files


def upload(repo_id, files):
    from huggingface_hub import CommitOperationAdd

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in files.items()]
    return api.create_commit(repo_id, operations, commit_message="upload").oid


def claim(suspect, key, queries, reference, tmp_path, **kwargs):
    return verify_from_hub(suspect, key, queries, reference_repo_id=reference, cache_dir=str(tmp_path / "cache"),
                           **kwargs)


def refused(result, *fragments) -> str:
    """The refusal that names every fragment (the claim is refused, the test itself is not what failed)."""
    assert result.test_verified and not result.verified and not result.claim["precedence"], result.claim
    matching = [r for r in result.claim["refusals"] if all(f in r for f in fragments)]
    assert matching, result.claim["refusals"]
    return matching[0]


# ------------------------------------------------------------------ the honest owner
@pytest.mark.slow  # ~80 s on 2 idle cores (audited claims end to end); CI runs it, the default pytest does not
def test_an_owner_who_timestamps_at_publication_has_a_claim_a_third_party_can_check(
    loopback_hub, local_tsa, queries, benign, tmp_path
):
    key, model, audit = honest_key(queries, 1, benign)
    token = local_tsa.stamp(key.commitment())  # first the timestamp, then the publication
    owner_sha = push_to_hub(model, "owner/model", key, verification_dataset=queries, timestamp=token)
    files = loopback_hub.repo_files("owner/model", owner_sha)
    assert files["commitment.tsr"] == token
    stamp = read_timestamp(token)
    block = ModelCard(files["README.md"].decode()).data.watermark
    assert block["timestamp"] == {"file": "commitment.tsr", "tsa": stamp.tsa,
                                  "time": stamp.time.isoformat(timespec="milliseconds")}
    copy_sha = upload("someone/copy", model_files(tmp_path, model, None, queries))
    derived_sha = upload("someone/derived", model_files(tmp_path, derived_from(model), None, queries, "owner/model"))

    result = claim("someone/copy", key, queries, "owner/model", tmp_path, timestamp_ca=local_tsa.ca_file,
                   key_audit=audit)
    assert result.verified and result.claim["precedence"] and result.claim["refusals"] == [], result.claim["refusals"]
    assert result.claim["key_audit"]["passed"] and len(result.claim["key_audit"]["checked"]) == 17
    # the same evidence on a key nobody audited: the folder could hold any ingrainer, so the claim does not stand
    unaudited = claim("someone/copy", key, queries, "owner/model", tmp_path, timestamp_ca=local_tsa.ca_file)
    assert unaudited.test_verified and unaudited.claim["precedence"] and not unaudited.verified
    assert [r for r in unaudited.claim["refusals"] if r.startswith("The key was not audited")]
    check = result.claim
    assert check["endpoint"] == loopback_hub.endpoint and check["reference_commit_sha"] == owner_sha
    assert check["timestamp"]["verified"] and check["timestamp"]["commit_sha"] == owner_sha
    assert check["timestamp"]["source"] == f"RFC 3161 timestamp by {stamp.tsa} (verified against {local_tsa.ca_file})"
    assert (check["suspect_commit_sha"], check["suspect_first_sha"]) == (copy_sha, copy_sha)
    assert check["suspect_date_source"] == check["first_published_source"] == HUB_DATE_SOURCE
    assert list(check["suspect_weights"]) == ["model.safetensors"]
    assert check["suspect_weights"]["model.safetensors"].startswith("sha256:")  # the Hub's LFS sha256
    assert any("declares no base_model" in note for note in check["suspect_notes"])

    # the one printout names the endpoint, the shas and the source of each date
    report = result.summary()
    for text in (loopback_hub.endpoint, owner_sha, copy_sha, "RFC 3161 timestamp by", local_tsa.ca_file,
                 "Hub commit date, as the endpoint recorded it (a git push carries the dates its author wrote",
                 "proves nothing on its own", "ESTABLISHED"):
        assert text in report, text
    assert "REFUSED" not in report

    # a model that declares the owner's as its base dates from the owner's publication, still after the timestamp
    derived = claim("someone/derived", key, queries, "owner/model", tmp_path, timestamp_ca=local_tsa.ca_file,
                    key_audit=audit)
    lineage = derived.claim["suspect_lineage"]
    assert [(p["repo_id"], p["commit_sha"]) for p in lineage] == [("someone/derived", derived_sha),
                                                                  ("owner/model", owner_sha)]
    assert derived.claim["precedence"] and derived.claim["suspect_first_repo_id"] == "owner/model"


@pytest.mark.slow  # ~77 s on 2 idle cores (audited claims end to end); CI runs it, the default pytest does not
def test_a_suspect_dates_from_its_weights_not_from_its_repositorys_first_commit(
    loopback_hub, local_tsa, queries, benign, tmp_path
):
    key, model, audit = honest_key(queries, 2, benign)
    # an old repository (its first commit pushed in 2020), which receives the owner's weights only later
    old = loopback_hub.git_push("someone/old-repo", {"README.md": b"# placeholder\n"}, BACKDATED, force=True)
    push_to_hub(model, "owner/stamped", key, verification_dataset=queries, timestamp=local_tsa.stamp(key.commitment()))
    weights_sha = upload("someone/old-repo", model_files(tmp_path, model, None, queries))
    result = claim("someone/old-repo", key, queries, "owner/stamped", tmp_path, timestamp_ca=local_tsa.ca_file,
                   key_audit=audit)
    assert result.verified and result.claim["refusals"] == []
    assert result.claim["suspect_first_sha"] == weights_sha != old
    assert "first commit holding the tested weights, after 1 earlier commits" in result.claim["suspect_date_what"]


# ------------------------------------------------------------------ dates the claimant could write
def test_a_reference_backdated_by_a_git_push_is_refused(model, loopback_hub, local_tsa, queries, tmp_path):
    victim_sha = push_to_hub(model, "victim/model", key_of(model, queries, seed=3), verification_dataset=queries)
    thief_key = key_of(model, queries, seed=4)  # made after seeing the victim's model
    reference = loopback_hub.git_push("thief/model", model_files(tmp_path, model, thief_key, queries), BACKDATED,
                                      force=True)

    result = claim("victim/model", thief_key, queries, "thief/model", tmp_path, timestamp_ca=local_tsa.ca_file)
    reason = refused(result, "Hub commit dates alone", "git push carries the dates its author wrote",
                     "hf-ingrain timestamp")
    assert result.claim["hub_precedence"] is True  # what the Hub's dates say, and all that used to be asked
    assert result.claim["first_published_at"].startswith("2020-01-01") and reference in reason
    assert result.claim["endpoint"] == loopback_hub.endpoint and result.claim["suspect_first_sha"] == victim_sha
    assert "REFUSED       Precedence rests on Hub commit dates alone" in result.summary()

    # a genuine token from a trusted TSA, obtained now and pushed in the same 2020 disguise, dates the thief's
    # commitment to now: after the victim
    files = {"commitment.tsr": local_tsa.stamp(thief_key.commitment())}
    loopback_hub.git_push("thief/model", files, BACKDATED)
    late = claim("victim/model", thief_key, queries, "thief/model", tmp_path, timestamp_ca=local_tsa.ca_file)
    assert late.claim["timestamp"]["verified"] and late.claim["hub_precedence"]
    refused(late, "The commitment was timestamped at", "not before the suspect's first publication")


def test_a_token_obtained_after_the_suspect_appeared_is_refused(model, loopback_hub, local_tsa, queries, tmp_path):
    key = key_of(model, queries, seed=5)
    push_to_hub(model, "owner/late", key, verification_dataset=queries)  # published without a timestamp
    upload("someone/early-copy", model_files(tmp_path, model, None, queries))
    push_to_hub(model, "owner/late", key, verification_dataset=queries, timestamp=local_tsa.stamp(key.commitment()))
    result = claim("someone/early-copy", key, queries, "owner/late", tmp_path, timestamp_ca=local_tsa.ca_file)
    assert result.claim["hub_precedence"]  # the Hub dates the first card before the copy; that decides nothing
    refused(result, "timestamped at", "CN=Test TSA", "not before the suspect's first publication")


def test_a_token_of_another_commitment_or_from_an_untrusted_authority_is_refused(
    model, loopback_hub, local_tsa, untrusted_tsa, queries, tmp_path
):
    key = key_of(model, queries, seed=6)
    other = local_tsa.stamp(key_of(model, queries, seed=7).commitment())
    with pytest.raises(ValueError, match="covers another commitment"):  # the publisher refuses it before any work
        push_to_hub(model, "owner/other-token", key, verification_dataset=queries, timestamp=other)
    assert "owner/other-token" not in {repo for repo, _, _ in loopback_hub.all_file_bytes()}
    push_to_hub(model, "owner/other-token", key, verification_dataset=queries)
    HfApi().upload_file(path_or_fileobj=other, path_in_repo="commitment.tsr", repo_id="owner/other-token")
    push_to_hub(model, "owner/rogue-token", key, verification_dataset=queries,
                timestamp=untrusted_tsa.stamp(key.commitment()))  # well formed, over this commitment
    upload("someone/copy3", model_files(tmp_path, model, None, queries))

    result = claim("someone/copy3", key, queries, "owner/other-token", tmp_path, timestamp_ca=local_tsa.ca_file)
    refused(result, "establishes nothing", "covers another commitment")
    rogue = claim("someone/copy3", key, queries, "owner/rogue-token", tmp_path, timestamp_ca=local_tsa.ca_file)
    refused(rogue, "Rogue TSA", "does not verify against the CA", "unable to get local issuer certificate")
    assert "NOT verified against" in rogue.summary()
    unchecked = claim("someone/copy3", key, queries, "owner/rogue-token", tmp_path)
    refused(unchecked, "no trusted TSA CA was given")
    with pytest.raises(ValueError, match="pass `reference_repo_id` too"):
        verify_from_hub("someone/copy3", key, queries, timestamp_ca=local_tsa.ca_file)


# ------------------------------------------------------------------ the suspect's first publication
def test_a_later_reupload_of_the_victim_is_not_newer_than_the_victim(model, loopback_hub, local_tsa, queries, tmp_path):
    victim_sha = push_to_hub(model, "victim/original", key_of(model, queries, seed=8), verification_dataset=queries)
    thief_key = key_of(model, queries, seed=9)  # made after seeing the victim, and timestamped: a genuine token
    push_to_hub(model, "thief/stamped", thief_key, verification_dataset=queries,
                timestamp=local_tsa.stamp(thief_key.commitment()))
    reupload = upload("someone/reupload", model_files(tmp_path, model, None, queries, base_model="victim/original"))

    result = claim("someone/reupload", thief_key, queries, "thief/stamped", tmp_path, timestamp_ca=local_tsa.ca_file)
    check = result.claim
    own, ancestor = check["suspect_lineage"]
    assert (own["repo_id"], own["commit_sha"]) == ("someone/reupload", reupload)
    assert check["timestamp"]["verified"]  # the token is genuine, and older than the re-upload's own commit...
    assert instant(check["timestamp"]["time"]) < instant(own["date"])
    assert (ancestor["repo_id"], ancestor["commit_sha"]) == ("victim/original", victim_sha)
    assert "declared as base_model by someone/reupload" in check["suspect_date_what"]
    refused(result, "not before the suspect's first publication", f"victim/original@{victim_sha}")  # ...not the victim

    # A re-upload that hides where it came from: the Hub does not tell, and the report says so (the claim is then as
    # strong as the suspect's own dates; nothing on the Hub links the two repositories).
    upload("someone/silent-reupload", model_files(tmp_path, model, None, queries))
    silent = claim("someone/silent-reupload", thief_key, queries, "thief/stamped", tmp_path,
                   timestamp_ca=local_tsa.ca_file)
    assert any("declares no base_model" in note and "the Hub does not tell" in note
               for note in silent.claim["suspect_notes"])
    assert "lineage       someone/silent-reupload declares no base_model" in silent.summary()


@pytest.mark.slow  # ~164 s on 2 idle cores (audited claims end to end); CI runs it, the default pytest does not
def test_the_owners_flow_from_the_shell_timestamp_push_verify(loopback_hub, local_tsa, embedded_splits, benign, tmp_path,
                                                              capsys):
    key, model, _ = honest_key(embedded_splits["test"], 11, benign)  # the set `hf-ingrain verify` queries by default
    benign.save_to_disk(str(tmp_path / "owner_data"))  # the data the key was trained on, for the claim's audit
    key_dir, model_dir, token = tmp_path / "key", tmp_path / "model", tmp_path / "commitment.tsr"
    key.save(str(key_dir))
    model.save_pretrained(str(model_dir))
    with local_tsa.serve() as url:
        assert main(["timestamp", "--key", str(key_dir), "--tsa", url, "--output", str(token)]) == 0
    assert main(["push", str(model_dir), "owner/shell", "--key", str(key_dir), "--timestamp", str(token)]) == 0
    assert "Not timestamped" not in capsys.readouterr().out
    assert loopback_hub.repo_files("owner/shell")["commitment.tsr"] == token.read_bytes()
    upload("someone/shell-copy", model_files(tmp_path, model, None, embedded_splits["test"]))

    claim_args = ["verify", "someone/shell-copy", "--key", str(key_dir), "--reference", "owner/shell",
                  "--audit-data", str(tmp_path / "owner_data")]
    assert main(claim_args + ["--timestamp-ca", local_tsa.ca_file]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CLAIM STANDS") and "precedence    ESTABLISHED" in out and loopback_hub.endpoint in out
    assert "key audit     passed: 17 ingrainers re-derived" in out  # a claim audits the key on its data
    assert main(claim_args) == 1  # the same evidence, with no CA to check the token against
    out = capsys.readouterr().out
    assert out.startswith("CLAIM REFUSED") and "no trusted TSA CA was given" in out
    assert main(["verify", "someone/shell-copy", "--key", str(key_dir), "--timestamp-ca", local_tsa.ca_file]) == 2
    assert "add --reference" in capsys.readouterr().err
