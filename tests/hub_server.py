"""A small, self-contained Hugging Face Hub-compatible HTTP server for tests (stdlib only).

The real ``huggingface_hub`` client talks to it unpatched: pass ``endpoint=server.endpoint`` to ``HfApi``,
``hf_hub_download`` and ``snapshot_download`` (or call ``server.configure_client(monkeypatch)`` for code that
does not take an endpoint, e.g. ``transformers``' ``from_pretrained``). It binds 127.0.0.1 on a free port,
accepts any token (or none), keeps blobs in a temporary folder and the git-like history in memory.

Endpoints (``{type}`` is ``model``, ``dataset``, ``space`` or ``kernel``; repo ids are ``namespace/name``):

    GET    /api/whoami-v2                                     fake user "tester"
    POST   /api/repos/create
    POST   /api/validate-yaml                                 always valid
    GET    /api/{type}s/{repo_id}[/revision/{rev}]            repo info: sha, siblings (+ sizes with ?blobs=true)
    GET    /api/{type}s/{repo_id}/tree/{rev}[/{path}]         ?recursive=true, one page, no Link header
    POST   /api/{type}s/{repo_id}/paths-info/{rev}
    GET    /api/{type}s/{repo_id}/refs                        branches only
    GET    /api/{type}s/{repo_id}/commits/{rev}
    POST   /api/{type}s/{repo_id}/preupload/{rev}             every file is "regular" (no LFS, no Xet)
    POST   /api/{type}s/{repo_id}/commit/{rev}                NDJSON: header, file (base64), deletedFile/Folder
    HEAD/GET /[{type}s/]{repo_id}/resolve/{rev}/{path}        ETag, X-Repo-Commit, Content-Length; no redirect

Revisions are ``main`` (the only branch) and full 40-hex commit shas;
every commit stays downloadable. Files are uploaded as regular files, but those the repository's ``.gitattributes``
sends to LFS (``*.safetensors``, ``*.bin``) are described as the Hub describes them, with ``lfs: {oid: <sha256>}`` in
tree and paths-info entries (``lfs: {sha256}`` in ``?blobs=true`` siblings). ``git_push`` makes a commit dated by
its author, as a ``git push`` does (commits through the API are dated by the server). Errors carry the ``X-Error-Code`` header the client maps to its exceptions:
``RepoNotFound`` (404; 401 for a private repo without a token), ``RevisionNotFound``, ``EntryNotFound``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import itertools
import json
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

USER = "tester"
REPO_TYPES = ("model", "dataset", "space", "kernel")
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
LFS_SUFFIXES = (".safetensors", ".bin")  # what GITATTRIBUTES sends to LFS


def git_blob_oid(data: bytes) -> str:
    """The git sha1 of a blob: what the Hub returns as ETag / oid of a regular (non-LFS) file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


@dataclass
class Commit:
    sha: str
    parent: str | None
    title: str
    message: str
    date: str
    files: dict[str, str]  # path -> blob oid


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: str
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch -> commit sha


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    hub: "HubServer"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    timeout = 30  # an idle keep-alive connection closes itself
    server: _HTTPServer

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass

    def setup(self):
        super().setup()
        self.server.hub._connections.add(self.connection)

    def finish(self):
        self.server.hub._connections.discard(self.connection)
        super().finish()

    def _read_body(self) -> bytes:  # the client always sends Content-Length (no chunked bodies)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body

    def _handle(self) -> None:
        hub, method = self.server.hub, self.command
        try:
            status, headers, payload = hub._dispatch(method, self.path, self.headers, self._read_body())
        except HubError as e:
            status, headers = e.status, {"Content-Type": "application/json", **e.headers}
            if e.code:
                headers["X-Error-Code"] = e.code
            headers["X-Error-Message"] = e.message.encode("ascii", "replace").decode()
            payload = json.dumps({"error": e.message}).encode()
        except Exception as e:  # a bug in this server: report it loudly to the test and the client
            hub.errors.append(f"{method} {self.path}: {e!r}")
            status, headers, payload = _json({"error": repr(e)}, 500)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_POST = do_DELETE = _handle


def _json(data, status: int = 200, headers: dict | None = None):
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(data).encode()


class HubServer:
    """Hub-compatible server on ``127.0.0.1:<free port>``; use as a context manager or ``start()``/``stop()``.

    Nothing global is changed by ``start()``; ``configure_client(monkeypatch)`` is the opt-in for that.
    """

    def __init__(self, root: str | Path | None = None, *, initial_gitattributes: bool = True, user: str = USER):
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="hub_server_") if root is None else root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self.user = user
        self.initial_gitattributes = initial_gitattributes
        self.endpoint: str | None = None
        self.port: int | None = None
        self.errors: list[str] = []  # unexpected server-side exceptions (a test may assert it stays empty)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self._repos: dict[tuple[str, str], Repo] = {}
        self._sizes: dict[str, int] = {}  # blob oid -> size
        self._sha256: dict[str, str] = {}  # blob oid -> sha256 of the content (an LFS file's oid)
        self._uploads: list[tuple[str, str, str]] = []  # (repo_id, path, oid) of every committed file
        self._samples: list[tuple[str, str, bytes]] = []  # preupload samples (first bytes of each file)
        self._lock = threading.RLock()
        self._counter = itertools.count()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle and public helpers
    def start(self) -> "HubServer":
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.hub = self
        self.port = self._httpd.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        serve = lambda: self._httpd.serve_forever(poll_interval=0.05)  # noqa: E731 - quick shutdown()
        self._thread = threading.Thread(target=serve, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            for conn in list(self._connections):  # wake handler threads parked on keep-alive connections
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = self._thread = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def configure_client(self, monkeypatch, *, default_endpoint: bool = True) -> None:
        """Let the client reach this server for one test (all undone by ``monkeypatch``).

        ``huggingface_hub.constants`` reads the environment once, at import time, so the constants are patched:
        offline mode off (``HF_HUB_OFFLINE``), telemetry off (with it on, building the user agent fetches an
        "agent harnesses" list from ``constants.ENDPOINT``) and, with ``default_endpoint``, this server as the
        endpoint of code that takes no ``endpoint=`` (``ENDPOINT``, ``HUGGINGFACE_CO_URL_TEMPLATE``).
        """
        from huggingface_hub import constants

        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
        if default_endpoint:
            template = self.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
            monkeypatch.setenv("HF_ENDPOINT", self.endpoint)
            monkeypatch.setattr(constants, "ENDPOINT", self.endpoint)
            monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)

    def all_file_bytes(self) -> Iterator[tuple[str, str, bytes]]:
        """(repo_id, path, content) of every file ever committed, in order (server-made .gitattributes excluded)."""
        for repo_id, path, oid in list(self._uploads):
            yield repo_id, path, self._blob(oid)

    def uploaded_bytes(self) -> Iterator[tuple[str, str, bytes]]:
        """Every file content the client sent: committed files plus the preupload samples (file prefixes)."""
        yield from self.all_file_bytes()
        yield from list(self._samples)

    def repo_files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        with self._lock:
            files = self._resolve(self._repos[(repo_type, repo_id)], revision).files
        return {path: self._blob(oid) for path, oid in files.items()}

    def git_push(self, repo_id: str, files: dict[str, bytes], date: str, *, title: str = "git push",
                 force: bool = False, repo_type: str = "model") -> str:
        """A commit on ``main`` as ``git push`` makes it: dated by its author (``date``, ISO 8601 such as
        ``"2020-01-01T00:00:00.000Z"``), not by the Hub. ``files`` are added to the head's; with ``force`` they, and
        ``.gitattributes``, are the whole history (a force-push of one commit). The repository is created (public) if
        missing. Returns the commit sha."""
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
            if repo is None:
                repo = self._repos[(repo_type, repo_id)] = Repo(repo_type, repo_id, False, date)
            base = {} if force or "main" not in repo.refs else dict(repo.commits[repo.refs["main"]].files)
            if force:
                repo.refs.pop("main", None)
                base[".gitattributes"] = self._store(GITATTRIBUTES)
            for path, data in files.items():
                base[path] = self._store(data)
                self._uploads.append((repo_id, path, base[path]))
            return self._commit(repo, "main", base, title, date=date).sha

    def commits(self, repo_id: str, repo_type: str = "model") -> list[str]:
        """Commit shas of ``main``, newest first."""
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            return [c.sha for c in self._history(repo, repo.commits[repo.refs["main"]])]

    # ------------------------------------------------------------------ storage
    def _blob(self, oid: str) -> bytes:
        return (self.root / "blobs" / oid).read_bytes()

    def _store(self, data: bytes) -> str:
        oid = git_blob_oid(data)
        path = self.root / "blobs" / oid
        if not path.exists():
            path.write_bytes(data)
        self._sizes[oid] = len(data)
        self._sha256[oid] = hashlib.sha256(data).hexdigest()
        return oid

    def _commit(self, repo: Repo, branch: str, files: dict[str, str], title: str, message: str = "",
                date: str | None = None) -> Commit:
        parent = repo.refs.get(branch)
        seed = json.dumps([repo.repo_id, parent, title, sorted(files.items()), next(self._counter), _now()])
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent, title, message, date or _now(), files)
        repo.commits[commit.sha] = commit
        repo.refs[branch] = commit.sha
        return commit

    def _history(self, repo: Repo, commit: Commit) -> list[Commit]:
        out = [commit]
        while out[-1].parent:
            out.append(repo.commits[out[-1].parent])
        return out

    def _repo(self, repo_type: str, repo_id: str, req_headers) -> Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        if repo.private and not req_headers.get("Authorization"):
            raise HubError(401, "Invalid username or password.", "RepoNotFound")
        return repo

    def _resolve(self, repo: Repo, revision: str) -> Commit:
        revision = revision.removeprefix("refs/heads/")
        sha = repo.refs.get(revision) or (revision if revision in repo.commits else None)
        if sha is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[sha]

    def _url(self, repo: Repo) -> str:
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return f"{self.endpoint}/{prefix}{repo.repo_id}"

    def _file_entry(self, path: str, oid: str) -> dict:
        entry = {"type": "file", "oid": oid, "size": self._sizes[oid], "path": path}
        if path.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": self._sha256[oid], "size": self._sizes[oid], "pointerSize": 134}
        return entry

    @staticmethod
    def _dir_entry(path: str) -> dict:
        return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}

    # ------------------------------------------------------------------ routing
    def _dispatch(self, method: str, raw_path: str, req_headers, body: bytes):
        url = urlsplit(raw_path)
        segs = [unquote(s) for s in url.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self._lock:
            self.requests.append((method, url.path))
            if segs[:1] == ["api"]:
                return self._api(method, segs[1:], query, req_headers, body)
            repo_type = "model"
            if segs and segs[0].endswith("s") and segs[0][:-1] in REPO_TYPES:
                repo_type, segs = segs[0][:-1], segs[1:]
            if len(segs) >= 5 and segs[2] == "resolve" and method in ("GET", "HEAD"):
                repo = self._repo(repo_type, "/".join(segs[:2]), req_headers)
                return self._resolve_file(repo, segs[3], "/".join(segs[4:]))
        raise HubError(404, f"Not found: {method} {url.path}")

    def _resolve_file(self, repo: Repo, revision: str, path: str):
        commit = self._resolve(repo, revision)
        if path not in commit.files:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        oid = commit.files[path]
        data = self._blob(oid)  # a HEAD gets the same headers (Content-Length included) without the body
        headers = {"ETag": f'"{oid}"', "X-Repo-Commit": commit.sha, "Content-Type": "application/octet-stream"}
        return 200, headers, data  # no Range support: the client only asks for ranges to resume a broken download

    def _api(self, method: str, segs: list[str], query: dict, req_headers, body: bytes):
        if segs == ["whoami-v2"]:
            if not req_headers.get("Authorization"):
                raise HubError(401, "Invalid credentials in Authorization header")
            return _json({"type": "user", "id": "0" * 24, "name": self.user, "fullname": "Test User",
                          "email": f"{self.user}@example.com", "emailVerified": True, "isPro": False, "orgs": [],
                          "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}})
        if segs == ["validate-yaml"] and method == "POST":
            return _json({"errors": [], "warnings": []})
        if segs[:1] == ["repos"] and len(segs) == 2:
            return self._repos_api(method, segs[1], json.loads(body or b"{}"))
        if len(segs) >= 3 and segs[0].endswith("s") and segs[0][:-1] in REPO_TYPES:
            repo = self._repo(segs[0][:-1], "/".join(segs[1:3]), req_headers)
            return self._repo_api(method, repo, segs[3:], query, body)
        raise HubError(404, f"Not found: {method} /api/{'/'.join(segs)}")

    def _repos_api(self, method: str, action: str, payload: dict):
        if action != "create" or method != "POST":
            raise HubError(404, f"Not found: {method} /api/repos/{action}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.user}/{payload['name']}"
        if (repo_type, repo_id) in self._repos:
            repo = self._repos[(repo_type, repo_id)]
            return _json({"error": "You already created this repo", "url": self._url(repo)}, 409)
        repo = Repo(repo_type, repo_id, payload.get("visibility", "public") == "private", _now())
        self._repos[(repo_type, repo_id)] = repo
        files = {".gitattributes": self._store(GITATTRIBUTES)} if self.initial_gitattributes else {}
        self._commit(repo, "main", files, "initial commit")
        return _json({"url": self._url(repo), "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]})

    def _repo_api(self, method: str, repo: Repo, segs: list[str], query: dict, body: bytes):
        action, rest = (segs[0], segs[1:]) if segs else ("revision", ["main"])
        if method == "GET" and action == "revision" and len(rest) == 1:
            return self._info(repo, self._resolve(repo, rest[0]), query.get("blobs", "").lower() in ("1", "true"))
        if method == "GET" and action == "tree" and rest:
            commit = self._resolve(repo, rest[0])
            recursive = query.get("recursive", "").lower() in ("1", "true")
            return _json(self._tree(commit.files, "/".join(rest[1:]).strip("/"), recursive))
        if method == "POST" and action == "paths-info" and len(rest) == 1:
            files, paths = self._resolve(repo, rest[0]).files, parse_qs(body.decode()).get("paths", [])
            paths = [p.strip("/") for p in paths]
            return _json([self._file_entry(p, files[p]) if p in files else self._dir_entry(p)
                          for p in paths if p in files or any(f.startswith(p + "/") for f in files)])
        if method == "GET" and action == "refs":
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha} for b, sha in repo.refs.items()]
            return _json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})
        if method == "GET" and action == "commits" and len(rest) == 1:
            return _json([{"id": c.sha, "title": c.title, "message": c.message, "date": c.date,
                           "authors": [{"user": self.user, "avatar": ""}]}
                          for c in self._history(repo, self._resolve(repo, rest[0]))])
        if method == "POST" and action == "preupload" and len(rest) == 1:
            files = self._resolve(repo, rest[0]).files
            out = []
            for f in json.loads(body)["files"]:
                self._samples.append((repo.repo_id, f["path"], base64.b64decode(f.get("sample", ""))))
                out.append({"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                            "oid": files.get(f["path"])})  # a known oid lets the client skip unchanged files
            return _json({"files": out, "commitOid": self._resolve(repo, rest[0]).sha})
        if method == "POST" and action == "commit" and len(rest) == 1:
            return self._commit_api(repo, rest[0], query, body)
        raise HubError(404, f"Not found: {method} {action}/{'/'.join(rest)}")

    def _info(self, repo: Repo, commit: Commit, blobs: bool):
        siblings = [{"rfilename": p} for p in sorted(commit.files)]
        if blobs:
            for s in siblings:
                oid = commit.files[s["rfilename"]]
                s.update(size=self._sizes[oid], blobId=oid)
                if s["rfilename"].endswith(LFS_SUFFIXES):
                    s["lfs"] = {"sha256": self._sha256[oid], "size": self._sizes[oid], "pointerSize": 134}
        return _json({"_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
                      "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit.sha,
                      "lastModified": commit.date, "createdAt": repo.created, "private": repo.private,
                      "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                      "siblings": siblings, "usedStorage": sum(self._sizes[o] for o in commit.files.values())})

    def _tree(self, files: dict[str, str], base: str, recursive: bool) -> list[dict]:
        prefix = base + "/" if base else ""
        if base and not any(p.startswith(prefix) for p in files):
            raise HubError(404, f"Entry not found: {base}", "EntryNotFound")
        entries: dict[str, dict] = {}
        for path in sorted(files):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            for i in range(1, len(parts) if recursive else min(2, len(parts))):
                entries.setdefault(prefix + "/".join(parts[:i]), self._dir_entry(prefix + "/".join(parts[:i])))
            if recursive or len(parts) == 1:
                entries[path] = self._file_entry(path, files[path])
        return list(entries.values())

    def _commit_api(self, repo: Repo, revision: str, query: dict, body: bytes):
        if query.get("create_pr") in ("1", "true", "True"):
            raise HubError(400, "Pull requests are not supported by this test server")
        branch = revision.removeprefix("refs/heads/")
        if branch not in repo.refs:
            if revision in repo.commits:
                raise HubError(400, f"Cannot commit to a commit sha, use a branch: {revision}")
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        files = dict(repo.commits[repo.refs[branch]].files)
        header, added = {}, []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            path = value.get("path", "").strip("/")
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"Unsupported encoding {value.get('encoding')!r} for {path}")
                files[path] = self._store(base64.b64decode(value["content"]))
                added.append((repo.repo_id, path, files[path]))
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            elif key == "deletedFolder":
                gone = [p for p in files if p.startswith(path + "/")]
                if not gone:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in gone:
                    del files[p]
            elif key == "lfsFile":
                raise HubError(400, f"LFS files are not supported by this test server ({path}); upload as regular")
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        parent = header.get("parentCommit")
        if parent and parent != repo.refs[branch]:
            raise HubError(412, f"Parent commit {parent} is not the head of {branch}")
        commit = self._commit(repo, branch, files, header.get("summary", ""), header.get("description", ""))
        self._uploads.extend(added)
        return _json({"success": True, "commitOid": commit.sha, "commitUrl": f"{self._url(repo)}/commit/{commit.sha}",
                      "hookOutput": "", "pullRequestUrl": None})
