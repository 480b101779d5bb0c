"""PNG plots saved in a run: training curves, predicted vs. true, confusion matrices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.io import atomic_write
from models.schemes import Scheme


def pyplot():
    """matplotlib.pyplot on the Agg backend (imported on first use: it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 110) -> None:
    """Save under a temporary name, then rename (a crash never leaves half a PNG); closes the figure."""
    try:
        atomic_write(Path(path), lambda handle: fig.savefig(handle, format="png", dpi=dpi, bbox_inches="tight"))
    finally:
        pyplot().close(fig)


def class_bins(values: np.ndarray, scheme: str, n_classes: int) -> tuple[np.ndarray, list[str]]:
    """Class index per value and class names: 2 and 7 bins (mosi), 2 and 5 bins (sims), as the metrics bin."""
    scheme = Scheme.parse(scheme)
    index = scheme.classes(values, n_classes)  # (N,)
    if scheme is Scheme.SIMS:
        names = {2: ["neg", "pos"], 5: ["strong neg", "weak neg", "neutral", "weak pos", "strong pos"]}[n_classes]
        return index, names
    if n_classes == 2:
        return index, ["neg", "non-neg"]
    bound = (n_classes - 1) // 2
    return index, [str(v) for v in range(-bound, bound + 1)]


def plot_curves(history: Sequence[dict[str, Any]], path: Path) -> Path:
    """Training loss and validation L1 per epoch; the best epoch marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss (total)")
    ax.plot(epochs, [h["valid_l1"] for h in history], label="validation L1")
    best = [h["epoch"] for h in history if h.get("best")]
    if best:
        ax.axvline(best[-1], color="grey", linestyle=":", label=f"best epoch {best[-1]}")
    ax.set_xlabel("epoch")
    ax.legend()
    ax.set_title("Training curves")
    save_figure(fig, path)
    return path


def plot_scatter(predictions: np.ndarray, labels: np.ndarray, scheme: str, path: Path) -> Path:
    """Predicted against true sentiment with the identity line."""
    plt = pyplot()
    bound = Scheme.parse(scheme).scale[1]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(labels, predictions, s=8, alpha=0.6)
    ax.plot([-bound, bound], [-bound, bound], color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(-bound * 1.05, bound * 1.05)
    ax.set_ylim(-bound * 1.05, bound * 1.05)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title("Predicted vs. true (test)")
    save_figure(fig, path)
    return path


def plot_confusions(predictions: np.ndarray, labels: np.ndarray, scheme: str, path: Path) -> Path:
    """Confusion matrices of the 2-class and the 7-class (mosi) / 5-class (sims) bins."""
    plt = pyplot()
    fine = Scheme.parse(scheme).finest_classes
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, n in zip(axes, (2, fine)):
        truth, names = class_bins(labels, scheme, n)
        pred, _ = class_bins(predictions, scheme, n)
        matrix = np.zeros((n, n), dtype=int)
        np.add.at(matrix, (truth, pred), 1)
        ax.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8)
        ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{n}-class")
    save_figure(fig, path)
    return path
