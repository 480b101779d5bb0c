"""`Predictor`: one trained run, loaded once, that predicts clips (used by `deepmlf predict` and `deepmlf serve`).

It composes the two library packages, which never import each other: the model
(`models`) and the feature pipeline of the run's own recipe (`extractors`),
both loaded once; every check that concerns the run rather than a clip (the
feature sizes, the scheme, the Whisper settings) is done once, at load.

    from deepmlf_cli.predictor import Predictor
    predictor = Predictor.load("runs/demo/video-deepmlf")
    result = predictor.predict("clip.mp4")   # the dict `deepmlf predict --json` prints

Result schema: deepmlf_cli/workflows/predict.py's docstring.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from extractors.feature_recipe import FeatureRecipe
    from extractors.pipeline import Pipeline
    from models.checkpoint import LoadedModel
    from models.schemes import Scheme

DEFAULT_RUNS = Path("runs")
DEFAULT_WINDOW_S = 10.0


def latest_run(root: Path = DEFAULT_RUNS) -> Path:
    """The run under `root` (recursive) whose run.json is newest and that holds a checkpoint."""
    from models.run import Run

    return Run.latest(root).path


def model_recipe(meta: dict, checkpoint: Path) -> FeatureRecipe:
    """The feature recipe stored with the model's training data (validated), or a plain error when there is none."""
    from extractors.feature_recipe import FeatureRecipe
    from models.errors import CheckpointError

    dataset = meta.get("dataset") or {}
    recipe = dataset.get("recipe")
    if not recipe:
        raise CheckpointError(
            f"{checkpoint} was trained on {dataset.get('name', 'a dataset')} features that cannot be computed from raw "
            f"video (e.g. the MMSA pickles' COVAREP/Facet/OpenFace features); to predict on videos, train on extracted "
            f"features: `deepmlf extract videos/ --labels label.csv --out data/my` then `deepmlf train --dataset data/my`, "
            f"and pass that run to --model"
        )
    return FeatureRecipe.from_dict(recipe)


def failed_result(key: str, path: Path | str, reason: str) -> dict[str, Any]:
    """A failed clip's result: its one-line reason, every other field null."""
    return {
        "path": str(path),
        "key": key,
        "status": "failed",
        "error": reason,
        "score": None,
        "raw_score": None,
        "polarity": None,
        "heads": None,
        "raw_heads": None,
        "scale": None,
        "transcript": None,
        "transcript_source": None,
        "duration": None,
        "timings": None,
    }


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (the CLI's one-line form), its type when it has none."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass
class Predictor:
    """A loaded run, its recipe's feature pipeline and the device: predicts one clip at a time.

    Build it with `Predictor.load`. `predict` raises on a bad clip (the error's
    first line is what the CLI prints); `predict_safe` returns that clip's
    failed result instead. Not thread-safe: one prediction at a time (the
    server queues requests in front of it).
    """

    run_dir: Path
    checkpoint: Path
    loaded: LoadedModel
    recipe: FeatureRecipe
    pipeline: Pipeline
    device: str
    scheme: Scheme
    reads: frozenset[str]
    notes: list[str] = field(default_factory=list)

    @classmethod
    def load(
        cls,
        model: Path | str | None = None,
        *,
        runs_root: Path = DEFAULT_RUNS,
        device: str = "cpu",
        lm: str | None = None,
        lm_mismatch_ok: bool = False,
        whisper: dict[str, str | None] | None = None,
        no_whisper: bool = False,
    ) -> Predictor:
        """Load the run `model` (a run directory or checkpoint; default the newest under `runs_root`).

        whisper: overrides of the recipe's transcript settings (keys model, backend, language, task;
        None keeps the recipe's): text only, audio and face stay exactly as trained.
        no_whisper: never run Whisper (sidecar text, else empty).
        lm_mismatch_ok: use an `lm` whose weights differ from the run's (refused by default).
        Raises (one-line errors) when the run, its recipe or its feature sizes do not fit.
        """
        from extractors.pipeline import Pipeline
        from models.checkpoint import load_model
        from models.errors import CheckpointError
        from models.evaluation.predict import check_feature_sizes, model_scheme
        from models.nn.registry import model_inputs
        from models.run import Run

        run_dir = Path(model) if model is not None else latest_run(runs_root)
        if not run_dir.exists():
            raise CheckpointError(f"model run not found: {run_dir}; pass --model RUN_DIR written by `deepmlf train`")
        checkpoint = Run(run_dir).best()
        loaded = load_model(checkpoint, device, lm=lm, lm_mismatch_ok=lm_mismatch_ok)
        recipe = model_recipe(loaded.meta, checkpoint)
        if whisper and any(v is not None for v in whisper.values()):
            recipe = recipe.with_transcript(**whisper)
        reads = frozenset(model_inputs(loaded.meta.get("kind", "deepmlf")))
        if "text" not in reads:  # an AV or audio/vision-only model: never transcribe
            recipe = recipe.with_transcript(mode="none")
        elif no_whisper and recipe.transcript.mode in ("auto", "whisper"):
            recipe = recipe.with_transcript(mode="given")
        pipeline = Pipeline(recipe)  # validates the recipe and loads the extractors, once
        check_feature_sizes(loaded, len(pipeline.audio.feature_names()), len(pipeline.face.feature_names()))
        predictor = cls(run_dir, checkpoint, loaded, recipe, pipeline, device, model_scheme(loaded), reads)
        predictor.notes.extend(loaded.notes)  # e.g. an older run whose LM is not fingerprinted
        diffs = recipe.version_differences()
        if diffs:
            predictor.notes.append("features may differ slightly from training: " + ", ".join(diffs))
        return predictor

    # ----------------------------------------------------------------------- what the run is
    def needs(self, allow_missing: bool = False) -> frozenset[str]:
        """What every clip must have: what the recipe extracts and this model reads (nothing with allow_missing)."""
        return frozenset() if allow_missing else self.recipe.modalities & self.reads

    def check_whisper(self, paths: list[Path], transcript: str | None = None) -> None:
        """One line now (model, backend, language) when any of `paths` will need Whisper, not one failure per clip."""
        if any(p.is_file() and self.recipe.needs_whisper(p, transcript) for p in paths):
            self.recipe.transcript.check_whisper()

    def card(self) -> dict[str, Any]:
        """What the run is: its name, model kind, LM, dataset, scale, feature recipe and test metrics (results.json).

        preset: the one run.json records, null when it records none; test_metrics: the mean over
        seeds of each metric (empty for a lone checkpoint or an unfinished run).
        """
        from models.errors import DeepMLFError
        from models.run import Run

        meta = self.loaded.meta
        run = Run(self.run_dir)
        results, preset = None, None
        try:
            results = run.results()
            preset = run.info().get("preset") if run.exists() else None
        except DeepMLFError:  # a corrupt results.json costs the card its metrics, not the server its start
            results = None
        dataset = meta.get("dataset") or {}
        return {
            "run": self.run_dir.name,
            "path": str(self.run_dir),
            "kind": meta.get("kind", "deepmlf"),
            "preset": preset,
            "lm": Path(str(self.loaded.config.lm)).name,
            "dataset": dataset.get("name"),
            "scheme": str(self.scheme),
            "scale": list(self.scheme.scale),
            "reads": sorted(self.reads),
            "feature_recipe": self.recipe.to_dict(),
            "test_metrics": dict((results or {}).get("mean", {})),
            "primary_metrics": list((results or {}).get("primary", [])),
        }

    # ----------------------------------------------------------------------- one clip
    def predict(
        self,
        path: Path | str,
        *,
        key: str | None = None,
        transcript: str | None = None,
        segment: bool = False,
        window: float = DEFAULT_WINDOW_S,
        allow_missing: bool = False,
    ) -> dict[str, Any]:
        """The result dict of one clip (`deepmlf predict --json`'s schema); raises on a bad or incomplete clip.

        A clip without speech, a face or a transcript fails unless `allow_missing`; with `segment`
        only a missing audio or video track does, and windows without words follow the transcript
        rule as a whole (every window empty is an empty transcript).
        """
        from models.errors import ConfigError

        path = Path(path)
        if window <= 0:
            raise ConfigError(f"--window must be positive, not {window}")
        if not path.exists():
            raise FileNotFoundError(f"file not found: {path}")
        key = key if key is not None else path.stem
        needs = self.needs(allow_missing)
        if segment:
            return self._predict_segments(key, path, transcript, window, needs)
        return self._predict_one(key, path, transcript, needs)

    def predict_safe(
        self, path: Path | str, *, key: str | None = None, shown_as: str | None = None, **options: Any
    ) -> dict[str, Any]:
        """`predict`, with a bad clip answered as its failed result (the one-line error) instead of raised.

        shown_as: the name the result's "path" shows (an upload's original name; never opened).
        """
        from extractors.errors import ExtractionError
        from models.errors import DeepMLFError

        path = Path(path)
        key = key if key is not None else path.stem
        try:
            result = self.predict(path, key=key, **options)
        except (ExtractionError, DeepMLFError, OSError) as exc:
            result = failed_result(key, path, one_line(exc))
        except Exception as exc:  # noqa: BLE001 — a batch carries on past any bad clip
            result = failed_result(key, path, f"{type(exc).__name__}: {one_line(exc)}")
        if shown_as is not None:
            result["path"] = shown_as
            if result["error"]:
                result["error"] = result["error"].replace(str(path), shown_as)
        return result

    def _predict_one(self, key: str, path: Path, transcript: str | None, needs: frozenset[str]) -> dict[str, Any]:
        from extractors.pipeline import require_modalities
        from models.evaluation.predict import ClipInput, predict_features

        feats = self.pipeline.extract(path, transcript)
        require_modalities(path, feats.info, feats.text, "predict", needs)
        t0 = time.perf_counter()
        pred = predict_features(
            self.loaded, [ClipInput(feats.audio, feats.vision, feats.text, key)], device=self.device
        )[0]
        timings = {**feats.info["timings"], "model_s": round(time.perf_counter() - t0, 4)}
        return {
            "path": str(path),
            "key": key,
            "status": "ok",
            "error": None,
            **pred.to_dict(),
            "transcript": feats.text,
            "transcript_source": feats.transcript.source,
            "duration": feats.info["duration"],
            "timings": timings,
        }

    def _predict_segments(
        self, key: str, path: Path, transcript: str | None, window: float, needs: frozenset[str]
    ) -> dict[str, Any]:
        from extractors.media import probe
        from extractors.pipeline import require_modalities
        from extractors.segments import extract_segments, segment_clip
        from models.evaluation.predict import ClipInput, predict_features
        from models.evaluation.timeline import clip_verdict, segment_rows

        info = probe(path)
        tracks = {"has_audio": info.has_audio, "has_video": info.has_video}
        # A long video's silent or faceless stretches are normal: only a missing track fails it here.
        require_modalities(path, tracks, None, "predict", needs)
        t0 = time.perf_counter()
        spans, full = segment_clip(path, self.recipe, transcript, info.duration, info.has_audio, window, self.pipeline)
        # The empty-transcript rule, per window: a model that reads text scored from no words at all is
        # the same error as an empty transcript (issue 19 item 7: --segment --no-whisper without sidecar).
        require_modalities(path, tracks, " ".join(s.text for s in spans), "predict", needs)
        timings = {"audio_s": 0.0, "face_s": 0.0, "transcript_s": time.perf_counter() - t0}
        inputs = []
        for i, (span, feats) in enumerate(zip(spans, extract_segments(path, self.recipe, spans, self.pipeline))):
            timings["audio_s"] += feats.info["timings"]["audio_s"]
            timings["face_s"] += feats.info["timings"]["face_s"]
            inputs.append(ClipInput(feats.audio, feats.vision, span.text, f"{key}#{i}"))
        t0 = time.perf_counter()
        preds = predict_features(self.loaded, inputs, device=self.device)
        timings["model_s"] = time.perf_counter() - t0
        return {
            "path": str(path),
            "key": key,
            "status": "ok",
            "error": None,
            **clip_verdict(spans, preds).to_dict(),
            "transcript": full.text,
            "transcript_source": full.source,
            "duration": round(info.duration, 4),
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "segments": segment_rows(spans, preds),
        }
