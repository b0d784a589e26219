"""The project's CSV tables keep ids, names and digests as text, however numeric they look."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from jewelry_pipeline.core.lookup import read_table
from jewelry_pipeline.datasets import OptionalCSVDataset, TableDataset

ROWS = pd.DataFrame(
    {
        "item_id": ["73e2004501635313", "0000000000000042", "a83a953ba78cbacc"],
        "category": ["7", "007", "1e5"],
        "path": ["7/1.png", "007/2.png", "1e5/3.png"],
        "store_index": [0, 1, 2],
    }
)


def test_table_dataset_round_trip_keeps_text_columns_as_text(tmp_path):
    dataset = TableDataset(filepath=str(tmp_path / "manifest.csv"))
    dataset.save(ROWS)
    loaded = dataset.load()
    assert loaded["item_id"].tolist() == ROWS["item_id"].tolist()  # no float, no lost zeros
    assert loaded["category"].tolist() == ["7", "007", "1e5"]
    assert loaded["store_index"].dtype.kind == "i"  # numbers stay numbers


def test_plain_pandas_would_have_changed_them(tmp_path):
    ROWS.iloc[1:].to_csv(tmp_path / "manifest.csv", index=False)
    plain = pd.read_csv(tmp_path / "manifest.csv")
    assert plain["category"].tolist() == [7.0, 100000.0]  # what the text columns guard against
    assert read_table(tmp_path / "manifest.csv")["category"].tolist() == ["007", "1e5"]


def test_optional_table_keeps_text_columns_as_text(tmp_path):
    pd.DataFrame({"path": ["7/1.png"], "category": ["7"], "substyle": ["2"]}).to_csv(
        tmp_path / "substyles.csv", index=False
    )
    loaded = OptionalCSVDataset(str(tmp_path / "substyles.csv"), ["path", "category"]).load()
    assert loaded.iloc[0].tolist() == ["7/1.png", "7", "2"]


def test_every_csv_table_in_the_catalog_keeps_text_columns():
    text = (Path(__file__).parents[2] / "conf" / "base" / "catalog.yml").read_text()
    types = []

    def collect(entry):
        if isinstance(entry, dict):
            types.extend([entry["type"]] if "type" in entry else [])
            for value in entry.values():
                collect(value)

    collect(yaml.safe_load(text))
    csv_types = {t for t in types if "CSV" in t or "Table" in t}
    assert csv_types == {
        "jewelry_pipeline.datasets.TableDataset",
        "jewelry_pipeline.datasets.OptionalCSVDataset",
    }
