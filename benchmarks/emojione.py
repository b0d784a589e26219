"""Colour drawings for the quality benchmark: the EmojiOne PNGs of Debian's `ruby-gemojione` as a
folder tree.

Categories are the package's own `category` field (`config/index.json`); the sub-style is the
emoji's Unicode subgroup from Debian's `unicode-data` (`emoji-test.txt`). Skin-tone variants and
categories with fewer than 40 drawings are left out.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

GEM_DIR = Path("/usr/share/rubygems-integration/all/gems/gemojione-3.3.0")
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
DEBIAN_PACKAGES = ("ruby-gemojione", "unicode-data")
SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}
MIN_PER_CATEGORY = 40


def _codes(text: str) -> tuple[str, ...]:
    """Code points of an emoji, upper case, without variation selectors."""
    codes = (code.upper() for code in text.replace(" ", "-").split("-") if code)
    return tuple(code for code in codes if code != "FE0F")


def subgroups(emoji_test: Path = EMOJI_TEST) -> dict[tuple[str, ...], str]:
    """Code points -> Unicode subgroup, from `emoji-test.txt`."""
    found, current = {}, None
    for line in emoji_test.read_text(encoding="utf-8").splitlines():
        if line.startswith("# subgroup:"):
            current = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#") and ";" in line and current:
            found.setdefault(_codes(line.split(";", 1)[0].strip()), current)
    return found


def drawings(gem_dir: Path = GEM_DIR, emoji_test: Path = EMOJI_TEST) -> list[dict[str, str]]:
    """Every usable drawing: its PNG, category and sub-style (skin tones and unknown ones left
    out)."""
    index = json.loads((gem_dir / "config" / "index.json").read_text(encoding="utf-8"))
    pngs = {path.stem.upper(): path for path in (gem_dir / "assets" / "png").glob("*.png")}
    groups = subgroups(emoji_test)
    rows = []
    for entry in index.values():
        codes = _codes(entry["unicode"])
        if SKIN_TONES & set(codes) or entry["unicode"].upper() not in pngs:
            continue
        substyle = groups.get(codes)
        if substyle is None or not entry.get("category"):
            continue
        rows.append(
            {
                "png": str(pngs[entry["unicode"].upper()]),
                "category": entry["category"],
                "substyle": substyle,
                "name": entry["unicode"].lower(),
            }
        )
    return sorted(rows, key=lambda row: (row["category"], row["name"]))


def write_tree(
    out: Path,
    max_per_category: int | None = None,
    gem_dir: Path = GEM_DIR,
    emoji_test: Path = EMOJI_TEST,
    min_per_category: int = MIN_PER_CATEGORY,
) -> Path:
    """Copy the drawings into `out/<category>/` and write `out/substyles.csv`; return `out`.

    `max_per_category` keeps the first drawings of each category (the mini benchmark).
    """
    rows = drawings(gem_dir, emoji_test)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["category"]] = counts.get(row["category"], 0) + 1
    kept, written = {c for c, n in counts.items() if n >= min_per_category}, []
    out.mkdir(parents=True, exist_ok=True)
    taken: dict[str, int] = {}
    for row in rows:
        category = row["category"]
        if category not in kept or taken.get(category, 0) == max_per_category:
            continue
        taken[category] = taken.get(category, 0) + 1
        relpath = f"{category}/{row['name']}.png"
        (out / category).mkdir(exist_ok=True)
        shutil.copyfile(row["png"], out / relpath)
        written.append((relpath, category, row["substyle"]))
    with open(out / "substyles.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "category", "substyle"])
        writer.writerows(sorted(written))
    return out
