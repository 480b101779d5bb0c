"""`deepmlf serve` against a real uvicorn process on a free loopback port: predict, bad files, size cap,
queue, token, temporary files, SIGTERM (test_predict's tiny run, built once per session by tests/serving.py)."""

from __future__ import annotations

import signal
import socket
import time

import pytest
from test_predict import RESULT_KEYS

from serving import Server, demo_clip, multipart, served_root

TOKEN = "s3cret-token"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_gpt2):
    return served_root(tmp_path_factory, tiny_gpt2)


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    # --allow-missing: several files in one request cannot carry transcripts and --no-whisper
    # reads none, so untranscribed clips are scored from empty text rather than failed.
    srv = Server(
        trained / "runs" / "r1",
        tmp_path_factory.mktemp("serve") / "tmp",
        "--queue",
        "0",
        "--max-upload-mb",
        "1",
        "--allow-missing",
        token=TOKEN,
    )
    yield srv
    srv.stop()


def _clip(trained, i=7):
    return (trained / "SIMS" / "Raw" / "v" / f"{i:02d}.mp4").read_bytes()


def test_predict_the_demo_clip_and_a_bad_file_among_good_ones(server, trained):
    from deepmlf_cli.predictor import Predictor
    from deepmlf_cli.workflows.demo import NEW_CLIP_TEXT

    clip = demo_clip(trained)
    status, body, _ = server.predict([("new clip.mp4", clip.read_bytes())], {"text": NEW_CLIP_TEXT})
    assert status == 200, body
    (item,) = body
    assert set(item) == RESULT_KEYS and item["status"] == "ok" and item["path"] == "new clip.mp4"
    assert item["transcript"] == NEW_CLIP_TEXT and item["transcript_source"] == "given"
    assert -1.0 <= item["score"] <= 1.0 and item["duration"] == pytest.approx(2.0, abs=0.2)
    # the same clip through the CLI's library object (its sidecar holds the same words) gives the same number
    predictor = Predictor.load(trained / "runs" / "r1")
    assert item["raw_score"] == pytest.approx(predictor.predict(clip)["raw_score"], abs=1e-6)

    bad_bytes = b"not media at all"
    status, body, _ = server.predict(
        [("a.mp4", _clip(trained, 6)), ("../../etc/passwd", bad_bytes), ("b.mp4", _clip(trained, 5))],
        {"segment": "false"},
    )
    assert status == 200, body
    assert [r["status"] for r in body] == ["ok", "failed", "ok"]
    assert [r["path"] for r in body] == ["a.mp4", "../../etc/passwd", "b.mp4"]  # names shown, never opened
    bad = body[1]
    assert bad["score"] is None and "\n" not in bad["error"] and str(server.tmp) not in bad["error"]
    # the CLI's one-line error for the same bytes, with the upload's name where the CLI names the path
    local = server.tmp.parent / "bad.mp4"
    local.write_bytes(bad_bytes)
    assert bad["error"] == predictor.predict_safe(local, shown_as="../../etc/passwd")["error"]
    status, body, _ = server.predict([("x.mp4", b"garbage"), ("y.wav", b"")])
    assert status == 422 and [r["status"] for r in body] == ["failed", "failed"]
    assert server.upload_files() == []


def test_segment_mode_answers_a_timeline(server, trained):
    status, body, _ = server.predict([("long.mp4", _clip(trained, 3))], {"segment": "true", "window": "0.5"})
    assert status == 200, body
    (item,) = body
    assert item["status"] == "ok" and len(item["segments"]) >= 2
    assert all({"start", "end", "score"} <= set(seg) for seg in item["segments"])
    assert server.predict([("a.mp4", b"x")], {"window": "-1"})[0] == 422


def test_model_card_health_openapi_page_and_token(server):
    assert server.get("/api/model", token=False)[0] == 401
    assert server.predict([("a.mp4", b"x")], token=False)[0] == 401
    status, card, _ = server.get("/api/model")
    assert status == 200 and card["run"] == "r1" and card["scale"] == [-1.0, 1.0] and card["feature_recipe"]
    assert server.get("/api/health")[1]["status"] == "ok"
    status, schema, _ = server.get("/openapi.json", token=False)
    assert status == 200 and "/api/predict" in schema["paths"]
    assert server.get("/docs", token=False)[0] == 404  # Swagger UI loads from a CDN: left out
    status, page, _ = server.get("/", token=False)
    assert (
        status == 200
        and "<title>deepmlf" in page
        and "http" not in page.split("<script>")[1].replace("http://www.w3.org/2000/svg", "")
    )  # nothing loaded from another host


def test_upload_over_the_cap_is_413_and_leaves_no_file(server):
    status, body, _ = server.predict([("big.mp4", b"\0" * (2 * 2**20))])
    assert status == 413 and "--max-upload-mb" in body["detail"]
    assert server.upload_files() == []


def _hold_a_request(server, body: bytes, ctype: str) -> socket.socket:
    """A predict request whose body is only half sent: it holds the one place while it lasts."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[: len(body) // 2])
    return sock


def test_full_queue_is_503_with_retry_after_and_a_client_gone_leaves_no_file(server, trained):
    body, ctype = multipart([("slow.mp4", _clip(trained))], {"text": "words"})
    sock = _hold_a_request(server, body, ctype)
    try:
        deadline = time.monotonic() + 10
        while not server.upload_files() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.upload_files(), "the held request's upload should be streaming to a temporary file"
        status, detail, headers = server.predict([("a.mp4", _clip(trained))])
        assert status == 503 and headers.get("retry-after", headers.get("Retry-After")) and "busy" in detail["detail"]
    finally:
        sock.close()  # the client goes away mid-upload
    deadline = time.monotonic() + 10
    while server.upload_files() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.upload_files() == []
    assert server.predict([("a.mp4", _clip(trained))], {"text": "words"})[0] == 200  # the place is free again


def test_a_public_host_needs_a_token_or_no_token(trained, tmp_path):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    res = CliRunner().invoke(app, ["serve", "--model", str(trained / "runs" / "r1"), "--host", "0.0.0.0"])
    assert res.exit_code == 1 and "--token" in res.output and "--no-token" in res.output
    from deepmlf_cli.workflows.serve import ServeOptions, check_options

    assert check_options(ServeOptions(host="0.0.0.0", no_token=True))[0].startswith("serving on 0.0.0.0 without")
    assert check_options(ServeOptions(host="::1")) == []


def test_whisper_missing_at_start_names_no_whisper(trained):
    from huggingface_hub import try_to_load_from_cache
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    if isinstance(try_to_load_from_cache("openai/whisper-small", "config.json"), str):
        pytest.skip("openai/whisper-small is cached here: serve would start")
    # the recipe transcribes with Whisper and an upload has no sidecar: refused at start, in one line
    res = CliRunner().invoke(app, ["serve", "--model", str(trained / "runs" / "r1"), "--port", "9"])
    assert res.exit_code == 1 and "--no-whisper" in res.output and "sidecar" not in res.output, res.output


def test_sigterm_finishes_the_request_in_flight_then_exits_0(trained, tmp_path):
    srv = Server(trained / "runs" / "r1", tmp_path / "tmp")
    # without --allow-missing an untranscribed upload fails like `deepmlf predict --no-whisper` on a clip
    # without a sidecar: one line naming the upload, and the request (every file failed) is a 422
    status, body, _ = srv.predict([("quiet.mp4", _clip(trained))])
    assert status == 422 and body[0]["error"].startswith("quiet.mp4") and "\n" not in body[0]["error"], body
    body, ctype = multipart([("a.mp4", _clip(trained))], {"text": "words"})
    sock = socket.create_connection(("127.0.0.1", srv.port))
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:100])
    time.sleep(0.5)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    sock.sendall(body[100:])
    answer = b""
    sock.settimeout(60)
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"]"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert srv.proc.wait(60) == 0
    assert list((tmp_path / "tmp").glob("deepmlf-serve-*")) == []  # the lifespan removed its folder
