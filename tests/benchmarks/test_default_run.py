"""The default-run benchmark's bookkeeping: interleaved order, logged node time, median ratios."""

from benchmarks.default_run import median_ratios, node_seconds, run_order


def test_pairs_run_in_abba_order():
    assert run_order(3) == [
        (0, "reference"),
        (0, "current"),
        (1, "current"),
        (1, "reference"),
        (2, "reference"),
        (2, "current"),
    ]


def test_node_time_is_the_sum_of_the_logged_node_times():
    output = (
        "[12/07/26 21:06:57] INFO  Running node: decode_images:   node.py:531\n"
        "   INFO  Node decode_images took 2.1 s; peak memory 310 MB   hooks.py:390\n"
        "   INFO  Node train_classifier took 148.0 s   hooks.py:358\n"
        "   INFO  Categories: bracelet (500) took 3 s per photo\n"
    )
    assert node_seconds(output) == 150.1
    assert node_seconds("no nodes here") == 0


def test_the_ratio_is_the_median_of_the_pairs_own_ratios():
    rows = [
        {"pair": pair, "tree": tree, "seconds": wall, "node_seconds": nodes}
        for pair, tree, wall, nodes in (
            (0, "reference", 400.0, 300.0),
            (0, "current", 600.0, 360.0),  # 1.5 and 1.2
            (1, "current", 500.0, 390.0),
            (1, "reference", 500.0, 300.0),  # 1.0 and 1.3
            (2, "reference", 450.0, 300.0),
            (2, "current", 540.0, 420.0),  # 1.2 and 1.4
        )
    ]
    assert median_ratios(rows) == {"seconds": 1.2, "node_seconds": 1.3}
