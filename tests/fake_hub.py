"""A Hugging Face hub on localhost serving one model repository from a folder, so that loading a model by its hub
id runs for real (huggingface_hub's requests, its cache, diffusers' choice of files) with no network.

huggingface_hub is pointed at it with HF_ENDPOINT, read when huggingface_hub is imported: the code under test
runs in a child process started with ``endpoint_env``. ``delay`` is how long each weights file (over 64 kB)
takes to send; the hub answers one request at a time, so a download of several files lasts long enough to be
watched as it grows.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY_REPO = "someone/tiny-sd"


@contextmanager
def serving_the_tiny_model(tmp_path: Path, monkeypatch, delay: float = 0.0, half_variant: bool = False) -> Iterator[FakeHub]:
    """The tiny pipeline as the hub's TINY_REPO, and this process's environment (which the engine child processes
    inherit) pointed at it, with an empty cache in ``tmp_path``.

    ``half_variant`` adds an ``fp16`` variant of every weights file, as SD's repositories have. Its weights are another
    tiny pipeline's (seed 1), not the default files' rounded, so that what a session drew shows which files it loaded.
    """
    import torch

    from hero_engine.models.pipelines import build_tiny_pipeline

    repo = tmp_path / "hub-repo"
    if half_variant:  # first: the default files' configs are written last, and kept
        build_tiny_pipeline(torch.float16, seed=1).save_pretrained(repo, variant="fp16")
    build_tiny_pipeline().save_pretrained(repo)
    with FakeHub(TINY_REPO, repo, delay) as hub:
        for name, value in hub.endpoint_env(tmp_path / "hub-cache").items():
            monkeypatch.setenv(name, value)
        yield hub


class FakeHub:
    def __init__(self, repo_id: str, folder: Path, delay: float = 0.0):
        self.repo_id, self.folder, self.delay = repo_id, Path(folder), delay
        self.files = {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*")) if path.is_file()}
        self.downloaded: list[str] = []
        self.asked: list[str] = []  # every request's method and path, query included
        self._server = HTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def endpoint_env(self, cache: Path) -> dict[str, str]:
        """The environment of a child process that downloads from this hub into ``cache``."""
        return {"HF_ENDPOINT": self.url, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _info(self) -> dict:
        siblings = [{"rfilename": name, "size": path.stat().st_size} for name, path in self.files.items()]
        return {"id": self.repo_id, "modelId": self.repo_id, "sha": COMMIT, "siblings": siblings, "private": False,
                "gated": False, "disabled": False, "tags": ["diffusers"], "library_name": "diffusers"}

    def _tree(self) -> list[dict]:
        folders = sorted({parent.as_posix() for name in self.files for parent in Path(name).parents if parent != Path(".")})
        return [*({"type": "directory", "path": folder, "oid": _oid(folder.encode())} for folder in folders),
                *({"type": "file", "path": name, "size": path.stat().st_size, "oid": _oid(path.read_bytes())}
                  for name, path in self.files.items())]

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet: the test reads what was downloaded from hub.downloaded
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                hub.asked.append(f"{self.command} {self.path}")
                path = unquote(self.path.split("?", 1)[0])
                api = f"/api/models/{hub.repo_id}"
                if path == api or path.startswith(api + "/revision/"):
                    return self._send(200, json.dumps(hub._info()).encode(), "application/json", body)
                if path.startswith(api + "/tree/"):  # huggingface_hub 2 lists the files (one page: no Link header)
                    return self._send(200, json.dumps(hub._tree()).encode(), "application/json", body)
                prefix = f"/{hub.repo_id}/resolve/"
                if path.startswith(prefix):
                    name = path[len(prefix):].split("/", 1)[1] if "/" in path[len(prefix):] else ""
                    file = hub.files.get(name)
                    if file is None:
                        return self._send(404, b"Entry not found", "text/plain", body, {"X-Error-Code": "EntryNotFound"})
                    data = file.read_bytes()
                    headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{_oid(data)}"'}
                    if body:
                        hub.downloaded.append(name)
                    return self._send(200, data, "application/octet-stream", body, headers, slow=len(data) > 64 * 1024)
                return self._send(404, b"Repository not found", "text/plain", body, {"X-Error-Code": "RepoNotFound"})

            def _send(self, status: int, data: bytes, kind: str, body: bool, headers: dict | None = None,
                      slow: bool = False) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if not body:
                    return
                pieces = 8 if slow and hub.delay else 1
                step = -(-len(data) // pieces) or 1
                for start in range(0, len(data), step):
                    self.wfile.write(data[start:start + step])
                    self.wfile.flush()
                    if slow and hub.delay:
                        time.sleep(hub.delay / pieces)

        return Handler


def _oid(data: bytes) -> str:
    """A file's id as git names a blob, which the hub gives small files as their ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
