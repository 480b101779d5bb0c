"""Helpers of the `deepmlf serve` tests: a real server process on a free loopback port, and a multipart client
(standard library only, so the tests speak HTTP the way any other client would)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from conftest import free_port

_BUILT: dict[str, Path] = {}


def served_root(tmp_path_factory, lm: Path) -> Path:
    """test_predict's tiny corpus and run, plus the demo's own clip (`demo/new_clip.mp4`), built once per session.

    Both serve test modules (API and browser) take it, so the tiny model is trained once.
    """
    if "root" not in _BUILT:
        from test_predict import build_trained

        from deepmlf_cli.workflows.demo import NEW_CLIP_TEXT
        from extractors.synthetic import face_frames, make_audio, write_media

        root = build_trained(tmp_path_factory.mktemp("served"), lm)
        # the clip `deepmlf demo` writes and predicts at its end (workflows/demo.py's _video_dataset)
        write_media(demo_clip(root), face_frames(20), 10.0, make_audio(2.0, "speech", seed=99))
        demo_clip(root).with_suffix(".txt").write_text(NEW_CLIP_TEXT + "\n")
        _BUILT["root"] = root
    return _BUILT["root"]


def demo_clip(root: Path) -> Path:
    """Where `served_root` wrote the demo's clip."""
    return root / "demo" / "new_clip.mp4"


class Server:
    """`deepmlf serve` in its own process (TMPDIR is `tmp`, so its temporary files can be inspected)."""

    def __init__(self, run: Path, tmp: Path, *args: str, token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.token = token
        tmp.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TMPDIR": str(tmp), "HF_HUB_OFFLINE": "1"}
        cmd = [
            sys.executable,
            "-m",
            "deepmlf_cli.app",
            "serve",
            "--model",
            str(run),
            "--port",
            str(self.port),
            "--no-whisper",
            *args,
        ] + (["--token", token] if token else [])
        self.log = tmp.parent / f"server-{self.port}.log"
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                self.get("/api/health")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"serve did not start: {self.log.read_text()}")

    def headers(self, token: bool = True) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if (self.token and token) else {}

    def get(self, path: str, token: bool = True) -> tuple[int, object, dict]:
        req = urllib.request.Request(self.url + path, headers=self.headers(token))
        return _open(req)

    def predict(
        self, files: list[tuple[str, bytes]], fields: dict[str, str] | None = None, token: bool = True
    ) -> tuple[int, object, dict]:
        body, ctype = multipart(files, fields or {})
        req = urllib.request.Request(
            self.url + "/api/predict", data=body, method="POST", headers={"Content-Type": ctype, **self.headers(token)}
        )
        return _open(req)

    def upload_files(self) -> list[Path]:
        """Files left under the server's private temporary folders (deepmlf-serve-*)."""
        return [p for d in self.tmp.glob("deepmlf-serve-*") for p in d.rglob("*") if p.is_file()]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _open(req: urllib.request.Request) -> tuple[int, object, dict]:
    try:
        with urllib.request.urlopen(req, timeout=120) as res:
            raw = res.read()
            status, headers = res.status, dict(res.headers)
    except urllib.error.HTTPError as err:
        raw, status, headers = err.read(), err.code, dict(err.headers)
    try:
        return status, json.loads(raw), headers
    except ValueError:
        return status, raw.decode("utf-8", "replace"), headers


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str]) -> tuple[bytes, str]:
    """A multipart/form-data body: each file in the field `files`, then the plain fields."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    for key, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
