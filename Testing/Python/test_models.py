"""Model packages: manifest validation, safe weight loading, MONAI networks, registry and CLI."""

from __future__ import annotations

import copy
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from conftest import manifest_dict, write_raw_package
from segmentai_core.cli.main import main
from segmentai_core.errors import ModelError, OutputError
from segmentai_core.models import (
    ModelManifest,
    ModelPackage,
    ModelRegistry,
    build_network,
    load_manifest,
    version_key,
    write_model_package,
)
from segmentai_core.resources import resources_dir

def publish(folder: Path, **kwargs) -> ModelPackage:
    """A package with randomly initialised weights."""
    data = manifest_dict(**kwargs)
    manifest = ModelManifest.from_dict({**data, "weights": {"file": "w.bin", "format": "safetensors",
                                                             "sha256": "0" * 64}})
    torch.manual_seed(0)
    return write_model_package(folder, data, build_network(manifest).state_dict())


# --- manifest ----------------------------------------------------------------------------------


def test_shipped_schema_is_valid_and_is_what_the_loader_enforces(tmp_path):
    """The shipped schema is a valid JSON schema of its declared draft, and each field it requires is one the
    loader refuses a manifest without (in one line naming it): the file documents what is enforced."""
    import jsonschema

    schema = json.loads((resources_dir() / "Schemas" / "model-manifest.schema.json").read_text(encoding="utf-8"))
    jsonschema.validators.validator_for(schema).check_schema(schema)
    valid = {**manifest_dict(), "weights": {"file": "model.safetensors", "format": "safetensors", "sha256": "a" * 64}}
    jsonschema.validate(valid, schema)
    assert set(schema["required"]) <= set(valid)
    for field in schema["required"]:
        folder = tmp_path / field
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps({k: v for k, v in valid.items() if k != field}))
        with pytest.raises(ModelError) as info:
            load_manifest(folder)
        assert f"missing field '{field}'" in str(info.value) and len(str(info.value).splitlines()) == 1


def test_manifest_round_trip_and_typed_views(tmp_path):
    package = publish(tmp_path / "m")
    m = load_manifest(tmp_path / "m")
    assert m.full_id == "tiny-seg@1.0.0" and m.num_classes == 3
    assert [label.name for label in m.labels] == ["Brain", "Lesion"]
    assert m.labels[0].terminology.type.meaning == "Brain"
    assert m.target_spacing == (1.0, 1.0, 1.5) and m.patch_size == (16, 16, 16) and m.mirror_axes == (0,)
    assert m.normalization == {"type": "zscore", "nonzero": True} and m.orientation == "RAS"
    assert m.largest_component and not m.fill_holes and m.parent == {"id": "tiny-base", "version": "0.9.0"}
    assert ModelManifest.from_dict(m.to_dict()) == m
    m.save(tmp_path / "copy.json")
    written = json.loads((package.folder / "manifest.json").read_text(encoding="utf-8"))
    assert json.loads((tmp_path / "copy.json").read_text(encoding="utf-8")) == written


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: d.pop("labels"), "model 'tiny-seg' manifest.json: missing field 'labels'"),
        (lambda d: d["preprocessing"].pop("normalization"), "missing field 'preprocessing.normalization'"),
        (lambda d: d["preprocessing"].__setitem__("target_spacing", "1mm"),
         "'preprocessing.target_spacing' must be a list"),
        (lambda d: d["preprocessing"].__setitem__("target_spacing", [1, 1]),
         "'preprocessing.target_spacing' must have exactly 3 items"),
        (lambda d: d.__setitem__("dimensions", "3"), "'dimensions' must be one of 2, 3"),
        (lambda d: d["architecture"].__setitem__("name", "ResNet"), "'architecture.name' must be one of"),
        (lambda d: d.__setitem__("version", "v1"), "'version' must be a semantic version"),
        (lambda d: d.__setitem__("colour", 1), "unknown field 'colour'"),
        (lambda d: d["labels"].__setitem__("one", {"name": "x", "color": [0, 0, 0]}), "'labels' has a key 'one'"),
        (lambda d: d["labels"]["1"].__setitem__("color", [2, 0, 0]), "'labels.1.color[0]' must be <= 1"),
        (lambda d: d["preprocessing"].__setitem__("normalization", {"type": "ct_window"}),
         "missing field 'preprocessing.normalization.window'"),
        (lambda d: d.__setitem__("training_data", 5), "'training_data' must be a string or a list (got 5)"),
        (lambda d: d.__setitem__("training_data", [{"name": "a"}]), "missing field 'training_data[0].license'"),
        (lambda d: d["inference"].__setitem__("overlap", 1), "'inference.overlap' must be < 1"),
        (lambda d: d["inference"].__setitem__("patch_size", [16, 16]), "must have 3 items for a 3D model"),
        (lambda d: d["inference"].__setitem__("patch_size", [16, 16, 15]), "must be a multiple of [2, 2, 2]"),
        (lambda d: d["weights"].__setitem__("file", "../escape.bin"), "'weights.file' must be a plain file name"),
        (lambda d: d["weights"].__setitem__("format", "torchscript"), "go together"),
    ],
)
def test_invalid_manifest_gives_one_line(tmp_path, change, expected):
    data = manifest_dict()
    data["weights"] = {"file": "model.safetensors", "format": "safetensors", "sha256": "a" * 64}
    change(data)
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError) as info:
        load_manifest(folder)
    message = str(info.value)
    assert expected in message and "\n" not in message, message


def test_unreadable_manifests(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a model package"):
        load_manifest(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="model folder 'bad' manifest.json: not valid JSON"):
        load_manifest(tmp_path / "bad")


def test_extension_fields_are_kept():
    data = {**manifest_dict(), "weights": {"file": "w", "format": "safetensors", "sha256": "b" * 64}, "x-site": 1}
    assert ModelManifest.from_dict(data).to_dict()["x-site"] == 1


def test_version_order():
    versions = ["1.10.0", "1.2.0", "1.2.0-rc1", "0.9.9"]
    assert sorted(versions, key=version_key) == ["0.9.9", "1.2.0-rc1", "1.2.0", "1.10.0"]


# --- weights -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "architecture, dimensions, shape",
    [("UNet", 3, (1, 1, 16, 16, 16)), ("AttentionUnet", 3, (1, 1, 16, 16, 16)),
     ("SwinUNETR", 3, (1, 1, 32, 32, 64)), ("UNet", 2, (1, 1, 16, 16))],
)
def test_round_trip_gives_identical_outputs(tmp_path, architecture, dimensions, shape):
    torch.manual_seed(1)
    data = manifest_dict(architecture=architecture, dimensions=dimensions)
    if dimensions == 2:
        data["inference"]["mirror_axes"] = [0, 1]
    original = build_network(data["architecture"], dimensions, 1, 3).eval()
    package = write_model_package(tmp_path / "pkg", data, original.state_dict())
    loaded = package.load_network()
    assert not loaded.training
    x = torch.randn(*shape)
    with torch.no_grad():
        expected, actual = original(x), loaded(x)
    assert actual.shape == (shape[0], 3) + shape[2:]
    assert torch.equal(expected, actual)


def test_hash_mismatch_is_refused(tmp_path):
    package = publish(tmp_path / "pkg")
    weights = package.weights_path
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    for action in (package.verify, package.load_network):
        with pytest.raises(ModelError, match="weights hash mismatch.*modified or is corrupt"):
            action()


class _Payload:
    """Pickles to a call of ``open(marker, "w")``: loading it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_with_code_is_refused_and_never_runs(tmp_path):
    # The payload is real: plain unpickling runs it.
    pickle.loads(pickle.dumps(_Payload(tmp_path / "proof")))
    assert (tmp_path / "proof").exists()

    marker = tmp_path / "pwned"
    buffer = tmp_path / "evil.pt"
    torch.save({"conv.weight": torch.zeros(1), "x": _Payload(marker)}, buffer)
    folder = write_raw_package(tmp_path / "evil", manifest_dict(), buffer.read_bytes(), "state_dict", "evil.pt")
    package = ModelPackage.open(folder)
    package.verify()  # the hash is right: only the loader stands in the way
    with pytest.raises(ModelError, match="refused.*could run code"):
        package.load_network()
    assert not marker.exists()


def test_plain_state_dict_loads_and_wrong_shapes_are_reported(tmp_path):
    data = manifest_dict()
    torch.manual_seed(2)
    network = build_network(data["architecture"], 3, 1, 3)
    path = tmp_path / "sd.pt"
    torch.save(network.state_dict(), path)
    package = ModelPackage.open(write_raw_package(tmp_path / "ok", data, path.read_bytes(), "state_dict"))
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(package.load_network()(x), network.eval()(x))
    other = copy.deepcopy(data)
    other["architecture"]["args"]["channels"] = [4, 16]
    package = ModelPackage.open(write_raw_package(tmp_path / "bad", other, path.read_bytes(), "state_dict"))
    with pytest.raises(ModelError, match="do not fit architecture UNet"):
        package.load_network()


def test_loaded_network_takes_the_weights_without_a_second_build(tmp_path):
    """A load builds the UNet on the meta device and assigns the weights to it (no random
    initialisation): nothing stays on meta, half-precision weights become the declared float32,
    and the parameters still train."""
    data = manifest_dict()
    torch.manual_seed(4)
    network = build_network(data["architecture"], 3, 1, 3).eval()
    with torch.no_grad():  # trained-looking statistics, so that the buffers matter too
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    half = {key: value.half() if value.is_floating_point() else value for key, value in network.state_dict().items()}
    path = tmp_path / "sd.pt"
    torch.save(half, path)
    package = ModelPackage.open(write_raw_package(tmp_path / "half", data, path.read_bytes(), "state_dict"))
    loaded = package.load_network()
    tensors = list(loaded.parameters()) + list(loaded.buffers())
    assert not any(t.is_meta for t in tensors)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert all(p.requires_grad for p in loaded.parameters())
    network.load_state_dict(half)  # the same rounding, copied into a real build
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), network(x))
    assert all(p.abs().sum() > 0 for p in build_network(data["architecture"], 3, 1, 3).parameters()
               if p.dim() > 1)  # outside a load, the build is still initialised for training


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_package_loads(tmp_path):
    torch.manual_seed(3)
    module = torch.nn.Sequential(torch.nn.Conv3d(1, 3, 3, padding=1)).eval()
    x = torch.randn(1, 1, 8, 8, 8)
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.trace(module, x), str(path))
    data = manifest_dict(architecture="TorchScript")
    data["architecture"] = {"name": "TorchScript"}
    package = ModelPackage.open(write_raw_package(tmp_path / "ts", data, path.read_bytes(), "torchscript"))
    with pytest.raises(ModelError, match="TorchScript program"):
        package.load_network()  # a program, not weights: refused until trusted
    with torch.no_grad():
        assert torch.allclose(package.allow_code().load_network()(x), module(x))


def test_network_args_are_checked():
    with pytest.raises(ModelError, match="num_res_units must be >= 1"):
        build_network({"name": "UNet", "args": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}, 3, 1, 2)
    with pytest.raises(ModelError, match="SwinUNETR does not accept 'img_size'"):
        build_network({"name": "SwinUNETR", "args": {"img_size": [32, 32, 32]}}, 3, 1, 2)
    with pytest.raises(ModelError, match="must not set 'in_channels'"):
        build_network({"name": "AttentionUnet", "args": {"in_channels": 2}}, 3, 1, 2)


def test_write_model_package_refuses_bad_input(tmp_path):
    data = manifest_dict()
    wrong = build_network({"name": "UNet", "args": {"channels": [4, 16], "strides": [2], "num_res_units": 1}}, 3, 1, 3)
    with pytest.raises(ModelError, match="does not fit"):
        write_model_package(tmp_path / "a", data, wrong.state_dict())
    assert not (tmp_path / "a").exists() and os.listdir(tmp_path) == []
    publish(tmp_path / "b")
    with pytest.raises(OutputError, match="exists already"):
        publish(tmp_path / "b")


def test_card_mentions_the_essentials(tmp_path):
    card = publish(tmp_path / "pkg").card()
    for text in ("tiny-seg@1.0.0", "segments bright blobs", "MR", "1=Brain", "2=Lesion", "1 x 1 x 1.5 mm",
                 "CC-BY-4.0", "synthetic (4 cases, CC0-1.0)", "Dice [Brain] on synthetic: 0.9", "tiny-base@0.9.0"):
        assert text in card, text


# --- registry ----------------------------------------------------------------------------------


def test_registry_list_get_import_remove(tmp_path):
    builtin, user, incoming = tmp_path / "builtin", tmp_path / "home" / "models", tmp_path / "incoming"
    publish(builtin / "brain-t1-extraction", model_id="brain-t1-extraction")
    publish(builtin / "tiny-1.0.0")
    (builtin / "broken").mkdir()
    (builtin / "broken" / "manifest.json").write_text("{}")
    registry = ModelRegistry(builtin_dir=builtin, user_dir=user)

    listed = registry.list()
    assert sorted(p.full_id for p in listed if p.ok) == ["brain-t1-extraction@1.0.0", "tiny-seg@1.0.0"]
    broken = [p for p in listed if not p.ok]
    assert len(broken) == 1 and "missing field" in broken[0].error and "BROKEN" in broken[0].card()
    assert registry.default().id == "brain-t1-extraction"

    publish(incoming / "v2", version="1.2.0")
    imported = registry.import_package(incoming / "v2")
    assert imported.folder == user / "tiny-seg-1.2.0" and not imported.builtin
    assert registry.get("tiny-seg").version == "1.2.0"
    assert registry.get("tiny-seg@1.0.0").builtin
    assert registry.get(str(incoming / "v2")).folder == incoming / "v2"
    with pytest.raises(ModelError, match="installed already"):
        registry.import_package(incoming / "v2")
    with pytest.raises(ModelError, match=r"unknown model 'nope' \(available: brain-t1-extraction, tiny-seg"):
        registry.get("nope")
    with pytest.raises(ModelError, match="has no version 9.9.9 .available: 1.0.0, 1.2.0"):
        registry.get("tiny-seg@9.9.9")

    tampered = incoming / "tampered"
    shutil.copytree(incoming / "v2", tampered)
    manifest = json.loads((tampered / "manifest.json").read_text(encoding="utf-8"))
    manifest["version"] = "2.0.0"
    (tampered / "manifest.json").write_text(json.dumps(manifest))
    (tampered / "model.safetensors").write_bytes(b"x" + (tampered / "model.safetensors").read_bytes()[1:])
    with pytest.raises(ModelError, match="hash mismatch"):
        registry.import_package(tampered)
    assert sorted(os.listdir(user)) == ["tiny-seg-1.2.0"]  # nothing half-copied

    with pytest.raises(ModelError, match="built-in model and cannot be removed"):
        registry.remove("brain-t1-extraction")
    assert registry.remove("tiny-seg").full_id == "tiny-seg@1.2.0"
    assert os.listdir(user) == [] and registry.get("tiny-seg").version == "1.0.0"
    with pytest.raises(ModelError, match="built-in model"):
        registry.remove("tiny-seg@1.0.0")


def test_default_without_default_id_is_first_builtin(tmp_path):
    publish(tmp_path / "b" / "z-model", model_id="z-model")
    publish(tmp_path / "b" / "a-model", model_id="a-model")
    assert ModelRegistry(tmp_path / "b", tmp_path / "u").default().id == "a-model"
    with pytest.raises(ModelError, match="no built-in model"):
        ModelRegistry(tmp_path / "none", tmp_path / "u").default()


# --- CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    resources = tmp_path / "Resources"
    shutil.copytree(resources_dir() / "Schemas", resources / "Schemas")
    publish(resources / "Models" / "brain-t1-extraction", model_id="brain-t1-extraction")
    monkeypatch.setenv("SEGMENTAI_RESOURCES", str(resources))
    monkeypatch.setenv("SEGMENTAI_HOME", str(tmp_path / "home"))
    return tmp_path


def test_cli_models_commands(cli_env, capsys):
    publish(cli_env / "incoming", version="0.1.0")
    assert main(["models", "import", str(cli_env / "incoming")]) == 0
    assert "imported tiny-seg@0.1.0" in capsys.readouterr().out

    assert main(["models", "list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [(e["id"], e["source"], e["default"]) for e in entries] == [
        ("brain-t1-extraction", "builtin", True), ("tiny-seg", "user", False)]
    assert entries[1]["labels"] == {"1": "Brain", "2": "Lesion"} and entries[1]["error"] is None

    assert main(["models", "list"]) == 0
    assert "(default)" in capsys.readouterr().out
    assert main(["models", "show", "tiny-seg", "--verify"]) == 0
    assert "SHA-256 verified" in capsys.readouterr().out

    assert main(["models", "remove", "brain-t1-extraction"]) == 2
    assert "built-in model" in capsys.readouterr().err
    assert main(["models", "remove", "tiny-seg@0.1.0"]) == 0
    assert main(["models", "show", "tiny-seg"]) == 2
    assert "unknown model 'tiny-seg'" in capsys.readouterr().err
