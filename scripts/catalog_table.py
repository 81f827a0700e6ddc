"""Print the README's table of catalog models from Resources/Catalog/catalog.json (--write: update README.md).

    python scripts/catalog_table.py           # print the table
    python scripts/catalog_table.py --write   # replace the table between README.md's catalog-table markers

Testing/Python/test_catalog.py checks that README.md shows exactly this output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "Resources" / "Catalog" / "catalog.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- catalog-table:begin -->\n", "<!-- catalog-table:end -->"


def _size(model: dict) -> str:
    sizes = [part["size_bytes"] for part in model["parts"]]
    parts = f" ({len(sizes)} parts)" if len(sizes) > 1 else ""
    if any(size is None for size in sizes):
        return f"not published{parts}"
    return f"{sum(sizes) / 1e6:.0f} MB{parts}"


def _licence(model: dict) -> str:
    licence = model["license"]
    commercial = {True: "", False: ", non-commercial only", None: ""}[licence.get("commercial_use")]
    return f"{licence['weights']}{commercial}"


def table(catalog: dict) -> str:
    rows = ["| ID | Task | Modality | Classes | Licence of the weights | Download |",
            "|---|---|---|---|---|---|"]
    for model in catalog["models"]:
        task = model["title"].replace("|", "/")
        rows.append(f"| `{model['id']}` | {task} | {model['modality']} | {model['classes']['count']} | "
                    f"{_licence(model)} | {_size(model)} |")
    return "\n".join(rows) + "\n"


def main(argv: list) -> int:
    text = table(json.loads(CATALOG.read_text(encoding="utf-8")))
    if "--write" not in argv:
        sys.stdout.write(text)
        return 0
    readme = README.read_text(encoding="utf-8")
    if BEGIN not in readme or END not in readme:
        print(f"{README} has no {BEGIN.strip()} ... {END} markers", file=sys.stderr)
        return 2
    head, rest = readme.split(BEGIN, 1)
    README.write_text(head + BEGIN + text + END + rest.split(END, 1)[1], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
