"""The deferred kedro-mlflow hook: what it hands on to kedro-mlflow's own."""

from __future__ import annotations

from jewelry_pipeline.plugins import DeferredMlflowHook


class RecordingHook:
    """Stands in for kedro-mlflow's hook: keeps the inputs of each `before_node_run`."""

    def __init__(self) -> None:
        self.inputs: list[dict] = []

    def before_node_run(self, node, catalog, inputs, is_async) -> None:
        self.inputs.append(inputs)


def test_each_parameter_input_is_handed_on_once_per_value_and_datasets_always():
    deferred = DeferredMlflowHook()
    deferred._hook = recording = RecordingHook()
    shared = {"training": {"epochs": 3}, "seed": 1}
    for inputs in (
        {"params:autoencoders": shared, "ring.autoencoder_inputs": "a"},
        {"params:autoencoders": dict(shared), "earring.autoencoder_inputs": "b"},
        {"params:autoencoders": {**shared, "seed": 2}, "parameters": {"x": 1}},
        {"parameters": {"x": 1}, "params:seed": 1},
    ):
        deferred.before_node_run(node=None, catalog=None, inputs=inputs, is_async=False)
    assert recording.inputs == [
        {"params:autoencoders": shared, "ring.autoencoder_inputs": "a"},
        {"earring.autoencoder_inputs": "b"},  # the same value again: not logged twice
        {"params:autoencoders": {**shared, "seed": 2}, "parameters": {"x": 1}},  # a new value
        {"params:seed": 1},
    ]


def test_an_untracked_run_hands_nothing_on():
    deferred = DeferredMlflowHook()
    deferred.before_node_run(node=None, catalog=None, inputs={"params:x": 1}, is_async=False)
    assert deferred._passed_params == {}
