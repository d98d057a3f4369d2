"""An in-memory stand-in for the Hugging Face Hub *server*, patched in at the network boundary.

Only the `HfApi` methods that talk to the server are replaced (create_repo, repo_info, preupload_lfs_files,
create_commit, list_repo_tree, hf_hub_download). Like the server, ``create_commit`` refuses a README.md whose
metadata does not parse (checked with huggingface_hub's card classes). Everything above them (``upload_file``,
``Dataset.push_to_hub``, ``Trainer.init_hf_repo``, ser-hf's own code) runs for real. What they upload is kept
as bytes per repository, so tests assert on exactly what the Hub would have received, and can lay it out as
a Hub download cache to load it back offline.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import huggingface_hub.hf_api
from huggingface_hub import (
    CommitInfo,
    CommitOperationAdd,
    CommitOperationDelete,
    DatasetCard,
    HfApi,
    ModelCard,
    RepoUrl,
)
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

try:  # the HTTP client huggingface_hub is built on (its errors carry a response)
    import httpx2 as _http
except ImportError:  # pragma: no cover - older huggingface_hub
    import httpx as _http

USER = "someone"  # the account a bare repository name lands in


@dataclass
class Commit:
    repo_type: str
    repo_id: str
    message: str
    oid: str
    added: dict[str, bytes] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)


def _read(source: Any) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, (str, Path)):
        return Path(source).read_bytes()
    if isinstance(source, io.IOBase):
        source.seek(0)
        return source.read()
    raise TypeError(f"cannot read {type(source)}")


class FakeHub:
    def __init__(self, tmp_path: Path):
        self.files: dict[tuple[str, str], dict[str, bytes]] = {}
        self.commits: list[Commit] = []
        self.created: list[dict[str, Any]] = []
        self._preuploaded: dict[int, bytes] = {}
        self.validated: list[str] = []  # repo types of the READMEs whose metadata was checked before upload
        self._downloads = tmp_path / "fake-hub-downloads"

    # ------------------------------------------------------------- helpers for tests
    def commits_to(self, repo_id: str, repo_type: str = "model") -> list[Commit]:
        return [c for c in self.commits if c.repo_id == repo_id and c.repo_type == repo_type]

    def repo(self, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
        return self.files[(repo_type, repo_id)]

    def write_repo(self, repo_id: str, folder: Path, repo_type: str = "model") -> Path:
        """The repository's files, as a plain folder (what a clone would hold)."""
        for name, data in self.repo(repo_id, repo_type).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        return folder

    def write_cache(self, repo_id: str, cache_dir: Path, repo_type: str = "model") -> Path:
        """Lay the repository out like huggingface_hub's download cache (refs/main → snapshots/<commit>)."""
        head = self.commits_to(repo_id, repo_type)[-1].oid
        root = cache_dir / f"{repo_type}s--{repo_id.replace('/', '--')}"
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text(head)
        return self.write_repo(repo_id, root / "snapshots" / head, repo_type)

    # -------------------------------------------------------- the patched server calls
    def _full_id(self, repo_id: str) -> str:
        return repo_id if "/" in repo_id else f"{USER}/{repo_id}"

    def _url(self, repo_id: str, repo_type: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"https://huggingface.co/{prefix}{repo_id}"

    def create_repo(self, api: HfApi, repo_id: str, *, token=None, private=None, repo_type=None, exist_ok=False, **_):
        repo_type = repo_type or "model"
        repo_id = self._full_id(repo_id)
        self.created.append(
            {"repo_id": repo_id, "repo_type": repo_type, "private": private, "token": token or api.token}
        )
        if (repo_type, repo_id) in self.files and not exist_ok:
            raise AssertionError(f"{repo_id} exists")
        self.files.setdefault((repo_type, repo_id), {})
        return RepoUrl(self._url(repo_id, repo_type))

    def repo_info(self, api: HfApi, repo_id: str, *, repo_type=None, revision=None, **_):
        repo_type = repo_type or "model"
        if (repo_type, repo_id) not in self.files:
            url = f"https://huggingface.co/api/{repo_type}s/{repo_id}"
            response = _http.Response(404, request=_http.Request("GET", url))
            raise RepositoryNotFoundError(f"Repository Not Found for url: {url}", response=response)
        commits = self.commits_to(repo_id, repo_type)
        return type("RepoInfo", (), {"id": repo_id, "sha": commits[-1].oid if commits else "0" * 40})()

    def preupload_lfs_files(self, api: HfApi, repo_id: str, additions, **_):
        for addition in additions:  # the bytes leave the machine here; the local file may be deleted next
            self._preuploaded[id(addition)] = _read(addition.path_or_fileobj)

    def create_commit(self, api: HfApi, repo_id: str, operations, *, commit_message: str, repo_type=None, **_):
        repo_type = repo_type or "model"
        repo_id = self._full_id(repo_id)
        files = self.files.setdefault((repo_type, repo_id), {})
        oid = hashlib.sha1(f"{repo_id}{len(self.commits)}".encode()).hexdigest()
        commit = Commit(repo_type, repo_id, commit_message, oid)
        for operation in operations:
            if isinstance(operation, CommitOperationAdd):
                data = self._preuploaded.pop(id(operation), None)
                commit.added[operation.path_in_repo] = data if data is not None else _read(operation.path_or_fileobj)
            elif isinstance(operation, CommitOperationDelete):
                commit.deleted.append(operation.path_in_repo)
                files.pop(operation.path_in_repo, None)
        if "README.md" in commit.added:  # the Hub validates a card's metadata before accepting the commit
            card_class = DatasetCard if repo_type == "dataset" else ModelCard
            card_class(commit.added["README.md"].decode("utf-8"), ignore_metadata_errors=False)
            self.validated.append(repo_type)
        files.update(commit.added)
        self.commits.append(commit)
        return CommitInfo(
            commit_url=f"{self._url(repo_id, repo_type)}/commit/{oid}",
            commit_message=commit_message,
            commit_description="",
            oid=oid,
            pr_url=None,
        )

    def list_repo_tree(self, api: HfApi, repo_id: str, path_in_repo=None, *, repo_type=None, **_):
        files = self.files.get((repo_type or "model", repo_id), {})
        prefix = f"{path_in_repo.strip('/')}/" if path_in_repo else ""
        if any(name.startswith(prefix) for name in files):
            raise NotImplementedError("FakeHub lists only empty repositories (tests push once per repository)")
        raise EntryNotFoundError(f"{repo_id}: no {path_in_repo!r}")

    def hf_hub_download(self, api: HfApi, repo_id: str, filename: str, *, repo_type=None, **_):
        files = self.files.get((repo_type or "model", repo_id), {})
        if filename not in files:
            raise EntryNotFoundError(f"{repo_id}: no {filename}")
        path = self._downloads / (repo_type or "model") / repo_id / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[filename])
        return str(path)

    def install(self, monkeypatch) -> FakeHub:
        names = (
            "create_repo",
            "repo_info",
            "preupload_lfs_files",
            "create_commit",
            "list_repo_tree",
            "hf_hub_download",
        )
        for name in names:
            method = getattr(self, name)
            monkeypatch.setattr(HfApi, name, lambda api, *a, _m=method, **k: _m(api, *a, **k))
        # upload_folder's hf_xet pipeline talks to the server below create_commit; its other (documented,
        # hf_xet-less) path commits through create_commit, so every upload_folder lands in this fake too.
        monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: False)
        return self
