"""The architecture table: every rule that depends on ``architecture.name`` is a row of it."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import pytest

import segmentai_core
from segmentai_core.errors import ModelError
from segmentai_core.models import architectures
from segmentai_core.models.architectures import ARCHITECTURES, GENERIC, NNUNET, build_network, size_divisor
from segmentai_core.models.manifest import ModelManifest

CORE = Path(segmentai_core.__file__).parent
SHIPPED = Path(segmentai_core.__file__).parents[2] / "Resources" / "Models" / "brain-t1-extraction" / "manifest.json"


def test_no_architecture_name_is_compared_outside_the_table():
    """``x.name == "UNet"`` and ``name in ("UNet", ...)`` belong in architectures.py, nowhere else in the core."""
    names = set(ARCHITECTURES)
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        if path.name == "architectures.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Compare):
                continue
            for side in [node.left, *node.comparators]:
                items = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                if any(isinstance(i, ast.Constant) and i.value in names for i in items):
                    offenders.append(f"{path.relative_to(CORE)}:{node.lineno}")
    assert offenders == []


def test_rows_are_complete():
    assert {row.pipeline for row in ARCHITECTURES.values()} <= {GENERIC, NNUNET}
    for name, row in ARCHITECTURES.items():
        assert row.name == name
        assert size_divisor({"name": name, "args": {}}, 3) == row.divisor(row.merged_args({}), 3)
    with pytest.raises(ModelError, match="unknown architecture 'ResNet'.*SegResNet"):
        architectures.get("ResNet")


def test_segresnet_rules():
    row = ARCHITECTURES["SegResNet"]
    assert row.divisor(row.merged_args({}), 3) == (8, 8, 8)  # MONAI's default blocks_down (1, 2, 2, 4)
    assert row.divisor(row.merged_args({"blocks_down": [1, 2]}), 3) == (2, 2, 2)
    assert not row.extent_independent({})  # group norm looks at the whole input
    assert row.encoder_key("down_layers.1.0.conv1.conv.weight") and not row.encoder_key("up_layers.0.0.weight")
    network = build_network({"name": "SegResNet", "args": {"init_filters": 8, "blocks_down": [1, 1],
                                                           "blocks_up": [1]}}, 3, 1, 3)
    import torch

    with torch.no_grad():
        assert tuple(network.eval()(torch.zeros(1, 1, 8, 8, 8)).shape) == (1, 3, 8, 8, 8)


def test_a_manifest_may_name_segresnet_and_its_patch_is_checked():
    data = json.loads(SHIPPED.read_text(encoding="utf-8"))
    data = copy.deepcopy(data)
    data["architecture"] = {"name": "SegResNet", "args": {"init_filters": 8}}
    data["inference"]["patch_size"] = [96, 96, 96]
    assert ModelManifest.from_dict(data).architecture_row is ARCHITECTURES["SegResNet"]
    data["inference"]["patch_size"] = [96, 96, 100]
    with pytest.raises(ModelError, match=r"multiple of \[8, 8, 8\] for this SegResNet"):
        ModelManifest.from_dict(data)


def test_encoder_keys_match_the_networks():
    """The encoder rule of UNet selects the down blocks and the bottleneck of MONAI's own UNet."""
    network = build_network({"name": "UNet", "args": {"channels": [4, 8, 16], "strides": [2, 2]}}, 3, 1, 2)
    keys = [k for k, _ in network.named_parameters()]
    encoder = [k for k in keys if ARCHITECTURES["UNet"].encoder_key(k)]
    assert encoder and len(encoder) < len(keys)
    assert all(not k.startswith("model.2.") for k in encoder)  # the head (last up block) is not encoder
