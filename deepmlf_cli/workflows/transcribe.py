"""Speech → text for a clip or a folder (`deepmlf transcribe`): sidecar transcripts first, else Whisper.

`transcribe_paths` returns one row per clip and writes no files; the command
passes a `write(key, rendered)` hook to save each transcript as it is made.

Row schema: key, path, status ("done" / "failed"), reason (the failure's), source (sidecar:<file>,
whisper:<model>, ...), text, transcript ({text, source, segments}), file (with a `write` hook) or
rendered (the transcript in the chosen format), seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def transcribe_paths(
    inputs: Path,
    output_format: str = "txt",
    *,
    whisper_model: str,
    backend: str = "transformers",
    language: str | None = None,
    translate: bool = False,
    use_sidecar: bool = True,
    write: Callable[[str, str], Path] | None = None,
    on_plan: Callable[[int], None] | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Transcribe every media file of `inputs` (a file, or a folder searched recursively).

    Whisper (model, backend, language) is checked once before the batch when
    any clip needs it; a clip that fails (ExtractionError) is recorded with
    its reason and the others go on.
    """
    from extractors.choices import TranscriptMode
    from extractors.errors import ExtractionError
    from extractors.inputs import discover_media
    from extractors.media import probe
    from extractors.transcript import TranscriptPolicy, format_transcript, get_transcript

    jobs = discover_media(inputs)
    if not jobs:
        raise ExtractionError(f"{inputs}: no media files found")
    policy = TranscriptPolicy(
        TranscriptMode.auto if use_sidecar else TranscriptMode.whisper,
        backend,
        whisper_model,
        language,
        "translate" if translate else "transcribe",
    )
    mode, transcriber = policy.mode, policy.transcriber()
    if any(j.path is not None and policy.needs_whisper(j.path) for j in jobs):
        transcriber.check()  # model, backend and language: one clear line now, not one per clip
    if on_plan:
        on_plan(len(jobs))
    results: list[dict] = []
    for job in jobs:
        t0 = time.perf_counter()
        row = {"key": job.key, "path": str(job.path), "status": "done", "reason": "", "source": "", "text": ""}
        try:
            info = probe(job.path)
            transcript = get_transcript(job.path, mode, None, transcriber, info.has_audio)
            rendered = format_transcript(transcript, output_format, info.duration)
            row.update(source=transcript.source, text=transcript.text, transcript=transcript.to_dict())
            if write is not None:
                row["file"] = str(write(job.key, rendered))
            else:
                row["rendered"] = rendered
        except ExtractionError as exc:
            row.update(status="failed", reason=str(exc))
        row["seconds"] = round(time.perf_counter() - t0, 3)
        results.append(row)
        if on_result:
            on_result(row)
    return results
