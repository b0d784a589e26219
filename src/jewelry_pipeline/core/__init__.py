"""The core both shells stand on.
Images, store, search, the query contract, models, bundle, metrics.

It imports no kedro, mlflow or bentoml (enforced by tests/test_architecture.py); the pipelines and
the service are thin shells on it.
"""
