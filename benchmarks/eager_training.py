"""When a Keras training is cheaper run eagerly than traced: tracing the train and test steps is a
fixed cost, an eager step costs more than a traced one. Checks `EAGER_MAX_STEPS`.

`python -m benchmarks.eager_training [--sizes 32x16,64x64,128x32] [--steps 8]`. For the project's
CNN classifier and autoencoder (the base parameters' architectures) at each size (photo side x
batch), fresh models fit one epoch of 1 and of `--steps` train batches (and one validation batch),
traced and eager; from those, the fixed cost of tracing and the cost of one step each way, and the
most steps at which eager is ahead, against the project's limit (`eager_step_limit`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from benchmarks._report import ROOT, markdown_table, publish


def _parameters(pipeline: str) -> dict:
    """A pipeline's base parameters."""
    import yaml

    text = (ROOT / "conf" / "base" / f"parameters_{pipeline}.yml").read_text()
    return yaml.safe_load(text.replace("${seed}", "0"))[pipeline]


def _autoencoder(side: int) -> Callable:
    """A fit of the project's contrastive autoencoder on `side` px gray maps."""
    import keras

    from jewelry_pipeline.core.models.autoencoder import (
        ContrastiveAutoencoder,
        build_autoencoder,
        view_augmenter,
    )

    params = _parameters("autoencoders")

    def fit(x: np.ndarray, batch: int, eager: bool) -> None:
        _, encoder, decoder = build_autoencoder(side, **params["architecture"], channels=1)
        contrastive = params["contrastive"]
        trainer = ContrastiveAutoencoder(
            encoder,
            decoder,
            view_augmenter(params["views"], 0),
            int(contrastive["projection_dim"]),
            float(contrastive["temperature"]),
            float(contrastive["weight"]),
        )
        trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
        trainer.projection.build((None, int(encoder.output.shape[-1])))
        trainer.optimizer.build(trainer.trainable_variables)
        trainer.run_eagerly = eager
        gray = x[..., :1]
        trainer.fit(gray, validation_data=gray[:batch], epochs=1, batch_size=batch, verbose=0)

    return fit


def _classifier(side: int) -> Callable:
    """A fit of the project's CNN classifier on `side` px colour photos, four classes."""
    import keras

    from jewelry_pipeline.core.models.classifier import build_classifier

    architecture = {
        k: v for k, v in _parameters("classifier")["architecture"].items() if k != "input_size"
    }

    def fit(x: np.ndarray, batch: int, eager: bool) -> None:
        model = build_classifier(side, 4, **architecture)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"],
        )
        model.run_eagerly = eager
        labels = np.arange(len(x)) % 4
        model.fit(
            x,
            labels,
            validation_data=(x[:batch], labels[:batch]),
            epochs=1,
            batch_size=batch,
            verbose=0,
        )

    return fit


MODELS = {"classifier": _classifier, "autoencoder": _autoencoder}


def measure(name: str, side: int, batch: int, steps: int) -> dict:
    """Fit times of `name` at 1 and `steps` train batches, traced and eager."""
    from jewelry_pipeline.core.models.data import seed_everything

    seed_everything(0)
    fit = MODELS[name](side)
    photos = np.random.default_rng(0).uniform(0, 255, (batch * steps, side, side, 3))
    photos = photos.astype(np.float32)
    fit(photos[:batch], batch, True)  # warm TensorFlow's kernels up once, untimed
    seconds = {}
    for mode, eager in (("traced", False), ("eager", True)):
        for count in (1, steps):
            started = time.perf_counter()
            fit(photos[: batch * count], batch, eager)
            seconds[f"{mode}_{count}"] = time.perf_counter() - started
    per_step = {
        mode: (seconds[f"{mode}_{steps}"] - seconds[f"{mode}_1"]) / (steps - 1)
        for mode in ("traced", "eager")
    }
    eager_extra = per_step["eager"] - per_step["traced"]
    fixed_saved = seconds["traced_1"] - seconds["eager_1"]
    # A 1-step fit takes 2 steps (one train, one validation batch); each step more costs eager
    # `eager_extra` more, until the tracing it saved is spent.
    if fixed_saved <= 0:
        ahead_up_to = 0
    else:
        ahead_up_to = int(2 + fixed_saved / eager_extra) if eager_extra > 0 else None
    return {
        "model": name,
        "side": side,
        "batch": batch,
        "fit_seconds": {key: round(value, 3) for key, value in seconds.items()},
        "step_seconds": {mode: round(value, 4) for mode, value in per_step.items()},
        "eager_ahead_up_to_steps": ahead_up_to,
    }


def main(argv: list[str] | None = None) -> dict:
    from jewelry_pipeline.core.models.data import (
        EAGER_MAX_PIXELS,
        EAGER_MAX_STEPS,
        eager_step_limit,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32x16,64x64,128x32", help="SIDExBATCH,...")
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args(argv)
    sizes = [tuple(map(int, size.split("x"))) for size in args.sizes.split(",")]
    rows = [measure(name, side, batch, args.steps) for side, batch in sizes for name in MODELS]
    for row in rows:
        row["project_limit_steps"] = eager_step_limit(row["batch"], row["side"])
        measured = row["eager_ahead_up_to_steps"]
        row["limit_holds"] = measured is None or row["project_limit_steps"] <= measured
    holds = all(row["limit_holds"] for row in rows)
    table = [
        {
            "model": r["model"],
            "photos": f"{r['batch']} of {r['side']} px",
            "fit, 1 step traced (s)": r["fit_seconds"]["traced_1"],
            "fit, 1 step eager (s)": r["fit_seconds"]["eager_1"],
            "step traced (s)": r["step_seconds"]["traced"],
            "step eager (s)": r["step_seconds"]["eager"],
            "eager ahead up to (steps)": r["eager_ahead_up_to_steps"] or "always",
            "project's limit (steps)": r["project_limit_steps"],
            "limit holds": "yes" if r["limit_holds"] else "**no**",
        }
        for r in rows
    ]
    section = (
        "## Eager or traced training (`benchmarks/eager_training.py`)\n\n"
        "A short `fit` runs eagerly, a longer one traced (`core.models.data.eager_when_short`): "
        "tracing the train and test steps is a fixed cost that a few steps do not pay back, and an "
        "eager step costs more the more pixels it carries. Short: at most "
        f"{EAGER_MAX_STEPS} steps (train and validation batches over every epoch) and "
        f"{EAGER_MAX_PIXELS:,} photo pixels in all. Fresh models of the base parameters' "
        f"architectures, one epoch of 1 or {args.steps} train batches plus one validation "
        "batch.\n\n"
        + markdown_table(table, list(table[0]))
        + "\n\n"
        + (
            "The project's limit is within what was measured at every size."
            if holds
            else "The project's limit is **beyond** what was measured at some size."
        )
    )
    result = {
        "eager_max_steps": EAGER_MAX_STEPS,
        "eager_max_pixels": EAGER_MAX_PIXELS,
        "holds": holds,
        "rows": rows,
    }
    publish("eager_training", result, section)
    return result


if __name__ == "__main__":
    main()
