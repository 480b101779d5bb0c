"""`extract --workers N` killed with SIGKILL leaves no orphaned worker processes (issue 11 item 14), and no noise
on stderr: no `resource_tracker: ... leaked semaphore objects`, no MediaPipe INFO lines (issue 19 item 18)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import media as tm

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find the workers")


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    """Running (a zombie no one reaped counts as gone: it runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait_for(condition, limit: float) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.mark.slow
def test_workers_exit_when_extract_is_killed(tmp_path):
    folder = tmp_path / "in"
    for i in range(8):  # enough slow clips that the batch is mid-way when it is killed
        clip = tm.make_face_clip(folder / f"c{i}.mp4", 4.0, fps=25, audio="speech")
        clip.with_suffix(".txt").write_text("words")
    out = tmp_path / "out"
    stderr = (tmp_path / "stderr.txt").open("w")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepmlf_cli.app", "extract", str(folder), "--out", str(out), "--workers", "2",
         "--transcript", "given", "-q"],
        env=env, stdout=subprocess.DEVNULL, stderr=stderr,
    )  # fmt: skip
    stderr.close()
    try:
        workers: list[int] = []
        trackers: list[int] = []

        def started() -> bool:
            trackers[:] = [p for p in _children(proc.pid) if "resource_tracker" in _cmdline(p)]
            workers[:] = [
                p
                for p in _children(proc.pid)
                if "multiprocessing" in _cmdline(p) and "resource_tracker" not in _cmdline(p)
            ]
            return len(workers) == 2 and any((out / "features").glob("*.npz"))

        assert _wait_for(started, 120), f"workers did not start: {workers}"
        assert proc.poll() is None, "the batch finished before it could be killed; give it more clips"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # Generous limit: the check is that they exit at all, not how fast.
        assert _wait_for(lambda: not any(_alive(p) for p in workers), 20), [p for p in workers if _alive(p)]
        # the tracker reports (and cleans up) what the killed parent left once every holder of its pipe is gone
        assert _wait_for(lambda: not any(_alive(p) for p in trackers), 20)
        noise = (tmp_path / "stderr.txt").read_text()
        assert "resource_tracker" not in noise and "XNNPACK" not in noise and "INFO:" not in noise, noise
    finally:
        if proc.poll() is None:
            proc.kill()
        started_here = locals().get("workers", []) + locals().get("trackers", [])
        for pid in _children(proc.pid) + [p for p in started_here if _alive(p)]:
            try:
                os.kill(pid, signal.SIGKILL)  # never leave the processes this test started
            except ProcessLookupError:
                pass
