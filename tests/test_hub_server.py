"""The test Hub server (tests/hub_server.py) against the real, unpatched huggingface_hub client."""

import json
import os

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hub_server import HubServer

pytestmark = pytest.mark.hub

REPO = "tester/tiny-model"


@pytest.fixture
def hub(monkeypatch, loopback_only):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with HubServer() as server:
        # conftest sets HF_HUB_OFFLINE=1; pass endpoint= explicitly everywhere (default endpoint untouched)
        server.configure_client(monkeypatch, default_endpoint=False)
        yield server
    assert server.errors == []


@pytest.fixture
def api(hub):
    return HfApi(endpoint=hub.endpoint, token="x")


def _make_folder(path, config, weights):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.safetensors").write_bytes(weights)
    (path / "sub").mkdir(exist_ok=True)
    (path / "sub" / "notes.txt").write_text("nested file")
    return path


def _read_tree(root):
    return {
        os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/"): open(os.path.join(d, f), "rb").read()
        for d, _, files in os.walk(root)
        for f in files
    }


def test_upload_folder_then_snapshot_download_round_trips(hub, api, tmp_path):
    weights = bytes(range(256)) * 40 + b"\x00\xff"
    folder = _make_folder(tmp_path / "src", {"model_type": "bert", "hidden_size": 8}, weights)

    url = api.create_repo(REPO, repo_type="model", private=True, exist_ok=True)
    assert url.repo_id == REPO and url.startswith(hub.endpoint)
    api.create_repo(REPO, private=True, exist_ok=True)  # second call: 409 swallowed by exist_ok
    info = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="upload tiny model")

    assert len(info.oid) == 40
    assert api.model_info(REPO, files_metadata=False).sha == info.oid
    model_info = api.model_info(REPO, revision=info.oid)
    assert model_info.private is True
    repo_files = [".gitattributes", "config.json", "model.safetensors", "sub/notes.txt"]  # .gitattributes: server-made
    assert sorted(s.rfilename for s in model_info.siblings) == repo_files
    assert sorted(api.list_repo_files(REPO)) == repo_files
    assert [b.target_commit for b in api.list_repo_refs(REPO).branches] == [info.oid]

    local = snapshot_download(REPO, endpoint=hub.endpoint, token="x", cache_dir=tmp_path / "cache")
    assert os.path.basename(local) == info.oid
    downloaded = _read_tree(local)
    assert {k: v for k, v in downloaded.items() if k != ".gitattributes"} == _read_tree(folder)

    only_json = snapshot_download(
        REPO, revision=info.oid, allow_patterns=["*.json"], endpoint=hub.endpoint, token="x", cache_dir=tmp_path / "c2"
    )
    assert set(_read_tree(only_json)) == {"config.json"}

    # every byte the client uploaded is visible to the test
    uploaded = {(repo, path): data for repo, path, data in hub.all_file_bytes()}
    assert uploaded[(REPO, "model.safetensors")] == weights
    samples = [data for _, path, data in hub.uploaded_bytes() if path == "model.safetensors" and data != weights]
    assert samples and all(weights.startswith(sample) for sample in samples)  # preupload samples are file prefixes


def test_older_revision_stays_downloadable(hub, api, tmp_path):
    api.create_repo(REPO, exist_ok=True)
    first = api.upload_file(path_or_fileobj=b'{"v": 1}', path_in_repo="config.json", repo_id=REPO)
    second = api.upload_file(path_or_fileobj=b'{"v": 2}', path_in_repo="config.json", repo_id=REPO)
    assert first.oid != second.oid
    assert hub.commits(REPO)[:2] == [second.oid, first.oid]

    old = hf_hub_download(REPO, "config.json", revision=first.oid, endpoint=hub.endpoint, cache_dir=tmp_path)
    new = hf_hub_download(REPO, "config.json", endpoint=hub.endpoint, cache_dir=tmp_path)
    assert open(old, "rb").read() == b'{"v": 1}'
    assert open(new, "rb").read() == b'{"v": 2}'
    assert f"snapshots/{second.oid}/" in new.replace(os.sep, "/")

    # unchanged content is skipped client-side (preupload returns the remote oid), like on the real Hub
    same = api.upload_file(path_or_fileobj=b'{"v": 2}', path_in_repo="config.json", repo_id=REPO)
    assert same.oid == second.oid

    # deletion through create_commit, and the previous commit still serves the file
    from huggingface_hub import CommitOperationDelete

    third = api.create_commit(REPO, [CommitOperationDelete("config.json")], commit_message="rm")
    assert hub.repo_files(REPO, third.oid).keys() == {".gitattributes"}
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "config.json", endpoint=hub.endpoint, cache_dir=tmp_path / "c2", force_download=True)
    assert hub.repo_files(REPO, second.oid)["config.json"] == b'{"v": 2}'


def test_errors_map_to_client_exceptions(hub, api, tmp_path):
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("tester/missing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("tester/missing", "config.json", endpoint=hub.endpoint, cache_dir=tmp_path)
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("tester/missing", endpoint=hub.endpoint, cache_dir=tmp_path)

    api.create_repo(REPO)
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=REPO)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="f" * 40, endpoint=hub.endpoint, cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(REPO, revision="no-such-branch", endpoint=hub.endpoint, cache_dir=tmp_path)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.bin", endpoint=hub.endpoint, cache_dir=tmp_path)


def test_private_repo_needs_a_token_and_whoami(hub, api, tmp_path):
    assert api.whoami()["name"] == "tester"
    api.create_repo("tester/secret", private=True)
    api.upload_file(path_or_fileobj=b"hidden", path_in_repo="a.txt", repo_id="tester/secret")
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.endpoint, token=False).model_info("tester/secret")
    path = hf_hub_download("tester/secret", "a.txt", endpoint=hub.endpoint, token="any", cache_dir=tmp_path)
    assert open(path, "rb").read() == b"hidden"


def test_configure_client_points_default_endpoint_here(hub, api, monkeypatch, tmp_path):
    api.create_repo(REPO)
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="dir/x.txt", repo_id=REPO)
    hub.configure_client(monkeypatch)
    path = hf_hub_download(REPO, "dir/x.txt", cache_dir=tmp_path)  # no endpoint= argument
    assert open(path, "rb").read() == b"hello"
    assert HfApi(token="x").file_exists(REPO, "dir/x.txt")


def test_server_stops_cleanly(monkeypatch, loopback_only):
    import httpx2  # the client's HTTP library: a stopped server refuses connections

    server = HubServer().start()
    server.configure_client(monkeypatch, default_endpoint=False)
    root, endpoint = server.root, server.endpoint
    assert endpoint.startswith("http://127.0.0.1:")
    assert HfApi(endpoint=endpoint, token="x").whoami()["name"] == "tester"
    server.stop()
    assert not root.exists()
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(endpoint + "/api/whoami-v2", timeout=2)
