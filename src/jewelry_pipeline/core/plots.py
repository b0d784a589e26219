"""Matplotlib figures for reports.
Confusion matrix, learning curves, learning rate, image galleries."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def confusion_matrix_figure(matrix: np.ndarray, class_names: Sequence[str]) -> Figure:
    """A confusion matrix heat map with the count in every cell."""
    size = 1.2 + 0.6 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set(
        xticks=range(len(class_names)),
        yticks=range(len(class_names)),
        xlabel="predicted",
        ylabel="true",
    )
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(class_names)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            str(count),
            ha="center",
            va="center",
            color="white" if count > threshold else "black",
        )
    ax.set_title("Confusion matrix (test split)")
    fig.tight_layout()
    return fig


def learning_curves_figure(history: dict[str, list[float]]) -> Figure:
    """Loss and accuracy per epoch, train against validation."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, label in ((metric, "train"), (f"val_{metric}", "val")):
            if key in history:
                ax.plot(range(1, len(history[key]) + 1), history[key], marker="o", label=label)
        ax.set(title=metric, xlabel="epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def learning_rate_figure(learning_rates: Sequence[float]) -> Figure:
    """The learning rate used in each epoch (log scale)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(learning_rates) + 1), learning_rates, marker="o")
    ax.set(title="learning rate", xlabel="epoch", yscale="log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def gallery_figure(
    images: Sequence[np.ndarray], captions: Sequence[str], title: str, columns: int = 6
) -> Figure:
    """A grid of images with a caption under each; an explicit note when there are none."""
    if len(images) == 0:
        fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, f"{title}: none", ha="center", va="center")
        return fig
    columns = min(columns, len(images))
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.9, rows * 2.2), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        ax.imshow(image)
        ax.set_title(caption, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
