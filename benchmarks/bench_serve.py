"""`deepmlf serve` under load: warm latency of one clip beside the cold CLI, and 8 clients x 40 requests.

    python benchmarks/bench_serve.py --model runs/demo/video-deepmlf [--clip clip.mp4] [--text "words"] [--lm DIR]

Without --clip a 7.5 s synthetic face clip with speech-like audio is written. The server runs as
`deepmlf serve` in its own process on a free loopback port (--no-whisper; the words are sent in `text`),
with TMPDIR pointed at a private folder so its temporary files can be counted afterwards.
Prints: cold `deepmlf predict` seconds, warm median of 5 single requests (target <= 1.0 s),
the load run's counts (200 / 503 / other), p50/p95 latency of the 200s, server RSS before/after
(growth target <= 5 %) and the files left in the temporary folder (target 0).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEEPMLF = [sys.executable, "-m", "deepmlf_cli.app"]


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident set size of `pid` (Linux /proc), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def multipart(name: str, data: bytes, fields: dict[str, str]) -> tuple[bytes, str]:
    """One file in `files` plus plain fields, as multipart/form-data."""
    b = uuid.uuid4().hex
    parts = [
        f'--{b}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    ]
    parts += [f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    return b"".join(parts) + f"--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def post(url: str, body: bytes, ctype: str) -> tuple[int, float]:
    """(status, seconds) of one POST /api/predict."""
    t0 = time.perf_counter()
    req = urllib.request.Request(url + "/api/predict", data=body, method="POST", headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=300) as res:
            json.loads(res.read())
            status = res.status
    except urllib.error.HTTPError as err:
        err.read()
        status = err.code
    return status, time.perf_counter() - t0


def main() -> None:
    """Run the measurements and print them."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path, help="a run directory from `deepmlf train`")
    ap.add_argument("--clip", type=Path, help="the clip to send (default: a 7.5 s synthetic clip)")
    ap.add_argument("--text", default="honestly i really loved the food", help="the transcript sent with it")
    ap.add_argument("--lm", help="the run's LM at a new place (passed to predict and serve)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=40, help="per client")
    ap.add_argument("--queue", type=int, default=8)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        clip = args.clip
        if clip is None:
            from extractors.synthetic import face_frames, make_audio, write_media

            clip = write_media(work / "clip.mp4", face_frames(75), 10.0, make_audio(7.5, "speech", seed=7))
        # the cold CLI: a new process loads the LM, the checkpoint and the extractors for one clip
        lm = ["--lm", args.lm] if args.lm else []
        t0 = time.perf_counter()
        subprocess.run(
            [
                *DEEPMLF,
                "predict",
                str(clip),
                "--model",
                str(args.model),
                *lm,
                "--no-whisper",
                "--transcript",
                args.text,
                "--json",
                "--out",
                str(work / "predictions"),
            ],
            check=True,
            capture_output=True,
        )
        cold = time.perf_counter() - t0

        tmp = work / "tmp"
        tmp.mkdir()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = (work / "server.log").open("wb")
        proc = subprocess.Popen(
            [
                *DEEPMLF,
                "serve",
                "--model",
                str(args.model),
                "--port",
                str(port),
                "--no-whisper",
                "--queue",
                str(args.queue),
                *lm,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": str(tmp)},
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    urllib.request.urlopen(url + "/api/health", timeout=5).read()
                    break
                except (urllib.error.URLError, ConnectionError):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError((work / "server.log").read_text()) from None
                    time.sleep(0.3)
            body, ctype = multipart(clip.name, clip.read_bytes(), {"text": args.text})
            first = post(url, body, ctype)  # the first request warms lazy paths (codecs, allocator)
            assert first[0] == 200, first
            warm = [post(url, body, ctype)[1] for _ in range(5)]
            rss_before = rss_mib(proc.pid)

            def client(_: int) -> list[tuple[int, float]]:
                out = []
                for _ in range(args.requests):
                    status, secs = post(url, body, ctype)
                    out.append((status, secs))
                    if status == 503:
                        time.sleep(0.2)  # a polite client backs off (the server said Retry-After)
                return out

            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                results = [r for rs in pool.map(client, range(args.clients)) for r in rs]
            wall = time.perf_counter() - t0
            rss_after = rss_mib(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(120)
        left = [p for p in tmp.rglob("*") if p.is_file()]
        ok = sorted(s for st, s in results if st == 200)
        counts = {st: sum(1 for s, _ in results if s == st) for st in sorted({s for s, _ in results})}
        q = statistics.quantiles(ok, n=20) if len(ok) >= 2 else [float("nan")] * 19
        print(f"clip: {clip.name}, cold `deepmlf predict`: {cold:.2f} s")
        print(
            f"warm one request: median {statistics.median(warm):.3f} s (min {min(warm):.3f}, max {max(warm):.3f};"
            f" target <= 1.0 s)"
        )
        print(
            f"load: {args.clients} clients x {args.requests} requests in {wall:.1f} s; statuses {counts}; "
            f"answered {len(results)}/{args.clients * args.requests}"
        )
        print(f"latency of the 200s: p50 {statistics.median(ok):.2f} s, p95 {q[18]:.2f} s")
        print(
            f"server RSS: {rss_before:.0f} MiB before, {rss_after:.0f} MiB after "
            f"({100 * (rss_after - rss_before) / rss_before:+.1f} %; target <= +5 %)"
        )
        print(f"temporary files left: {len(left)}; server exit code after SIGTERM: {code}")
        if len(results) != args.clients * args.requests or set(counts) - {200, 503} or left or code != 0:
            sys.exit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
