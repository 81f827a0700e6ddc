"""MONAI bundle import: a bundle made with MONAI's own tools, run by MONAI's bundle runner and by SegmentAI.

The bundle is built twice: Gaussian blending at overlap 0.25, and constant (uniform) blending
at overlap 0.5, so both the blending mode and the overlap must be carried over for parity.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ignite", reason="MONAI's bundle runner (SupervisedEvaluator) needs pytorch-ignite")

from segmentai_core.errors import ModelError  # noqa: E402
from segmentai_core.geometry import Geometry  # noqa: E402
from segmentai_core.importers import convert_model, detect_format  # noqa: E402
from segmentai_core.inference.canonical import resample_to  # noqa: E402
from segmentai_core.inference.engine import Segmenter  # noqa: E402
from segmentai_core.inference.preprocess import prepare_input  # noqa: E402
from segmentai_core.inference.windows import predict_probabilities  # noqa: E402
from segmentai_core.io.volume_io import read_volume, write_volume  # noqa: E402
from segmentai_core.models import ModelRegistry  # noqa: E402
from segmentai_core.volume import Volume  # noqa: E402

SPACING = 1.5
ROI = [32, 32, 32]
NETWORK = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3,
           "channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}


def _inference_config(output_dir: Path, mode: str, overlap: float) -> dict:
    keys = ["image"]
    return {
        "imports": ["$import glob"],
        "device": "$torch.device('cpu')",
        "ckpt_path": "$@bundle_root + '/models/model.pt'",
        "dataset_dir": "",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/*.nii.gz')))",
        "network_def": NETWORK,
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": keys},
            {"_target_": "EnsureChannelFirstd", "keys": keys},
            {"_target_": "Orientationd", "keys": keys, "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": keys, "pixdim": [SPACING] * 3, "mode": "bilinear"},
            {"_target_": "ScaleIntensityRanged", "keys": keys, "a_min": -100, "a_max": 300, "b_min": 0.0,
             "b_max": 1.0, "clip": True},
            {"_target_": "EnsureTyped", "keys": keys},
        ]},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]",
                    "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 0},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": ROI, "sw_batch_size": 4, "overlap": overlap,
                    "mode": mode},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": str(output_dir), "output_postfix": "prob",
             "separate_folder": False, "resample": False, "output_dtype": "$np.float32"},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": str(output_dir), "output_postfix": "seg",
             "separate_folder": False, "resample": False, "output_dtype": "$np.uint8"},
        ]},
        "handlers": [{"_target_": "CheckpointLoader", "load_path": "@ckpt_path", "load_dict": {"model": "@network"}}],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "val_handlers": "@handlers"},
        "evaluating": ["$@evaluator.run()"],
    }


@pytest.fixture(scope="module", params=[("gaussian", 0.25), ("constant", 0.5)], ids=["gaussian", "constant"])
def bundle(request, tmp_path_factory) -> Path:
    """A bundle made by ``monai.bundle.init_bundle`` around a seeded MONAI UNet (blending mode, overlap)."""
    import torch
    from monai.bundle import init_bundle
    from monai.networks.nets import UNet

    torch.manual_seed(3)
    args = {k: v for k, v in NETWORK.items() if k != "_target_"}
    network = UNet(**args)
    with torch.no_grad():  # a random network with confident outputs, so labels are not near-ties everywhere
        for parameter in network.parameters():
            parameter.mul_(3.0)
    root = tmp_path_factory.mktemp("bundle")
    folder = root / "tiny_bundle"
    metadata = {
        "version": "0.1.0", "name": "Tiny test bundle", "task": "tests only: a random 3-class network",
        "license": "Apache-2.0",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "hounsfield", "modality": "CT", "num_channels": 1}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 3,
                                 "channel_def": {"0": "background", "1": "liver", "2": "spleen"}}},
        },
    }
    mode, overlap = request.param
    init_bundle(folder, network=network, metadata_str=metadata,
                inference_str=_inference_config(root / "out", mode, overlap))
    return folder


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    rng = np.random.default_rng(5)
    shape = (36, 40, 48)  # (k, j, i): larger than the window in every axis
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    image = 60 * rng.standard_normal(shape) + 250 * np.exp(-4 * (i**2 + (j - 0.3) ** 2 + k**2))
    volume = Volume(image.astype(np.float32), Geometry.create(shape, (SPACING,) * 3, (10.0, -4.0, 7.0)))
    path = tmp_path_factory.mktemp("case") / "case.nii.gz"
    write_volume(volume, path)
    return path


@pytest.fixture(scope="module")
def monai_result(bundle, case):
    """MONAI's bundle runner on the case: (probabilities, labels) as Volumes on MONAI's output grid."""
    import torch
    from monai.bundle import run

    torch.set_num_threads(1)
    config = bundle / "configs" / "inference.json"
    run("evaluating", meta_file=str(bundle / "configs" / "metadata.json"), config_file=str(config),
        bundle_root=str(bundle), dataset_dir=str(case.parent))
    out = Path(json.loads(config.read_text(encoding="utf-8"))["postprocessing"]["transforms"][1]["output_dir"])
    return read_volume_4d(next(out.glob("*_prob.nii.gz"))), read_volume(next(out.glob("*_seg.nii.gz")))


def read_volume_4d(path: Path):
    """(C, k, j, i) probabilities and the 3D geometry of a 4D NIfTI written by SaveImaged."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)  # (i, j, k, C) is stored as a vector image or a 4D image
    if image.GetNumberOfComponentsPerPixel() > 1:
        array = np.moveaxis(array, -1, 0)
        geometry = Geometry.from_sitk(image)
    else:
        extractor = sitk.ExtractImageFilter()
        size = list(image.GetSize())
        size[3] = 0
        extractor.SetSize(size)
        geometry = Geometry.from_sitk(extractor.Execute(image))
    return array.astype(np.float32), geometry


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total


def test_bundle_parity_with_monai_runner(bundle, case, monai_result, tmp_path):
    import torch

    torch.set_num_threads(1)
    assert detect_format(bundle) == "monai-bundle"
    registry = ModelRegistry(builtin_dir=tmp_path / "none", user_dir=tmp_path / "models")
    package = registry.import_package(bundle)
    manifest = package.manifest
    assert manifest.architecture_name == "UNet" and manifest.orientation == "RAS"
    assert [label.name for label in manifest.labels] == ["liver", "spleen"]
    assert manifest.normalization == {"type": "ct_window", "window": [-100.0, 300.0]}
    inferer = json.loads((bundle / "configs" / "inference.json").read_text(encoding="utf-8"))["inferer"]
    assert (manifest.blend_mode, manifest.overlap) == (inferer["mode"], inferer["overlap"])

    volume = read_volume(case)
    (probabilities, grid), labels = monai_result
    segmenter = Segmenter(package, device="cpu")
    prepared = prepare_input(volume, manifest.preprocessing)
    ours = predict_probabilities(segmenter.network, prepared.array, segmenter.plan(prepared.array.size), "cpu")
    assert prepared.canonical.same_grid(grid)  # MONAI's RAS grid and SegmentAI's canonical grid coincide
    # MONAI writes (C, x, y, z) as NIfTI; read back it is (C, k, j, i) like ours.
    assert np.abs(ours - probabilities).max() < 1e-3

    result = segmenter.segment(volume)
    theirs = resample_to(labels, volume.geometry, order=0).array
    dice = {value: _dice(result.labelmap.array == value, theirs == value) for value in (1, 2)}
    print(f"{manifest.blend_mode} blending, overlap {manifest.overlap}: max probability difference "
          f"{np.abs(ours - probabilities).max():.2e}, Dice {dice}")  # the figures docs/importers.md quotes
    for value in (1, 2):
        assert (theirs == value).sum() > 100
        assert dice[value] >= 0.999


def test_bundle_with_expressions_in_the_network_is_refused(bundle, tmp_path):
    import shutil

    folder = tmp_path / "odd_bundle"
    shutil.copytree(bundle, folder)
    config_path = folder / "configs" / "inference.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["network_def"]["channels"] = "$__import__('os').system('echo hi')"
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelError, match="expression"):
        convert_model(folder, tmp_path / "package")


def test_bundle_with_unknown_transform_is_refused(bundle, tmp_path):
    import shutil

    folder = tmp_path / "odd_bundle"
    shutil.copytree(bundle, folder)
    config_path = folder / "configs" / "inference.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["preprocessing"]["transforms"].insert(3, {"_target_": "RandFlipd", "keys": ["image"], "prob": 0.5})
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelError, match="RandFlipd"):
        convert_model(folder, tmp_path / "package")


def test_bundle_inferer_defaults_are_monais(bundle, tmp_path):
    """An inferer without mode/overlap blends like MONAI's defaults (constant, 0.25); odd padding is refused."""
    import shutil

    from monai.inferers import SlidingWindowInferer

    folder = tmp_path / "default_bundle"
    shutil.copytree(bundle, folder)
    config_path = folder / "configs" / "inference.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    for key in ("mode", "overlap"):
        config["inferer"].pop(key)
    config_path.write_text(json.dumps(config))
    manifest = convert_model(folder, tmp_path / "package").manifest
    reference = SlidingWindowInferer(roi_size=ROI)
    assert manifest.blend_mode == str(reference.mode.value if hasattr(reference.mode, "value") else reference.mode)
    assert manifest.overlap == reference.overlap

    config["inferer"]["padding_mode"] = "reflect"
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelError, match="padding"):
        convert_model(folder, tmp_path / "package2")


SEGRESNET = {"_target_": "monai.networks.nets.SegResNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3,
             "init_filters": 8, "blocks_down": [1, 2, 2], "blocks_up": [1, 1], "dropout_prob": 0.2}


@pytest.fixture(scope="module")
def segresnet_bundle(tmp_path_factory) -> Path:
    """A bundle shaped like the Model Zoo's wholeBody_ct_segmentation (SegResNet, Gaussian windows), tiny."""
    import torch
    from monai.bundle import init_bundle
    from monai.networks.nets import SegResNet

    torch.manual_seed(4)
    network = SegResNet(**{k: v for k, v in SEGRESNET.items() if k != "_target_"})
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.mul_(2.0)
    root = tmp_path_factory.mktemp("segresnet")
    config = _inference_config(root / "out", "gaussian", 0.25)
    config["network_def"] = SEGRESNET
    metadata = {"version": "0.2.0", "name": "Tiny SegResNet bundle", "license": "Apache-2.0",
                "network_data_format": {"outputs": {"pred": {"channel_def": {"1": "liver", "2": "spleen"}}}}}
    init_bundle(root / "segresnet_bundle", network=network, metadata_str=metadata, inference_str=config)
    return root / "segresnet_bundle"


def test_segresnet_bundle_parity_with_monai(segresnet_bundle, case, tmp_path):
    """A SegResNet bundle imports as the SegResNet architecture; its probabilities equal MONAI's own
    network run by MONAI's sliding_window_inference on the same prepared array (to 1e-4)."""
    import torch
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import SegResNet

    torch.set_num_threads(1)
    registry = ModelRegistry(builtin_dir=tmp_path / "none", user_dir=tmp_path / "models")
    package = registry.import_package(segresnet_bundle)
    manifest = package.manifest
    assert manifest.architecture_name == "SegResNet" and manifest.axis_order == "ijk"
    assert manifest.architecture_row.divisor(manifest.architecture_args, 3) == (4, 4, 4)
    assert [label.name for label in manifest.labels] == ["liver", "spleen"]

    volume = read_volume(case)
    segmenter = Segmenter(package, device="cpu")
    prepared = prepare_input(volume, manifest.preprocessing)
    ours = predict_probabilities(segmenter.network, prepared.array, segmenter.plan(prepared.array.size), "cpu")

    reference = SegResNet(**{k: v for k, v in SEGRESNET.items() if k != "_target_"})
    state = torch.load(segresnet_bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    reference.load_state_dict(state.get("model", state))
    reference.eval()
    image = torch.from_numpy(np.ascontiguousarray(prepared.array.transpose(2, 1, 0)))[None, None]  # (x, y, z)
    with torch.no_grad():
        logits = sliding_window_inference(image, ROI, 4, reference, overlap=0.25, mode="gaussian")
    theirs = torch.softmax(logits, 1)[0].numpy().transpose(0, 3, 2, 1)  # back to (C, k, j, i)
    difference = float(np.abs(ours - theirs).max())
    print(f"SegResNet bundle: max probability difference {difference:.2e}")
    assert difference <= 1e-4
    labels = segmenter.segment(volume).labelmap.array
    assert set(np.unique(labels)) <= {0, 1, 2} and (labels > 0).any()
