"""The model catalog: the shipped file and its schema, and the facts it records."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT
from segmentai_core.catalog import load_catalog
from segmentai_core.catalog.catalog import catalog_schema
from segmentai_core.errors import ModelError

CATALOG = ROOT / "Resources" / "Catalog" / "catalog.json"


def test_schema_validates_the_shipped_catalog():
    import jsonschema

    schema = catalog_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(json.loads(CATALOG.read_text(encoding="utf-8")))
    catalog = load_catalog()
    assert {"total", "total_fast", "total_mr", "spleen_ct_segmentation", "wholebody_ct_segmentation",
            "swin_unetr_btcv_segmentation", "brats_mri_segmentation"} <= set(catalog.ids())


def test_totalsegmentator_entries_hold_its_class_map_and_parts():
    catalog = load_catalog()
    total, fast, mr = catalog.get("total"), catalog.get("total_fast"), catalog.get("total_mr")
    assert total.class_count == 117 and len(total.class_names) == 117
    assert total.class_names[1] == "spleen" and total.spacing_mm == (1.5, 1.5, 1.5)
    assert [p.task_id for p in total.parts] == [291, 292, 293, 294, 295]
    # The five parts' classes are exactly the 117 of the merged map.
    names = set()
    for part in total.parts:
        names |= set(part.classes.values())
    assert names == set(total.class_names.values())
    assert len(fast.parts) == 1 and fast.parts[0].task_id == 297 and fast.spacing_mm == (3.0, 3.0, 3.0)
    assert fast.class_names == total.class_names
    assert mr.class_count == 50 and [p.task_id for p in mr.parts] == [850, 851]
    for entry in (total, fast, mr):
        assert entry.importer == "nnunet" and entry.license["weights"] == "Apache-2.0"
        assert all(p.url.startswith("https://github.com/wasserth/TotalSegmentator/releases/download/")
                   for p in entry.parts)
    spleen = total.style_of("spleen")  # SNOMED CT codes and colours from TotalSegmentator's own mapping
    assert spleen["terminology"]["type"] == {"scheme": "SCT", "value": "78961009", "meaning": "Spleen"}
    assert len(total.segments) == 117 and len(mr.segments) >= 46
    assert total.package_ids == ["total.organs", "total.vertebrae", "total.cardiac", "total.muscles", "total.ribs"]


def test_zoo_entries_record_their_networks_and_published_hashes():
    catalog = load_catalog()
    whole = catalog.get("wholebody_ct_segmentation")
    assert whole.architecture == "SegResNet" and whole.class_count == 104 and whole.importer == "monai_bundle"
    assert catalog.get("swin_unetr_btcv_segmentation").architecture == "SwinUNETR"
    assert catalog.get("spleen_ct_segmentation").class_names == {1: "spleen"}
    brats = catalog.get("brats_mri_segmentation")
    assert brats.multi_label and brats.input_channels == ("T1c", "T1", "T2", "FLAIR")
    for model_id in ("spleen_ct_segmentation", "wholebody_ct_segmentation", "swin_unetr_btcv_segmentation",
                     "brats_mri_segmentation"):
        part = catalog.get(model_id).parts[0]
        assert part.sha1 and len(part.sha1) == 40 and part.sha256 is None  # the zoo publishes SHA-1 only


def test_unknown_id_and_bad_catalog_are_one_line_errors(tmp_path):
    with pytest.raises(ModelError, match=r"'nope' is not in the model catalog \(available: total, "):
        load_catalog().get("nope")
    bad = json.loads(CATALOG.read_text(encoding="utf-8"))
    bad["models"][0]["parts"][0]["sha256"] = "xyz"
    (tmp_path / "catalog.json").write_text(json.dumps(bad))
    with pytest.raises(ModelError, match=r"catalog\.json: 'models/0/parts/0/sha256'"):
        load_catalog(tmp_path / "catalog.json")
    bad = json.loads(CATALOG.read_text(encoding="utf-8"))
    bad["models"][1]["id"] = bad["models"][0]["id"]
    (tmp_path / "catalog.json").write_text(json.dumps(bad))
    with pytest.raises(ModelError, match="appears twice"):
        load_catalog(tmp_path / "catalog.json")


def test_readme_catalog_table_is_the_scripts_output():
    import subprocess
    import sys

    script = ROOT / "scripts" / "catalog_table.py"
    table = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    begin, end = "<!-- catalog-table:begin -->\n", "<!-- catalog-table:end -->"
    assert begin in readme and end in readme, "README.md lacks the catalog table markers"
    shown = readme.split(begin, 1)[1].split(end, 1)[0]
    assert shown == table, f"README.md's catalog table is stale: run python {script.relative_to(ROOT)} --write"
