"""A Hugging Face Hub repository as a :class:`~tiecheck.io.source.CheckpointStore`, read by HTTP ranges.

Every rule runs unchanged on it: a safetensors header is a few kilobytes at the start of its file, so
a scan costs kilobytes, not the repository. The revision is resolved to its commit sha first and every
later request names that sha, so no file can change under the scan; each file's ETag and size are
checked on every response as well, and a change is an error, never a silent mix of two versions.

Requests go through ``huggingface_hub``'s own HTTP session, so ``HF_ENDPOINT``, ``HF_TOKEN`` and the
stored login, proxies and its redirect handling apply as for any ``huggingface_hub`` call; the token is
dropped on redirects to another origin (the Hub's file CDN) by the HTTP client.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from tiecheck.errors import (
    AccessDenied,
    ChangedDuringScan,
    NetworkError,
    NotCached,
    RateLimited,
    RemoteError,
    RepoNotFound,
    RevisionNotFound,
    TargetNotFound,
)
from tiecheck.io.source import MAX_TEXT, Closing

#: The first read of a file: the header of a typical shard (a few hundred tensors); a larger one costs a second.
WINDOW = 16 << 10
#: Shard headers read at once (each request waits on the network, not the CPU); huggingface_hub's own
#: ``snapshot_download`` shares the same HTTP client between 8 threads.
HEADER_WORKERS = 8
#: Answers of a file CDN that mean its signed address expired: ask the Hub for a fresh one, once.
_EXPIRED = frozenset({401, 403, 404, 410})

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")


@dataclass(frozen=True)
class HubTarget:
    repo_id: str
    revision: str | None


def parse_hub_target(text: str, *, bare: bool = False) -> HubTarget | None:
    """``hf://ORG/NAME[@REVISION]`` (or, with ``bare``, ``ORG/NAME[@REVISION]``) as a repo and revision."""
    if text.startswith("hf://"):
        text = text[len("hf://") :]
    elif not bare:
        return None
    repo_id, _, revision = text.partition("@")
    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        return None
    return HubTarget(repo_id, revision or None)


@dataclass
class Transfer:
    """What a remote scan cost: requests made and body bytes received."""

    requests: int = 0
    bytes: int = 0


def _hub_error(exc: Exception, target: str) -> RemoteError:
    """One line for each way the Hub says no, naming the repo and what to do."""
    from huggingface_hub import errors

    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(exc, errors.GatedRepoError):
        return AccessDenied(
            f"{target}: gated repository; request access on its page, then log in (`hf auth login`)", target, gated=True
        )
    if isinstance(exc, errors.RevisionNotFoundError):
        return RevisionNotFound(f"{target}: revision not found", target)
    if isinstance(exc, errors.RepositoryNotFoundError):
        return RepoNotFound(
            f"{target}: repository not found, or private without access (log in with `hf auth login` or set HF_TOKEN)",
            target,
        )
    if status in (401, 403):
        return AccessDenied(f"{target}: access denied ({status}); log in with `hf auth login` or set HF_TOKEN", target)
    if status == 429:
        return _status_error(429, getattr(response, "headers", {}), target)
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return NotCached(f"{target}: offline (HF_HUB_OFFLINE) and the repo is not in the local cache", target)
    if status is not None:
        return NetworkError(f"{target}: the Hub answered {status}", target)
    return NetworkError(f"{target}: cannot reach the Hub ({type(exc).__name__}: {exc})", target)


class HubStore:
    """One repo at one commit. ``endpoint`` defaults to ``HF_ENDPOINT``; ``token`` to the stored login (False: none)."""

    #: Bytes cost requests here: scans compare tied pairs by samples unless asked for ``content="full"``.
    remote = True

    def __init__(
        self,
        repo_id: str,
        revision: str | None = None,
        *,
        token: str | bool | None = None,
        endpoint: str | None = None,
    ) -> None:
        from huggingface_hub import HfApi, constants
        from huggingface_hub.hf_api import RepoFile

        self.repo_id = repo_id
        self.endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        from huggingface_hub import get_token

        found = get_token() if token is None else token  # None: HF_TOKEN or the stored login; False: no token
        self._auth = {"Authorization": f"Bearer {found}"} if isinstance(found, str) and found else {}
        self.transfer = Transfer()
        self._lock = threading.Lock()
        target = f"hf://{repo_id}" + (f"@{revision}" if revision else "")
        api = HfApi(endpoint=self.endpoint, token=token)
        try:
            info = api.model_info(repo_id, revision=revision)
            self._count(1, 0)
            if not info.sha:
                raise NetworkError(f"{target}: the Hub did not say which commit {revision or 'main'} is", target)
            self.sha: str = info.sha
            entries = list(api.list_repo_tree(repo_id, revision=self.sha))
        except RemoteError:
            raise
        except Exception as exc:  # noqa: BLE001 - every Hub or network failure becomes one line
            raise _hub_error(exc, target) from None
        self._count(1, 0)
        #: Top-level files only, as for a local folder: name -> size (the LFS size for LFS files).
        self._sizes = {e.path: int(e.size) for e in entries if isinstance(e, RepoFile) and "/" not in e.path}
        self._etags: dict[str, str] = {}
        #: Where each file's bytes came from after the Hub's redirect (its file CDN): later ranges go there
        #: directly, one request instead of two, and without the token (another origin).
        self._direct: dict[str, str] = {}
        #: The header bytes of each safetensors file read so far: reopening a file (the loader reads headers,
        #: the content checks come back for samples) must not fetch its first window again.
        self._headers: dict[str, bytes] = {}

    @property
    def location(self) -> str:
        return f"hf://{self.repo_id}@{self.sha}"

    def list_files(self) -> list[str]:
        return sorted(self._sizes)

    def exists(self, name: str) -> bool:
        return name in self._sizes

    def open(self, name: str) -> HubFileSource:
        if name not in self._sizes:
            raise FileNotFoundError(name)
        return HubFileSource(self, name, self._sizes[name])

    def read_text(self, name: str) -> str:
        size = self._sizes.get(name)
        if size is None:
            raise FileNotFoundError(name)
        if size > MAX_TEXT:
            raise OSError(f"{name} is {size:,} bytes, more than a JSON companion should be")
        return self.fetch(name, 0, size).decode("utf-8") if size else ""

    def _count(self, requests: int, nbytes: int) -> None:
        with self._lock:
            self.transfer.requests += requests
            self.transfer.bytes += nbytes

    def prefetch_headers(self, names: Iterable[str]) -> None:
        """Read the first window of these safetensors files, :data:`HEADER_WORKERS` at a time.

        Only header bytes are kept (the whole window when the header is larger); the loader's reads are
        then served from memory. The first failure stops the rest and is raised as it is (one line).
        """
        todo = [n for n in names if n.endswith(".safetensors") and self._sizes.get(n) and n not in self._headers]
        if len(todo) < 2:
            return
        pool = ThreadPoolExecutor(max_workers=min(HEADER_WORKERS, len(todo)), thread_name_prefix="tiecheck-hub")
        try:
            for future in [pool.submit(self._read_head, name) for name in todo]:
                future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _read_head(self, name: str) -> None:
        head = self.fetch(name, 0, min(WINDOW, self._sizes[name]))
        end = 8 + int.from_bytes(head[:8], "little") if len(head) >= 8 else len(head) + 1
        with self._lock:
            self._headers.setdefault(name, head[:end] if end <= len(head) else head)

    def fetch(self, name: str, start: int, length: int) -> bytes:
        """Bytes ``[start, start + length)`` of ``name`` at the pinned commit, by one range request.

        The first request goes to the Hub (``resolve`` at the commit sha), which may redirect to its file
        CDN; later ones go to the CDN address directly, and back to the Hub once if that address expired.
        From the second request on, ``If-Range`` names the file's ETag: a file that changed answers 200.
        """
        direct = self._direct.get(name)
        if direct is not None:
            try:
                return self._get(name, direct, start, length, hub=False)
            except _Expired:
                with self._lock:
                    self._direct.pop(name, None)
        return self._get(name, f"{self.endpoint}/{self.repo_id}/resolve/{self.sha}/{quote(name)}", start, length)

    def _get(self, name: str, url: str, start: int, length: int, *, hub: bool = True) -> bytes:
        from huggingface_hub import get_session

        where = f"{self.location}/{name}"
        token = hub or _origin(url) == _origin(self.endpoint)  # never to another origin (the CDN)
        headers = {"Range": f"bytes={start}-{start + length - 1}", **(self._auth if token else {})}
        known = self._etags.get(name)
        if known and not known.startswith("W/"):  # If-Range takes strong validators only
            headers["If-Range"] = known
        try:
            with get_session().stream("GET", url, headers=headers, follow_redirects=True) as response:
                self._count(1 + len(response.history), 0)
                if not hub and response.status_code in _EXPIRED:
                    raise _Expired
                if response.status_code >= 400:
                    raise _status_error(response.status_code, response.headers, where)
                if response.status_code == 200 and "If-Range" in headers:
                    raise ChangedDuringScan(f"{where}: the file changed while it was being scanned; scan again", where)
                if response.status_code != 206:  # a server that ignores Range would send the whole file
                    raise NetworkError(f"{where}: the server answered {response.status_code} to a range request", where)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > length:
                        break
        except (RemoteError, _Expired):
            raise
        except Exception as exc:  # noqa: BLE001 - network failures become one line
            raise _hub_error(exc, self.location) from None
        self._count(0, len(body))
        expected = f"bytes {start}-{start + length - 1}/{self._sizes[name]}"
        if response.headers.get("Content-Range") != expected or len(body) != length:
            raise ChangedDuringScan(
                f"{where}: a range response does not match the request (asked {expected!r}, got "
                f"{response.headers.get('Content-Range')!r} with {len(body)} bytes): truncated or changed",
                where,
            )
        etag = response.headers.get("ETag", "")
        with self._lock:
            first = self._etags.setdefault(name, etag)
            if hub and response.history:
                self._direct.setdefault(name, str(response.url))
        if etag != first:
            raise ChangedDuringScan(f"{where}: the file changed while it was being scanned; scan again", where)
        return bytes(body)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class _Expired(Exception):
    """The CDN refused an address the Hub gave earlier in the scan (signed addresses expire)."""


def _status_error(status: int, headers: Any, where: str) -> RemoteError:
    if status == 429:
        retry = headers.get("Retry-After")
        return RateLimited(
            f"{where}: rate limited by the Hub (429)" + (f"; retry after {retry} s" if retry else ""),
            where,
            retry_after=_seconds(retry),
        )
    if status in (401, 403):
        return AccessDenied(f"{where}: access denied ({status}); log in with `hf auth login` or set HF_TOKEN", where)
    if status == 416:
        return ChangedDuringScan(f"{where}: a read past the end of the file (416)", where)
    return NetworkError(f"{where}: the Hub answered {status}", where)


def _seconds(retry_after: str | None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds (an HTTP date is not parsed: None)."""
    try:
        return max(0.0, float(retry_after)) if retry_after else None
    except ValueError:
        return None


class HubFileSource(Closing):
    """Random access to one remote file.

    The first read fetches a window of :data:`WINDOW` bytes, which holds a typical safetensors header, and
    serves the header reader's small reads from it; on close, only the header's own bytes are kept by the
    store, so memory holds headers, never tensor data.
    """

    def __init__(self, store: HubStore, name: str, size: int) -> None:
        self._store = store
        self._name = name
        self._size = size
        self._head: bytes | None = None

    @property
    def first_read(self) -> int:
        """The safetensors header reader's first read: the header already read, else :data:`WINDOW`."""
        return len(self._store._headers.get(self._name, b"")) or WINDOW

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self._size or length <= 0:
            return b""
        length = min(length, self._size - offset)
        kept = self._store._headers.get(self._name, b"")
        if offset + length <= len(kept):
            return kept[offset : offset + length]
        if offset + length <= WINDOW and (self._head is not None or not kept):  # the header is not known yet
            if self._head is None:
                self._head = self._store.fetch(self._name, 0, min(WINDOW, self._size))
            return self._head[offset : offset + length]
        return self._store.fetch(self._name, offset, length)

    def close(self) -> None:
        head, self._head = self._head, None
        if head is None or not self._name.endswith(".safetensors") or len(head) < 8:
            return
        end = 8 + int.from_bytes(head[:8], "little")
        if end <= len(head):
            self._store._headers.setdefault(self._name, head[:end])


def open_hub(text: str, *, offline: bool | None = None, token: str | None = None) -> Any:
    """The store for ``hf://ORG/NAME[@REV]``: the local cache when offline, else the Hub by range requests."""
    from huggingface_hub import constants

    from tiecheck.io.source import LocalStore

    target = parse_hub_target(text, bare=True)
    if target is None:
        raise TargetNotFound(f"{text}: not a Hub repo id (expected hf://ORG/NAME or hf://ORG/NAME@REVISION)")
    if offline if offline is not None else constants.HF_HUB_OFFLINE:
        folder = cached_snapshot(target)
        if folder is None:
            raise NotCached(f"{text}: offline, and the repo is not in the local Hugging Face cache", text)
        return LocalStore(folder)
    return HubStore(target.repo_id, target.revision, token=token)


def cached_snapshot(target: HubTarget) -> Path | None:
    """The repo's folder in the local Hugging Face cache, without any request; None when it is not there."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(target.repo_id, revision=target.revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, in any of the ways huggingface_hub says so
        return None
