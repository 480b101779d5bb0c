"""Batch extraction: many clips, several processes, shards, resume, and a summary.

A bad clip never stops the batch: its error becomes a one-line reason in the
results (and in `<out>/errors.tsv`). Finished clips are skipped on re-runs
(resume after a crash or Ctrl-C) because each one's files are written
atomically and its `.json` marks it done for one feature hash (a changed
transcript policy redoes only the clip's text).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

from .dataset import (
    assemble_dataset,
    clip_done,
    clip_filename,
    load_clip,
    media_identity,
    same_media,
    save_clip,
    write_features_manifest,
    write_json,
    write_text,
)
from .errors import BackendUnavailableError, ExtractionError, InputNotFoundError, ModelNotCachedError
from .feature_recipe import FeatureRecipe
from .inputs import ClipJob, discover_media, find_label_file, in_shard, read_labels

ERRORS_FILE = "errors.tsv"
_MAX_CLIP_NOTES = 10  # per-clip media notes listed in the summary; all stay in each clip's .json


@dataclass
class ClipResult:
    """What happened to one clip."""

    key: str
    path: str
    status: str  # "done", "skipped" (already done with this recipe) or "failed"
    reason: str = ""
    seconds: float = 0.0  # processing time
    duration: float = 0.0  # media duration, seconds
    audio_frames: int = 0
    vision_frames: int = 0
    frames_with_face: int = 0
    text_source: str = ""
    text_chars: int = 0  # length of the clip's text (0: none, e.g. silence)
    notes: list[str] = field(default_factory=list)  # facts about the media (a track shorter than the clip)


@dataclass
class ExtractSummary:
    """The outcome of a batch: per-clip results and what was written where."""

    out: Path
    results: list[ClipResult]
    elapsed: float
    kind: str  # "dataset", "features" or "shard"
    manifest: dict | None = None
    errors_file: Path | None = None
    notes: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def empty_splits(self) -> list[str]:
        """Splits of the written dataset that hold no clip (train cannot use them)."""
        if self.kind != "dataset" or not self.manifest:
            return []
        return [name for name, n in self.manifest.get("splits", {}).items() if n == 0]

    @property
    def failed(self) -> list[ClipResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def clips_per_s(self) -> float:
        return self.count("done") / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def realtime_factor(self) -> float:
        """Wall time per second of media processed this run (< 1: faster than real time)."""
        media = sum(r.duration for r in self.results if r.status == "done")
        return self.elapsed / media if media > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "kind": self.kind,
            "done": self.count("done"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "elapsed_s": round(self.elapsed, 3),
            "clips_per_s": round(self.clips_per_s, 3),
            "realtime_factor": round(self.realtime_factor, 4),
            "errors_file": str(self.errors_file) if self.errors_file else None,
            "splits": (self.manifest or {}).get("splits"),
            "empty_splits": self.empty_splits,
            "notes": self.notes,
            "clips": [asdict(r) for r in self.results],
        }


def plan_jobs(
    inputs: Path, labels: Path | None = None, label_range: tuple[float, float] | None = None
) -> list[ClipJob]:
    """The clips to process: from a label file (given, or MMSA's `label.csv` + `Raw/` found in `inputs`), else every media file.

    label_range: labels beyond it are bad rows of the label file (`read_labels`).
    """
    inputs = Path(inputs)
    if not inputs.exists():
        raise InputNotFoundError(f"input not found: {inputs}; check the path")
    if labels is None and inputs.is_dir():
        labels = find_label_file(inputs)
    if labels is not None:
        return read_labels(Path(labels), inputs if inputs.is_dir() else None, label_range)
    jobs = discover_media(inputs)
    if not jobs:
        raise ExtractionError(f"{inputs}: no media files found (looked for video/audio extensions such as .mp4, .wav)")
    return jobs


def extract_one(
    job: ClipJob, recipe: FeatureRecipe, features_dir: Path, allow_missing: bool = False, done: dict | None = None
) -> ClipResult:
    """Extract and save one clip; every known failure becomes a one-line reason (never a traceback).

    A clip without speech, a face or a transcript fails unless `allow_missing`.
    done: the metadata of the clip's features made with the same feature hash
    under another transcript policy: only its text is redone.
    """
    from .pipeline import extract_clip, require_modalities, transcribe_clip

    t0 = time.perf_counter()
    base = ClipResult(key=job.key, path=str(job.path or ""), status="failed")
    if job.problem or job.path is None:  # plan_jobs gives every clip it did not find (path None) a problem
        base.reason = job.problem or "clip not found"
        return base
    path = job.path
    try:
        identity = media_identity(path)  # before decoding: a file replaced mid-run is redone next time
        if done is not None:
            text, tracks = transcribe_clip(path, recipe, transcript=job.text)
            if not allow_missing:
                require_modalities(path, {**done, **tracks}, text.text, "extract", recipe.modalities)
            meta = {
                **done,
                "path": str(job.path),
                "text": text.text,
                "transcript": text.to_dict(),
                "transcript_hash": recipe.transcript.hash,
                "label_text": job.text,
                "media": identity,
            }
            write_json(Path(features_dir) / f"{clip_filename(job.key)}.json", meta)  # the .npz stays as it is
        else:
            clip = extract_clip(path, recipe, transcript=job.text)
            if not allow_missing:
                require_modalities(path, clip.info, clip.text, "extract", recipe.modalities)
            # Beside the feature hash (the done-marker): a later run with another transcript policy redoes only the text.
            clip.info["transcript_hash"] = recipe.transcript.hash
            # With the label text and the file's identity: a fixed transcript or a replaced file is redone.
            clip.info["label_text"] = job.text
            clip.info["media"] = identity
            meta = save_clip(features_dir, job, clip, recipe.feature_hash)
    except ExtractionError as exc:
        base.reason = str(exc).replace(str(job.path) + ": ", "", 1)
    except (MemoryError, OSError, ValueError, RuntimeError) as exc:
        base.reason = f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (re-run with --debug --workers 1 to see where)"
    else:
        return ClipResult(
            key=job.key,
            path=str(job.path),
            status="done",
            seconds=time.perf_counter() - t0,
            duration=float(meta.get("duration") or 0.0),
            audio_frames=int(meta["audio_frames"]),
            vision_frames=int(meta["vision_frames"]),
            frames_with_face=int(meta["frames_with_face"]),
            text_source=meta["transcript"]["source"],
            text_chars=len(meta.get("text") or ""),
            notes=list(meta.get("notes") or []),
        )
    base.seconds = time.perf_counter() - t0
    return base


def quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (once) with its leak warnings off.

    The pool's queues hold named semaphores the tracker unlinks if the parent dies without doing
    so (kill -9): it cleans them up, then warns "resource_tracker: There appear to be N leaked
    semaphore objects" on the user's terminal, about a cleanup that just happened. The tracker is
    a separate interpreter started with this one's -W options, so the filter goes there, and only
    for the tracker's own module.
    """
    import sys
    from multiprocessing import resource_tracker

    quiet = "ignore::UserWarning:multiprocessing.resource_tracker"
    added = quiet not in sys.warnoptions
    if added:
        sys.warnoptions.append(quiet)
    try:
        resource_tracker.ensure_running()
    finally:
        if added:
            sys.warnoptions.remove(quiet)


def _worker_init(threads: int, parent_pid: int) -> None:
    # Each worker gets its share of the cores; oversubscribed BLAS/OpenCV threads
    # make N workers slower than one.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("GLOG_minloglevel", "2")
    _exit_with_parent(parent_pid)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:
        pass


def _exit_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    """End this worker when the batch process dies (kill -9 included), instead of running on orphaned.

    A pool's workers never see EOF on their task queue (each holds its write
    end too), and a worker mid-clip finishes it first. Linux: the kernel kills
    us with the parent (PR_SET_PDEATHSIG); everywhere: a daemon thread checks
    the parent id.
    """
    import threading

    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="deepmlf-parent-watch", daemon=True).start()


def _rows(jobs: list[ClipJob], limit: int = 12) -> str:
    """'rows 3, 7, 9' (label-file rows) or 'clips a, b' for the jobs, shortened past `limit`."""
    labelled = all(j.row is not None for j in jobs)
    names = [str(j.row) if labelled else j.key for j in jobs]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    noun = ("row" if labelled else "clip") + ("s" if len(names) != 1 else "")
    return f"{noun} {', '.join(names[:limit])}{more}"


@dataclass
class _Plan:
    """What a run has to do: the clips already done, those to (re)do, and why."""

    results: list[ClipResult]  # the skipped clips (done with this recipe, text and file)
    todo: list[ClipJob]
    stale: dict[str, dict]  # key -> metadata of features that stand, whose text is redone
    notes: list[str]


def _skipped(job: ClipJob, meta: dict) -> ClipResult:
    return ClipResult(
        job.key,
        str(job.path),
        "skipped",
        duration=float(meta.get("duration") or 0.0),
        audio_frames=int(meta["audio_frames"]),
        vision_frames=int(meta["vision_frames"]),
        frames_with_face=int(meta.get("frames_with_face", 0)),
        text_source=meta["transcript"]["source"],
        text_chars=len(meta.get("text") or ""),
    )


def plan_skips(jobs: list[ClipJob], features_dir: Path, recipe: FeatureRecipe) -> _Plan:
    """Which clips are done, which get only a new text, which are (re)done in full.

    A clip is done when its features were made with this feature hash from the
    same media file (size and mtime, else a content hash: `same_media`), and
    its text with this transcript policy from the same label-file text. A new
    file redoes the clip; a new text (policy or label) redoes only the text.
    """
    plan = _Plan([], [], {}, [])
    replaced, policy, relabelled = [], 0, 0
    for job in jobs:
        meta = clip_done(features_dir, job.key, recipe.feature_hash) if job.path is not None else None
        if meta is not None and not same_media(meta.get("media"), job.path):
            replaced.append(job)
            meta = None
        if meta is None:
            plan.todo.append(job)
        elif meta.get("transcript_hash") != recipe.transcript.hash or meta.get("label_text") != job.text:
            policy += meta.get("transcript_hash") != recipe.transcript.hash
            relabelled += meta.get("transcript_hash") == recipe.transcript.hash
            plan.stale[job.key] = meta
            plan.todo.append(job)
        else:
            plan.results.append(_skipped(job, meta))
    if policy:
        plan.notes.append(
            f"{policy} clip(s) keep their audio and face features and get a new transcript "
            "(the transcript settings changed)"
        )
    if relabelled:
        plan.notes.append(
            f"{relabelled} clip(s) keep their audio and face features and get their new text "
            "(the label file's text changed)"
        )
    if replaced:
        plan.notes.append(f"{_rows(replaced)} extracted again: the media file changed since its features were made")
    return plan


def _whisper_preflight(plan: _Plan, recipe: FeatureRecipe, labels: Path | None, labelled: bool) -> list[ClipJob]:
    """Check Whisper once for the clips that need it; the clips that will be transcribed (else fail them).

    A wrong model, backend or language would otherwise fail every clip after
    its audio/face work. Whisper missing (not wrong) fails only the clips that
    need it, or the whole run at once when no other clip could be extracted.
    """
    whisper_jobs = [j for j in plan.todo if not j.problem and recipe.needs_whisper(j.path, j.text)]
    if not whisper_jobs:
        return []
    where = f" of {Path(labels).name if labels else 'label.csv'}" if labelled else ""
    have, need = ("has", "needs") if len(whisper_jobs) == 1 else ("have", "need")
    what = f"{have} no text" if labelled else f"{have} no sidecar transcript"
    try:
        recipe.transcript.check_whisper()
    except (ModelNotCachedError, BackendUnavailableError) as exc:
        needing = {id(j) for j in whisper_jobs}
        others = [j for j in plan.todo if not j.problem and id(j) not in needing]
        if not others and not plan.results:  # nothing could be extracted: one line, at once
            raise ExtractionError(f"{_rows(whisper_jobs)}{where} {what} and {need} Whisper: {exc}") from None
        for job in whisper_jobs:  # a re-run resumes them
            lacks = f"empty text in row {job.row} and no sidecar" if job.row else "no sidecar transcript"
            job.problem = f"{lacks}, and Whisper is unavailable: {exc}"
        plan.notes.append(
            f"{_rows(whisper_jobs)}{where} {what} and {need} Whisper, which is unavailable; "
            "they failed: give their text or a sidecar .txt/.srt/.vtt, or make Whisper available, and re-run"
        )
        return []
    return whisper_jobs


def _transcribed_note(
    whisper_jobs: list[ClipJob], results: list[ClipResult], recipe: FeatureRecipe, labels: Path | None
) -> str | None:
    """The rows that Whisper really gave text to (not those that failed or were silence)."""
    got_text = {
        r.key for r in results if r.status == "done" and r.text_source.startswith("whisper:") and r.text_chars > 0
    }
    transcribed = [j for j in whisper_jobs if j.key in got_text]
    if not transcribed:
        return None
    have = "has" if len(transcribed) == 1 else "have"
    where = Path(labels).name if labels else "label.csv"
    return f"{_rows(transcribed)} of {where} {have} no text: transcribed with Whisper {recipe.transcript.model}"


def _run_jobs(
    todo: list[ClipJob],
    recipe: FeatureRecipe,
    features_dir: Path,
    allow_missing: bool,
    stale: dict[str, dict],
    workers: int,
    on_result: Callable[[ClipResult], None] | None,
) -> list[ClipResult]:
    """Extract the clips, in this process or a pool of `workers`; each result is reported as it comes."""
    results: list[ClipResult] = []

    def report(result: ClipResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    if workers <= 1 or len(todo) <= 1:
        for job in todo:
            report(extract_one(job, recipe, features_dir, allow_missing, stale.get(job.key)))
        return results
    threads = max(1, (os.cpu_count() or 1) // workers)
    quiet_resource_tracker()
    # spawn, not fork: MediaPipe/torch thread pools are not fork-safe.
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=_worker_init, initargs=(threads, os.getpid())
    ) as pool:
        pending = {
            pool.submit(extract_one, job, recipe, features_dir, allow_missing, stale.get(job.key)) for job in todo
        }
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    report(fut.result())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return results


def run_extract(
    inputs: Path,
    out: Path,
    recipe: FeatureRecipe,
    labels: Path | None = None,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    mmsa: bool = False,
    scheme: str | None = None,
    name: str | None = None,
    allow_missing: bool = False,
    on_plan: Callable[[int, int], None] | None = None,
    on_result: Callable[[ClipResult], None] | None = None,
    write_dataset: Callable[..., dict] | None = None,
    label_range: tuple[float, float] | None = None,
) -> ExtractSummary:
    """Extract every clip of `inputs` into `out`, then write a dataset (with labels) or a features manifest.

    allow_missing keeps clips that lack speech, a face or a transcript (else
    each fails with one line). on_plan(total_in_shard, already_done) is called once before work starts;
    on_result(result) after each clip (in the calling process). With a shard,
    only that shard's clips are extracted and nothing is assembled: a final
    run without --shard skips every finished clip and writes the dataset.
    write_dataset(out, **assemble_dataset(...), name=, scheme=, mmsa=, extra=)
    writes a labelled run's dataset and returns its manifest: the CLI passes
    `models.data.format.save_extracted`, the dataset format's one writer.
    label_range: the scheme's label scale (the CLI passes `Scheme.label_range`);
    a label beyond it is a bad row. Phases: plan and skip (`plan_skips`), Whisper preflight, run (serial or
    pooled), write (`_write_outputs`).
    """
    t_start = time.perf_counter()
    out = Path(out)
    features_dir = out / "features"
    if out.exists() and not out.is_dir():
        raise ExtractionError(f"--out {out} is a file; give a directory")
    all_jobs = plan_jobs(inputs, labels, label_range)
    labelled = all_jobs[0].split is not None
    if labelled and not shard and write_dataset is None:
        raise TypeError(
            "run_extract: a labelled extraction writes a dataset; pass write_dataset=models.data.format.save_extracted"
        )
    jobs = [j for j in all_jobs if in_shard(j.key, shard)]
    plan = plan_skips(jobs, features_dir, recipe)
    whisper_jobs = _whisper_preflight(plan, recipe, labels, labelled)
    if on_plan:
        on_plan(len(jobs), len(plan.results))
    for r in plan.results:
        if on_result:
            on_result(r)
    features_dir.mkdir(parents=True, exist_ok=True)
    results = plan.results + _run_jobs(plan.todo, recipe, features_dir, allow_missing, plan.stale, workers, on_result)
    notes = plan.notes
    transcribed = _transcribed_note(whisper_jobs, results, recipe, labels) if labelled else None
    if transcribed:
        notes.append(transcribed)
    noted = [(r.key, note) for r in results if r.status == "done" for note in r.notes]
    notes += [f"clip {key}: {note}" for key, note in noted[:_MAX_CLIP_NOTES]]
    if len(noted) > _MAX_CLIP_NOTES:
        notes.append(f"… and {len(noted) - _MAX_CLIP_NOTES} more notes in the clips' features/*.json ('notes')")
    summary = ExtractSummary(
        out=out,
        results=results,
        elapsed=0.0,
        kind="shard" if shard else ("dataset" if labelled else "features"),
        notes=notes,
    )
    _write_outputs(summary, all_jobs, features_dir, recipe, shard, labelled, name, scheme, mmsa, write_dataset)
    summary.elapsed = time.perf_counter() - t_start
    return summary


def _write_outputs(
    summary: ExtractSummary,
    all_jobs: list[ClipJob],
    features_dir: Path,
    recipe: FeatureRecipe,
    shard: tuple[int, int] | None,
    labelled: bool,
    name: str | None,
    scheme: str | None,
    mmsa: bool,
    write_dataset: Callable[..., dict] | None,
) -> None:
    """errors.tsv, then the dataset (labelled), the features manifest (unlabelled) or nothing (a shard)."""
    out, results = summary.out, summary.results
    failed = [r for r in results if r.status == "failed"]
    errors_path = out / ERRORS_FILE
    if failed:
        write_text(errors_path, "key\tpath\treason\n" + "".join(f"{r.key}\t{r.path}\t{r.reason}\n" for r in failed))
        summary.errors_file = errors_path
    else:
        errors_path.unlink(missing_ok=True)
    ok_keys = {r.key for r in results if r.status in ("done", "skipped")}
    extra = {"failed": [{"key": r.key, "reason": r.reason} for r in failed]} if failed else {}
    if shard:
        summary.notes.append(
            f"shard {shard[0]}/{shard[1]} finished; run the same command without --shard to assemble the output"
        )
    elif labelled:
        good = [j for j in all_jobs if j.key in ok_keys]
        if good:
            assert write_dataset is not None  # a labelled run without it was refused before any work
            summary.manifest = write_dataset(
                out,
                **assemble_dataset(good, features_dir, recipe.to_dict()),
                name=name,
                scheme=scheme,
                mmsa=mmsa,
                extra=extra,
            )
            why = {
                "train": "train has nothing to learn from",
                "valid": "train picks its best epoch on valid clips",
                "test": "there will be no test metrics",
            }
            for split in summary.empty_splits:
                summary.notes.append(
                    f"the {split} split is empty ({why[split]}); give some rows mode {split} "
                    "in the label file, or fix its failed clips"
                )
        else:
            summary.notes.append("no clip could be extracted: no dataset written")
    else:
        metas = []
        audio_names: list[str] = []
        vision_names: list[str] = []
        for job in all_jobs:
            if job.key in ok_keys:
                arrays, meta = load_clip(features_dir, job.key)
                metas.append(meta)
                audio_names = audio_names or [str(x) for x in arrays["audio_names"]]
                vision_names = vision_names or [str(x) for x in arrays["vision_names"]]
        if metas:
            summary.manifest = write_features_manifest(out, metas, recipe.to_dict(), audio_names, vision_names, extra)
        if mmsa:
            summary.notes.append(
                "--format mmsa needs --labels (MMSA pickles hold labelled splits); wrote per-clip features only"
            )
