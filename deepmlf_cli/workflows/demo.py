"""`deepmlf demo`: the whole job offline on embedded data (what `make demo` runs), reporting as it goes.

1-3. The embedded sample + a tiny local GPT-2 pretrained on the sample's
     grammar: pretrain the AV encoder (also the AV-only model), train a
     text-only model, train DeepMLF from the pretrained AV encoder; evaluate
     each on the test split and compare.
4.   The raw-video path: generate short face clips with speech-like audio and
     a label file, extract features with the default recipe, train a small
     DeepMLF on them, and predict a clip the demo writes (with a sidecar
     transcript), as `deepmlf predict` would.

Re-running resumes: finished steps are skipped. The raw-video run is trained
last, so it is the newest run and `deepmlf predict CLIP` picks it by default.
Unlike the batch workflows this one writes files (everything under `out`) and
prints its steps on stdout: it is the command's whole job.
"""

from __future__ import annotations

from pathlib import Path

# The raw-video corpus of step 4: small, so extraction takes seconds.
VIDEO_SPLITS = ["train"] * 20 + ["valid"] * 4 + ["test"] * 4
VIDEO_CORPUS_SEED = 7
VIDEO_EPOCHS = 30
NEW_CLIP_TEXT = "honestly i really loved the food"


def run_demo(
    out: Path,
    seeds: list[int] | None = None,
    epochs: int = 40,
    lm_steps: int = 1000,
    video_epochs: int = VIDEO_EPOCHS,
    quiet: bool = False,
):
    """Steps 1-4 above; the prediction report of step 4 (None when its face libraries are missing)."""
    import importlib.util
    import json

    from deepmlf_cli.render import stdout
    from deepmlf_cli.resolve import build_spec, load_data
    from deepmlf_cli.views import show_demo_comparison
    from deepmlf_cli.workflows.train import run_and_report
    from models.data.sample import lm_corpus, write_sample_dataset
    from models.io import atomic_write_text
    from models.nn.registry import MODEL_KINDS
    from models.nn.tiny_lm import build_tiny_lm
    from models.run import Run
    from models.training.experiment import av_pretrain_spec
    from models.training.resolution import resolve_spec

    seeds = seeds or [0]
    data_dir = out / "sample"
    if not (data_dir / "manifest.json").is_file():
        write_sample_dataset(data_dir)
    data = load_data(str(data_dir), None, quiet=True)
    lm_dir = out / "tiny-gpt2"
    if not (lm_dir / "config.json").is_file():
        if not quiet:
            stdout.print(f"training the tiny GPT-2 for {lm_steps} steps on the sample's grammar …")
        # Pretrained, like any LM DeepMLF is built on: a random one's states carry
        # too little of the sentence to its last token (see models.data.sample.lm_corpus).
        build_tiny_lm(lm_dir, "gpt2", corpus=lm_corpus(), pretrain_steps=lm_steps)
    stdout.print(
        f"[bold]deepmlf demo[/]: {data.name} dataset ({', '.join(f'{k} {len(v)}' for k, v in data.splits.items())}), "
        f"tiny GPT-2 in {lm_dir}, outputs in {out}"
    )
    results = {}

    def stage(dataset, kind: str, name: str, title: str, train_overrides: dict, **extra) -> dict:
        run_dir = out / name
        spec, chosen = build_spec(
            kind,
            dataset,
            preset="sample",
            config_file=None,
            seeds=seeds,
            model_overrides={"lm": str(lm_dir)},
            train_overrides=train_overrides,
            **extra,
        )
        if kind == "av":
            spec = av_pretrain_spec(spec, chosen.av_pretrain_lr)
        if not quiet:
            stdout.rule(title)
        resolved = resolve_spec(spec, dataset, run_dir, resume=Run(run_dir).exists(), preset=chosen.name)
        return run_and_report(dataset, resolved, quiet=quiet, as_json=False, title=title, device="cpu")

    sample_epochs = {"max_epochs": epochs}
    results["pretrain"] = stage(
        data, "av", "pretrain", "1. AV encoder pretraining (also the AV-only model)", sample_epochs
    )
    if "text" in MODEL_KINDS:
        results["text-only"] = stage(data, "text", "text-only", "2. text-only model (same frozen LM)", sample_epochs)
    results["deepmlf"] = stage(
        data,
        "deepmlf",
        "deepmlf",
        "3. DeepMLF from the pretrained AV encoder (Pre&Tune)",
        sample_epochs,
        init_av=str(out / "pretrain"),
    )
    summary = {name: {"seeds": res["seeds"], "mean": res["mean"], "std": res["std"]} for name, res in results.items()}
    atomic_write_text(out / "demo_results.json", json.dumps(summary, indent=2))
    show_demo_comparison(results)

    missing = [m for m in ("skimage", "cv2", "mediapipe") if importlib.util.find_spec(m) is None]
    if missing:
        stdout.print(
            f"[yellow]note:[/] step 4 (raw video) skipped: {', '.join(missing)} not installed; "
            "install the face extra: pip install -c requirements/constraints.txt -e '.[face]'"
        )
        return None
    if not quiet:
        stdout.rule("4. raw video: generate clips → extract → train → predict")
    video_data, new_clip = _video_dataset(out, quiet)
    video_run = out / "video-deepmlf"
    stage(
        video_data,
        "deepmlf",
        video_run.name,
        "DeepMLF on features extracted from the generated clips",
        {"max_epochs": video_epochs, "batch_size": 8, "patience": video_epochs},
    )
    report = _predict(video_run, new_clip, lm_dir)
    if report.failed:
        return report
    # `predict` without --model finds the newest run under ./runs: say --model when that is not this one.
    in_runs = Path("runs").resolve() in video_run.resolve().parents
    predict_hint = f"deepmlf predict {new_clip}" + ("" if in_runs else f" --model {video_run}")
    stdout.print(
        f"next: [bold]deepmlf evaluate {out / 'deepmlf'}[/] · plots in {out / 'deepmlf'}/seed_*/plots · "
        f"[bold]{predict_hint}[/]"
    )
    return report


def _video_dataset(out: Path, quiet: bool):
    """Write the demo clips (once), extract them into a dataset (resumable); return (dataset, new clip path)."""
    from deepmlf_cli.resolve import load_data
    from deepmlf_cli.workflows.extract import extract_with_progress
    from extractors.dataset import write_text
    from extractors.errors import ExtractionError
    from extractors.synthetic import face_frames, make_audio, write_labelled_corpus, write_media
    from models.data.sample import sample_sentences, text_label
    from models.schemes import Scheme

    texts = sample_sentences(len(VIDEO_SPLITS), seed=VIDEO_CORPUS_SEED)
    # The clips carry no sentiment of their own, so the labels are what the words say.
    labels = [text_label(t) for t in texts]
    videos = out / "videos"
    write_labelled_corpus(videos, texts, labels, VIDEO_SPLITS)
    new_clip = out / "new_clip.mp4"
    if not new_clip.is_file():
        write_media(new_clip, face_frames(20), 10.0, make_audio(2.0, "speech", seed=99))
    write_text(new_clip.with_suffix(".txt"), NEW_CLIP_TEXT + "\n")  # sidecar transcript
    # No recipe options: the default recipe.
    summary = extract_with_progress(videos, out / "video-dataset", quiet=quiet, scheme=Scheme.SIMS, name="demo-videos")
    if summary.failed:
        raise ExtractionError(f"{len(summary.failed)} generated clip(s) failed to extract; see {summary.errors_file}")
    return load_data(str(out / "video-dataset"), None, quiet=True), new_clip


def _predict(run_dir: Path, clip: Path, lm_dir: Path):
    """The new clip predicted with the run just trained, as `deepmlf predict` shows it.

    With the demo's own LM folder: the run records where it was (absolute), and a copied or moved
    runs/demo has it here now (its weights' fingerprint is checked all the same).
    """
    from deepmlf_cli.views import render_report
    from deepmlf_cli.workflows.predict import predict_paths

    report = predict_paths([clip], run_dir=run_dir, lm=str(lm_dir))
    render_report(report)
    return report
