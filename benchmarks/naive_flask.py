"""The naive baseline: one Flask process, one thread, one `model.predict` per request (the original design).

It does the same work as `/recommend`: the shared decoder, the classifier, the predicted category's
encoder on the foreground map when the index holds autoencoder (or combined) vectors, and exact
search over the same index. Run by `benchmarks/serve.py`: `python benchmarks/naive_flask.py BUNDLE PORT`.
"""

from __future__ import annotations

import sys

import numpy as np
from flask import Flask, jsonify, request

from jewelry_pipeline.bundle import read_bundle
from jewelry_pipeline.images import DecodeLimits, Foreground, ImageRejected, autoencoder_inputs, model_input
from jewelry_pipeline.models.classifier import features_model
from jewelry_pipeline.search import CATEGORY_SCOPED_SOURCES, ENCODED_SOURCES, EmbeddingIndex, combined_vectors, descriptor_vectors, l2_normalise


def create_app(bundle_path: str) -> Flask:
    """A Flask app answering /recommend and /readyz from a bundle."""
    bundle = read_bundle(bundle_path)
    size = int(bundle.config["preprocessing"]["image_size"])
    limits = DecodeLimits.from_config(bundle.config["preprocessing"])
    source = str(bundle.index["source"])
    layout = tuple(int(v) for v in bundle.index["descriptor_layout"]) if source == "descriptor" else None
    model = features_model(bundle.classifier, layout)
    index = EmbeddingIndex.from_arrays(bundle.index)
    catalog = bundle.catalog
    scoped = source in CATEGORY_SCOPED_SOURCES
    foreground = Foreground.from_config(bundle.config["preprocessing"]) if source in ENCODED_SOURCES else None
    app = Flask("naive")

    @app.get("/readyz")
    def readyz():
        return "ok"

    @app.post("/recommend")
    def recommend():
        upload = request.files.get("image")
        if upload is None:
            return jsonify(error="missing image"), 400
        try:
            image = model_input(upload.read(), size, limits)
        except ImageRejected as exc:
            return jsonify(error=str(exc)), 400
        k = int(request.form.get("k", 10))
        embedding, probabilities, *pooled = model.predict(image[None].astype(np.float32), verbose=0)
        category = bundle.class_names[int(np.argmax(probabilities[0]))]
        allowed = catalog["category"].to_numpy() == category if scoped else None
        if pooled:
            embedding = descriptor_vectors(pooled[0])
        if foreground is not None:
            inputs = autoencoder_inputs(image[None], np.arange(1), bundle.config["preprocessing"].get("autoencoder_input", "foreground"), foreground)
            codes = bundle.encoders[category].predict(inputs, verbose=0)
            if source == "combined":
                codes = combined_vectors(embedding, codes, float(bundle.index["combined_autoencoder_weight"]))
            embedding = codes
        positions, scores = index.search(l2_normalise(embedding), k, allowed=allowed)
        rows = catalog.iloc[positions[0]]
        return jsonify(
            category=category,
            items=[{"item_id": str(r.item_id), "score": float(s)} for r, s in zip(rows.itertuples(), scores[0])],
        )

    return app


if __name__ == "__main__":
    create_app(sys.argv[1]).run(host="127.0.0.1", port=int(sys.argv[2]), threaded=False)
