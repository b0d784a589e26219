"""The default-run benchmark's bookkeeping: ABBA order, the logged node time, the median ratio."""

import pytest

from benchmarks.default_run import median_ratios, node_seconds, run_order


def test_each_block_runs_reference_current_current_reference():
    assert run_order(2) == [
        (0, "reference"),
        (0, "current"),
        (0, "current"),
        (0, "reference"),
        (1, "reference"),
        (1, "current"),
        (1, "current"),
        (1, "reference"),
    ]


def test_node_time_is_the_one_the_run_logs_at_its_end():
    output = (
        "[12/07/26 21:06:57] INFO  Running node: decode_images:   node.py:531\n"
        "   INFO  Node decode_images took 2.1 s; peak memory 310 MB   hooks.py:390\n"
        "   INFO  Node time 574 s; slowest: train_classifier (148 s)   hooks.py:400\n"
    )
    assert node_seconds(output) == 574
    with pytest.raises(RuntimeError, match="no node time"):
        node_seconds("Node decode_images took 2.1 s")


def test_a_blocks_ratio_is_total_over_total_and_steady_drift_cancels():
    # The machine slows by 40 s a run; both trees take 400 s of their own: the ratio is 1.
    drift = [
        {"block": 0, "tree": tree, "seconds": 400.0 + 40 * n, "node_seconds": 300.0 + 30 * n}
        for n, tree in enumerate(("reference", "current", "current", "reference"))
    ]
    assert median_ratios(drift) == {"seconds": 1.0, "node_seconds": 1.0}
    blocks = [
        {"block": block, "tree": tree, "seconds": wall, "node_seconds": nodes}
        for block, tree, wall, nodes in (
            (0, "reference", 400.0, 300.0),
            (0, "current", 600.0, 390.0),
            (1, "reference", 500.0, 300.0),
            (1, "current", 500.0, 360.0),
            (2, "reference", 450.0, 300.0),
            (2, "current", 540.0, 420.0),
        )
    ]
    assert median_ratios(blocks) == {"seconds": 1.2, "node_seconds": 1.3}
