"""Every shipped manifest validates against the schema; x-interactive and x-nnunet are validated too."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import segmentai_core
from segmentai_core.errors import ModelError
from segmentai_core.models.extensions import InteractiveSettings, NNUNetSettings
from segmentai_core.models.manifest import ModelManifest, manifest_schema

ROOT = Path(segmentai_core.__file__).parents[2]
SHIPPED = sorted((ROOT / "Resources" / "Models").glob("*/manifest.json"))
INTERACTIVE = ROOT / "Resources" / "Models" / "interactive-unet" / "manifest.json"


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_every_shipped_manifest_validates_against_the_schema(path):
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(manifest_schema())
    data = _read(path)
    errors = sorted(jsonschema.Draft202012Validator(manifest_schema()).iter_errors(data), key=str)
    assert errors == []
    manifest = ModelManifest.from_dict(data)  # the cross-field rules as well
    assert manifest.interactive_settings == InteractiveSettings.from_block(data.get("x-interactive"))


def test_shipped_interactive_settings_are_the_defaults_except_the_flips():
    """The defaults are the shipped model's (72 mm context), so a block that omits a key behaves like it;
    only test_time_flips differs: averaging mirrored copies costs forward passes, so it is opt-in."""
    block = _read(INTERACTIVE)["x-interactive"]
    shipped = InteractiveSettings.from_block(block)
    defaults = InteractiveSettings()
    assert shipped.min_extent_mm == defaults.min_extent_mm == 72.0
    differing = {k for k in block if getattr(shipped, k) != getattr(defaults, k)}
    assert differing == {"test_time_flips"}


@pytest.mark.parametrize("change, message", [
    (lambda b: b.__setitem__("min_extent_mm", -3), "'x-interactive.min_extent_mm' must be > 0"),
    (lambda b: b.__setitem__("test_time_flips", 5), "'x-interactive.test_time_flips' must be <= 3"),
    (lambda b: b.__setitem__("max_size", "96"), "'x-interactive.max_size' must be an integer"),
    (lambda b: b.__setitem__("margin", 12.0), "unknown field 'x-interactive.margin'"),
])
def test_x_interactive_is_validated(change, message):
    data = copy.deepcopy(_read(INTERACTIVE))
    change(data["x-interactive"])
    with pytest.raises(ModelError, match=message.replace(".", r"\.").replace("(", r"\(")):
        ModelManifest.from_dict(data)


def _nnunet_block() -> dict:
    return {
        "source_format": "nnunet-v2", "configuration": "3d_fullres", "trainer": "nnUNetTrainer",
        "image_reader": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "spacing": [3.0, 1.0, 1.0], "patch_size": [32, 64, 64],
        "normalization": [{"scheme": "CTNormalization", "use_mask": False, "mean": 80.0, "std": 40.0,
                           "lower": -100.0, "upper": 300.0}],
        "resampling_data": {"order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_probabilities": {"order": 1, "order_z": 0, "force_separate_z": None},
        "mirror_axes": [0, 1, 2], "step_size": 0.5, "num_heads": 3, "in_channels": 1,
        "regions_class_order": None, "postprocessing": [], "files": {"plans.json": "0" * 64},
    }


def test_x_nnunet_block_is_validated_and_typed():
    data = copy.deepcopy(_read(SHIPPED[0]))
    data["x-nnunet"] = _nnunet_block()
    settings = ModelManifest.from_dict(data).nnunet_settings
    assert settings == NNUNetSettings.of(_nnunet_block())
    assert (settings.step_size, settings.batch_size, settings.num_heads) == (0.5, None, 3)
    for key, value, message in [
        ("transpose_forward", [0, 0, 2], "must not repeat items"),
        ("normalization", [{"scheme": "CTNormalization"}], "missing field"),
        ("resampling_data", {"order": 9, "order_z": 0}, "must be <= 5"),
        ("step_size", 0, "must be > 0"),
    ]:
        broken = copy.deepcopy(data)
        broken["x-nnunet"][key] = value
        with pytest.raises(ModelError, match=message):
            ModelManifest.from_dict(broken)
    broken = copy.deepcopy(data)
    del broken["x-nnunet"]["num_heads"]
    with pytest.raises(ModelError, match="missing field 'x-nnunet.num_heads'"):
        ModelManifest.from_dict(broken)


def test_other_extension_blocks_stay_free():
    data = copy.deepcopy(_read(SHIPPED[0]))
    data["x-anything"] = {"whatever": [1, "two"]}
    assert ModelManifest.from_dict(data).extensions["x-anything"] == {"whatever": [1, "two"]}
