"""The naive baseline: one Flask process, one thread, one direct model call per request, no
batching.

It does the same work as `/recommend` with the same code: the shared decoder
(`Preprocessing.prepare`), the bundle's compiled query model (`QueryEncoder`, the class the service
and the index builder use) and exact search over the same index, so the service's speed-up measures
batching and concurrency only.
Run by `benchmarks/serve.py`: `python -m benchmarks.naive_flask BUNDLE PORT`.
"""

from __future__ import annotations

import sys

import numpy as np
from flask import Flask, jsonify, request

from jewelry_pipeline.core.bundle import read_bundle
from jewelry_pipeline.core.images import ImageRejected
from jewelry_pipeline.core.query import QueryEncoder
from jewelry_pipeline.core.search import EmbeddingIndex


def create_app(bundle_path: str) -> Flask:
    """A Flask app answering /recommend and /readyz from a bundle."""
    bundle = read_bundle(bundle_path)
    preprocessing, encoder = bundle.preprocessing, QueryEncoder.of_bundle(bundle)
    index = EmbeddingIndex.from_arrays(bundle.index)
    categories = bundle.catalog["category"].to_numpy().astype(str)
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
            image = preprocessing.prepare(upload.read())
        except ImageRejected as exc:
            return jsonify(error=str(exc)), 400
        k = int(request.form.get("k", 10))
        query = encoder.encode(image[None])
        predicted = int(np.argmax(query.probabilities[0]))
        allowed = (
            categories == bundle.class_names[predicted] if encoder.spec.category_scoped else None
        )
        positions, scores = index.search(query.vector(0, predicted)[None], k, allowed=allowed)
        rows = bundle.catalog.iloc[positions[0]]
        return jsonify(
            category=bundle.class_names[predicted],
            items=[
                {"item_id": str(r.item_id), "score": float(s)}
                for r, s in zip(rows.itertuples(), scores[0])
            ],
        )

    return app


if __name__ == "__main__":
    create_app(sys.argv[1]).run(host="127.0.0.1", port=int(sys.argv[2]), threaded=False)
