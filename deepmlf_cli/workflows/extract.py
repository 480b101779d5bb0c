"""`deepmlf extract`: raw videos → features (and a dataset with labels) under extract's bar on stderr.

The files are extractors.batch.run_extract's (per-clip features, errors.tsv) and,
with labels, the dataset written by models.data.format.save_extracted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def extract_with_progress(
    inputs: Path,
    out: Path,
    recipe_options: dict[str, Any] | None = None,
    *,
    shard: str | None = None,
    quiet: bool = False,
    **options: Any,
):
    """run_extract(inputs, out, build_recipe(**recipe_options), ...) with a bar of clips done; its summary.

    `shard` is the K/N text of --shard; `options` are run_extract's (labels, workers, mmsa, scheme,
    name, allow_missing). No recipe options: the default recipe.
    """
    from deepmlf_cli.progress import ClipProgress
    from extractors.batch import run_extract
    from extractors.feature_recipe import build_recipe
    from extractors.inputs import parse_shard
    from models.data.format import save_extracted
    from models.io import output_lock
    from models.schemes import Scheme

    shard_kn = parse_shard(shard)
    recipe = build_recipe(**(recipe_options or {}))
    # One writer per dataset folder: two recipes writing one folder would mix their features.
    with output_lock(out, "extraction"), ClipProgress("extract", quiet=quiet, transient=False, rate=True) as bar:
        return run_extract(
            inputs,
            out,
            recipe,
            shard=shard_kn,
            on_plan=bar.on_plan,
            on_result=bar.on_result,
            write_dataset=save_extracted,
            label_range=Scheme.label_range(options.get("scheme")),
            **options,
        )
