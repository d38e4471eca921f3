"""A small Hugging Face Hub on 127.0.0.1 for the remote-scan tests: the endpoints huggingface_hub calls.

Two servers: the "Hub" (API, ``resolve``) and a "CDN" that large (LFS) files redirect to, as the real
Hub does. Both count requests and body bytes, and record the Authorization headers they saw, so tests
can check what a scan transferred and that the token never reaches the CDN. Behaviour switches
(gated, rate limited, range ignored, a file changed between reads) are plain attributes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

LFS_THRESHOLD = 1024
"""Files at least this large are LFS files: ``resolve`` redirects them to the CDN."""


@dataclass
class Repo:
    files: dict[str, bytes]
    sha: str = field(default_factory=lambda: secrets.token_hex(20))
    """Each repo its own commit, as on the Hub (a client's cache is keyed by it)."""
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False

    def __post_init__(self) -> None:
        self.refs.setdefault("main", self.sha)


@dataclass
class Traffic:
    requests: int = 0
    bytes: int = 0
    api_bytes: int = 0
    """Of ``bytes``, those of API answers (repo info, tree listing) rather than file contents."""
    authorizations: list[str | None] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    active: int = 0
    peak: int = 0
    """The most requests this server was answering at one time."""


class FakeHub:
    """State shared by both servers; tests change the switches between calls."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.token = "hf_test_token"
        self.hub = Traffic()
        self.cdn = Traffic()
        self.rate_limited = False
        self.ignore_range = False
        self.short_body = False
        self.change_after: tuple[str, int] | None = None
        """(file, n): after n reads of that file, its bytes change (another commit under the same name)."""
        self.page_size = 2
        self.delay = 0.0
        """Seconds each request waits before its answer (a network's round trip), so concurrency shows."""
        self.link_epoch = 0
        """The CDN addresses ``resolve`` hands out carry it; :meth:`expire_links` makes the old ones 403."""
        self.hub_url = ""
        self.cdn_url = ""
        self._reads: dict[str, int] = {}
        self._lock = threading.Lock()

    def add_folder(self, repo_id: str, folder: Path, **kwargs: Any) -> Repo:
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        repo = Repo(files, **kwargs)
        self.repos[repo_id] = repo
        return repo

    def expire_links(self) -> None:
        """Every CDN address handed out so far stops working (the real CDN's signed URLs expire)."""
        self.link_epoch += 1

    def note_read(self, name: str, data: bytes) -> bytes:
        """Count a read of ``name``; once it is due to change, the same number of other bytes."""
        with self._lock:
            self._reads[name] = self._reads.get(name, 0) + 1
            if self.change_after and self.change_after[0] == name and self._reads[name] > self.change_after[1]:
                return data[::-1]
        return data


@functools.lru_cache(maxsize=1024)
def _etag(data: bytes) -> str:
    """Once per file's bytes (a bytes object caches its own hash): the server's cost is not the benchmark's."""
    return '"' + hashlib.sha256(data).hexdigest() + '"'


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    traffic: Traffic
    is_cdn: bool

    def log_message(self, *args: object) -> None:
        return

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.traffic.statuses.append(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            self.traffic.bytes += len(body)
            if self.path.startswith("/api/"):
                self.traffic.api_bytes += len(body)

    def _error(self, status: int, code: str | None = None, extra: dict[str, str] | None = None) -> None:
        headers = {"Content-Type": "application/json", **(extra or {})}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps({"error": code or str(status)}).encode(), headers)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        with self.hub._lock:
            self.traffic.active += 1
            self.traffic.peak = max(self.traffic.peak, self.traffic.active)
        try:
            if self.hub.delay:
                time.sleep(self.hub.delay)
            self._get()
        finally:
            with self.hub._lock:
                self.traffic.active -= 1

    def _get(self) -> None:
        self.traffic.requests += 1
        self.traffic.authorizations.append(self.headers.get("Authorization"))
        self.traffic.paths.append(self.path)
        if self.hub.rate_limited and not self.is_cdn:
            return self._error(429, None, {"Retry-After": "17"})
        url = urlparse(self.path)
        path = unquote(url.path)
        if self.is_cdn:
            if parse_qs(url.query).get("expires") != [str(self.hub.link_epoch)]:
                return self._error(403, None)
            org, name, _sha, file = [*path.lstrip("/").split("/", 3), "", "", "", ""][:4]
            return self._file(f"{org}/{name}", file)
        if m := re.fullmatch(r"/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>.+))?", path):
            return self._info(m["repo"], m["rev"] or "main")
        if m := re.fullmatch(r"/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)/?", path):
            return self._tree(m["repo"], m["rev"], parse_qs(url.query))
        if m := re.fullmatch(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path):
            return self._resolve(m["repo"], m["rev"], m["file"])
        return self._error(404)

    def _repo(self, repo_id: str, revision: str) -> tuple[Repo, str] | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(401 if not self.headers.get("Authorization") else 404, "RepoNotFound")
            return None
        if repo.gated and self.headers.get("Authorization") != f"Bearer {self.hub.token}":
            self._error(401 if not self.headers.get("Authorization") else 403, "GatedRepo")
            return None
        sha = repo.refs.get(revision, revision if revision == repo.sha else None)
        if sha is None:
            self._error(404, "RevisionNotFound")
            return None
        return repo, sha

    def _info(self, repo_id: str, revision: str) -> None:
        found = self._repo(repo_id, revision)
        if found is None:
            return
        repo, sha = found
        body = {"id": repo_id, "modelId": repo_id, "sha": sha, "siblings": [{"rfilename": n} for n in repo.files]}
        self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _tree(self, repo_id: str, revision: str, query: dict[str, list[str]]) -> None:
        found = self._repo(repo_id, revision)
        if found is None:
            return
        repo, sha = found
        entries = []
        for name, data in sorted(repo.files.items()):
            entry: dict[str, Any] = {"type": "file", "path": name, "size": len(data), "oid": _etag(data)[1:41]}
            if len(data) >= LFS_THRESHOLD:
                entry["lfs"] = {"oid": _etag(data)[1:-1], "size": len(data), "pointerSize": 134}
            entries.append(entry)
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start : start + self.hub.page_size]
        headers = {"Content-Type": "application/json"}
        if start + self.hub.page_size < len(entries):
            nxt = f"{self.hub.hub_url}/api/models/{repo_id}/tree/{sha}?cursor={start + self.hub.page_size}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        self._send(200, json.dumps(page).encode(), headers)

    def _resolve(self, repo_id: str, revision: str, name: str) -> None:
        found = self._repo(repo_id, revision)
        if found is None:
            return None
        repo, sha = found
        data = repo.files.get(name)
        if data is None:
            return self._error(404, "EntryNotFound", {"X-Repo-Commit": sha})
        common = {"X-Repo-Commit": sha, "ETag": _etag(data)}
        if len(data) >= LFS_THRESHOLD:
            common |= {"X-Linked-Size": str(len(data)), "X-Linked-Etag": _etag(data)}
            location = f"{self.hub.cdn_url}/{repo_id}/{sha}/{name}?expires={self.hub.link_epoch}"
            return self._send(302, b"", {**common, "Location": location})
        return self._file(repo_id, name, headers=common)

    def _file(self, repo_id: str, name: str, headers: dict[str, str] | None = None) -> None:
        repo = self.hub.repos.get(repo_id)
        data = repo.files.get(name) if repo else None
        if data is None:
            return self._error(404)
        if self.command == "GET":
            data = self.hub.note_read(name, data)
        headers = {**(headers or {}), "ETag": _etag(data), "Accept-Ranges": "bytes"}
        wanted = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted or "")
        if_range = self.headers.get("If-Range")
        if m is None or self.hub.ignore_range or (if_range is not None and if_range != headers["ETag"]):
            return self._send(200, data, headers)
        start = int(m[1])
        end = min(int(m[2]) if m[2] else len(data) - 1, len(data) - 1)
        if start >= len(data):
            return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
        body = data[start : end + 1]
        if self.hub.short_body:
            body = body[: len(body) // 2]
            end = start + len(body) - 1
        return self._send(206, body, {**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"})


@contextmanager
def serve() -> Iterator[FakeHub]:
    """Start the Hub and its CDN on 127.0.0.1 (free ports); stop both on exit."""
    state = FakeHub()
    servers = []
    for is_cdn, traffic in ((False, state.hub), (True, state.cdn)):
        handler = type("Handler", (_Handler,), {"hub": state, "traffic": traffic, "is_cdn": is_cdn})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    state.hub_url = f"http://127.0.0.1:{servers[0].server_address[1]}"
    state.cdn_url = f"http://127.0.0.1:{servers[1].server_address[1]}"
    try:
        yield state
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def write_hf_cache(root: Path, repo_id: str, folder: Path, sha: str = "a" * 40) -> None:
    """``folder``'s files as ``repo_id`` at commit ``sha`` in a Hugging Face cache under ``root``: blobs, a
    snapshot of symlinks to them, refs/main naming the commit (what an offline scan or diff reads)."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True)
    for path in folder.iterdir():
        blob = repo / "blobs" / path.name.encode().hex()
        blob.write_bytes(path.read_bytes())
        (snapshot / path.name).symlink_to(Path("../../blobs") / blob.name)
