"""MONAI Model Zoo bundles whose configs the importer once refused, rebuilt tiny with the zoo's structure.

* ``wholeBody_ct_segmentation``: ``pixdim`` and the weights file are ``$A if @displayable_configs#highres
  else B`` expressions, the inferer's overlap a reference, ``padding_mode`` replicate, and the
  intensity is NormalizeIntensityd(nonzero) then ScaleIntensityd(-1, 1).
* ``swin_unetr_btcv_segmentation``: ``network_def`` passes ``img_size``, which MONAI 1.5 removed.

The configs are written here (same keys, references and expressions as the zoo's ``inference.json``,
smaller networks, random weights). MONAI's own ``ConfigParser`` evaluates them for the reference
side; SegmentAI's importer reads them as data and must give the same input and probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monai", reason="the references are MONAI's own transforms and networks")

from segmentai_core.errors import ModelError  # noqa: E402
from segmentai_core.geometry import Geometry  # noqa: E402
from segmentai_core.importers import convert_model  # noqa: E402
from segmentai_core.inference.engine import Segmenter  # noqa: E402
from segmentai_core.inference.preprocess import prepare_input  # noqa: E402
from segmentai_core.inference.windows import predict_probabilities  # noqa: E402
from segmentai_core.io.volume_io import read_volume, write_volume  # noqa: E402
from segmentai_core.models import ModelRegistry  # noqa: E402
from segmentai_core.volume import Volume  # noqa: E402

KEY = "@image_key"
CHANNELS = {"0": "background", "1": "spleen", "2": "Right Kidney", "3": "Left Kideny", "4": "liver"}


def _metadata(name: str) -> dict:
    return {"version": "0.2.5", "name": name, "task": "tests only", "license": "Apache-2.0",
            "network_data_format": {
                "inputs": {"image": {"type": "image", "format": "hounsfield", "modality": "CT", "num_channels": 1}},
                "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 5,
                                     "channel_def": CHANNELS}}}}


def _common(preprocessing: list, inferer: dict, network_def: dict, post: list, load_path: str) -> dict:
    """The keys every zoo inference.json has (imports, device, datalist, evaluator, loader, run)."""
    return {
        "imports": ["$import glob", "$import numpy", "$import os"],
        "bundle_root": ".", "image_key": "image", "output_dir": "$@bundle_root + '/eval'",
        "output_ext": ".nii.gz", "output_dtype": "$numpy.float32", "output_postfix": "trans",
        "separate_folder": True, "load_pretrain": True, "dataset_dir": "sampledata",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/imagesTs/*.nii.gz')))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": network_def, "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": preprocessing},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]",
                    "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 1},
        "inferer": inferer,
        "postprocessing": {"_target_": "Compose", "transforms": post + [
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_ext": "@output_ext",
             "output_dtype": "@output_dtype", "output_postfix": "@output_postfix",
             "separate_folder": "@separate_folder"}]},
        "handlers": [{"_target_": "StatsHandler", "iteration_log": False}],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "val_handlers": "@handlers", "amp": True},
        "checkpointloader": {"_target_": "CheckpointLoader", "load_path": load_path,
                             "load_dict": {"model": "@network"}},
        "initialize": ["$@checkpointloader(@evaluator) if @load_pretrain else None"],
        "run": ["$@evaluator.run()"],
    }


SEGRESNET = {"_target_": "SegResNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 5, "init_filters": 8,
             "blocks_down": [1, 2, 2], "blocks_up": [1, 1], "dropout_prob": 0.2}


def wholebody_config() -> dict:
    """wholeBody_ct_segmentation's inference.json, its SegResNet made small (32³ windows)."""
    config = _common(
        preprocessing=[
            {"_target_": "LoadImaged", "keys": KEY}, {"_target_": "EnsureTyped", "keys": KEY},
            {"_target_": "EnsureChannelFirstd", "keys": KEY},
            {"_target_": "Orientationd", "keys": KEY, "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": KEY, "pixdim": "@pixdim", "mode": "bilinear"},
            {"_target_": "NormalizeIntensityd", "keys": KEY, "nonzero": True},
            {"_target_": "ScaleIntensityd", "keys": KEY, "minv": -1.0, "maxv": 1.0}],
        inferer={"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32],
                 "sw_batch_size": "@displayable_configs#sw_batch_size", "overlap": "@displayable_configs#sw_overlap",
                 "padding_mode": "replicate", "mode": "gaussian",
                 "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')"},
        network_def=SEGRESNET,
        post=[{"_target_": "Activationsd", "keys": "pred", "softmax": True},
              {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
              {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": KEY,
               "nearest_interp": True, "to_tensor": True}],
        load_path="$@bundle_root + '/models/' + @modelname")
    return {"displayable_configs": {"highres": True, "sw_overlap": 0.25, "sw_batch_size": 1},
            "pixdim": "$[1.5, 1.5, 1.5] if @displayable_configs#highres else [3.0, 3.0, 3.0]",
            "modelname": "$'model.pt' if @displayable_configs#highres else 'model_lowres.pt'", **config}


SWIN = {"_target_": "SwinUNETR", "spatial_dims": 3, "img_size": 64, "in_channels": 1, "out_channels": 5,
        "feature_size": 12, "depths": [1, 1, 1, 1], "use_checkpoint": False}


def swin_config() -> dict:
    """swin_unetr_btcv_segmentation's inference.json, its SwinUNETR made small (64³ windows)."""
    config = _common(
        preprocessing=[
            {"_target_": "LoadImaged", "keys": KEY, "reader": "ITKReader"},
            {"_target_": "EnsureChannelFirstd", "keys": KEY},
            {"_target_": "Orientationd", "keys": KEY, "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": KEY, "pixdim": [1.5, 1.5, 2.0], "mode": "bilinear"},
            {"_target_": "ScaleIntensityRanged", "keys": KEY, "a_min": -175, "a_max": 250, "b_min": 0.0,
             "b_max": 1.0, "clip": True},
            {"_target_": "EnsureTyped", "keys": KEY}],
        inferer={"_target_": "SlidingWindowInferer", "roi_size": [64, 64, 64], "sw_batch_size": 4, "overlap": 0.5},
        network_def=SWIN,
        post=[{"_target_": "Activationsd", "keys": "pred", "softmax": True},
              {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": KEY,
               "nearest_interp": False, "to_tensor": True},
              {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}],
        load_path="$@checkpoint")
    return {"checkpoint": "$@bundle_root + '/models/model.pt'", **config}


def _network(spec: dict, seed: int, scale: float = 2.0):
    """A MONAI network of ``spec`` with random weights made confident (labels are not near-ties)."""
    import monai.networks.nets
    import torch

    torch.manual_seed(seed)
    args = {k: v for k, v in spec.items() if k not in ("_target_", "img_size")}
    network = getattr(monai.networks.nets, spec["_target_"])(**args)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.mul_(scale)
    return network.eval()


def write_bundle(root: Path, name: str, config: dict, weights: dict) -> Path:
    """A bundle folder: configs/{metadata,inference}.json and models/<file> state dicts."""
    import torch

    folder = root / name
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    (folder / "configs" / "metadata.json").write_text(json.dumps(_metadata(name), indent=2))
    (folder / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    for file_name, network in weights.items():
        torch.save(network.state_dict(), folder / "models" / file_name)
    return folder


def _case(path: Path, shape, spacing, seed: int) -> Path:
    """A CT-like volume: soft noise with a bright blob, larger than the window in every axis once resampled, and
    a slab of exact zeros (which NormalizeIntensityd(nonzero) leaves out of its statistics and at 0)."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    image = -300 + 60 * rng.standard_normal(shape) + 500 * np.exp(-4 * (i**2 + (j - 0.3) ** 2 + k**2))
    image[:, :, :5] = 0.0
    write_volume(Volume(image.astype(np.float32), Geometry.create(shape, spacing, (10.0, -4.0, 7.0))), path)
    return path


def _monai_side(folder: Path, case: Path, network_key_spec: dict, weights: Path, ours_image: np.ndarray):
    """MONAI's ConfigParser on the bundle's own config: its preprocessed image, and its inferer's probabilities
    on that image and on SegmentAI's (``ours_image``, MONAI's (x, y, z) order): the pipeline, and the inference
    alone (a random network with scaled weights amplifies a 1e-7 input difference)."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    parser["bundle_root"] = str(folder)
    for transform in parser["preprocessing"]["transforms"]:
        transform.pop("reader", None)  # the swin bundle's ITKReader needs itk; MONAI reads the NIfTI with nibabel
    image = parser.get_parsed_content("preprocessing")({"image": str(case)})["image"]
    network = _network(network_key_spec, 0)
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    # One window at a time on both sides: the batch is no setting of the result, but SegmentAI's batched
    # channels-last windows round differently, which this random SegResNet amplifies (7.7e-4 at batch 4).
    parser["inferer"]["sw_batch_size"] = 1
    inferer = parser.get_parsed_content("inferer")
    with torch.no_grad():
        own = inferer(torch.as_tensor(image)[None].float(), network)
        same = inferer(torch.from_numpy(np.ascontiguousarray(ours_image))[None, None], network)
    return np.asarray(image[0]), torch.softmax(own, 1)[0].numpy(), torch.softmax(same, 1)[0].numpy()


def _compare(name: str, package, folder: Path, case: Path, spec: dict):
    """SegmentAI's input and probabilities against MONAI's (<= 1e-4, on the same input and through each own)."""
    segmenter = Segmenter(package, device="cpu")
    prepared = prepare_input(read_volume(case), package.manifest.preprocessing)
    plan = segmenter.plan(prepared.array.size)
    plan.budget_bytes = int(np.prod(plan.patch_kji) * plan.bytes_per_voxel)  # one window at a time, as MONAI here
    ours = predict_probabilities(segmenter.network, prepared.array, plan, "cpu")
    ours_image = prepared.array.transpose(2, 1, 0)  # (k, j, i) -> MONAI's (x, y, z)
    theirs_image, theirs, same_input = _monai_side(folder, case, spec, folder / "models" / "model.pt", ours_image)
    assert ours_image.shape == theirs_image.shape
    image_difference = float(np.abs(ours_image - theirs_image).max())
    same = float(np.abs(ours - same_input.transpose(0, 3, 2, 1)).max())
    pipeline = float(np.abs(ours - theirs.transpose(0, 3, 2, 1)).max())
    print(f"{name}: input difference {image_difference:.1e}; probability difference {same:.1e} on the same "
          f"input, {pipeline:.1e} through each one's preprocessing")
    assert image_difference < 1e-4 and same <= 1e-4 and pipeline <= 1e-4
    labels = segmenter.segment(read_volume(case)).labelmap.array
    assert (labels > 0).any()
    return prepared


@pytest.fixture(scope="module")
def wholebody(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wholebody")
    return write_bundle(root, "wholeBody_ct_segmentation", wholebody_config(),
                        {"model.pt": _network(SEGRESNET, 1), "model_lowres.pt": _network(SEGRESNET, 2)})


def test_wholebody_structure_imports_and_matches_monai(wholebody, tmp_path):
    """The highres flag picks 1.5 mm and model.pt, as MONAI reads it; input and probabilities equal MONAI's."""
    import torch

    torch.set_num_threads(1)
    registry = ModelRegistry(builtin_dir=tmp_path / "none", user_dir=tmp_path / "models")
    package = registry.import_package(wholebody)
    manifest = package.manifest
    assert manifest.architecture_name == "SegResNet"
    assert manifest.preprocessing["target_spacing"] == [1.5, 1.5, 1.5]
    assert manifest.normalization == {"type": "zscore", "nonzero": True, "rescale": [-1.0, 1.0]}
    assert (manifest.blend_mode, manifest.overlap) == ("gaussian", 0.25)
    assert [label.name for label in manifest.labels] == list(CHANNELS.values())[1:]
    extension = manifest.extensions["x-monai-bundle"]
    assert "models/model.pt" in extension["files"] and "models/model_lowres.pt" not in extension["files"]
    assert any("repeating its edge" in note for note in extension["approximations"])
    assert any("nearest neighbour" in note for note in extension["approximations"])

    case = _case(tmp_path / "case.nii.gz", (36, 40, 48), (1.5, 1.5, 1.5), 5)
    _compare("wholeBody-shaped bundle", package, wholebody, case, SEGRESNET)


def test_wholebody_lowres_flag_picks_3mm_and_the_lowres_weights(wholebody, tmp_path):
    import shutil

    import torch

    folder = tmp_path / "lowres"
    shutil.copytree(wholebody, folder)
    config = wholebody_config()
    config["displayable_configs"]["highres"] = False
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    package = convert_model(folder, tmp_path / "package")
    assert package.manifest.preprocessing["target_spacing"] == [3.0, 3.0, 3.0]
    assert "models/model_lowres.pt" in package.manifest.extensions["x-monai-bundle"]["files"]
    from safetensors.torch import load_file

    weights = load_file(str(Path(package.folder) / "model.safetensors"))
    lowres = torch.load(folder / "models" / "model_lowres.pt", weights_only=True)
    assert all(torch.equal(weights[key], value) for key, value in lowres.items())


@pytest.mark.parametrize("expression", [
    "$__import__('os').system('touch /tmp/segmentai-pwned') and [1.5] * 3",
    "$[1.5, 1.5, 1.5] if os.path.exists('/etc') else [3.0, 3.0, 3.0]",
    "$[x for x in (1.5, 1.5, 1.5)]",
    "$(lambda: [1.5] * 3)()",
    "$@displayable_configs.__class__",
    "%other.json#pixdim",
])
def test_other_expressions_are_refused_and_never_run(wholebody, tmp_path, expression):
    import shutil

    folder = tmp_path / "odd"
    shutil.copytree(wholebody, folder)
    config = wholebody_config()
    config["pixdim"] = expression
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="expression|names no entry") as error:
        convert_model(folder, tmp_path / "package")
    assert "\n" not in str(error.value) and not Path("/tmp/segmentai-pwned").exists()


def test_checkpoint_outside_the_bundles_models_folder_is_refused(wholebody, tmp_path):
    import shutil

    folder = tmp_path / "escape"
    shutil.copytree(wholebody, folder)
    config = wholebody_config()
    config["modelname"] = "../../../etc/model.pt"
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="not a .pt file in the bundle's models/"):
        convert_model(folder, tmp_path / "package")


@pytest.fixture(scope="module")
def swin(tmp_path_factory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("swin"), "swin_unetr_btcv_segmentation", swin_config(),
                        {"model.pt": _network(SWIN, 3, scale=1.5)})


def test_swin_unetr_img_size_is_left_out_and_probabilities_match_monai(swin, tmp_path):
    """MONAI 1.6's SwinUNETR refuses img_size; the import leaves it out (it never shaped the network) and says
    so; SegmentAI's input and probabilities equal MONAI's on the config's own preprocessing and inferer."""
    import inspect

    import torch
    from monai.networks.nets import SwinUNETR

    torch.set_num_threads(1)
    if "img_size" in inspect.signature(SwinUNETR.__init__).parameters:
        pytest.skip("this MONAI still takes img_size: nothing is left out")
    package = convert_model(swin, tmp_path / "package")
    manifest = package.manifest
    assert manifest.architecture_name == "SwinUNETR" and "img_size" not in manifest.architecture_args
    assert manifest.architecture_args["feature_size"] == 12
    assert any("img_size = 64 was left out" in note for note in manifest.extensions["x-monai-bundle"]["approximations"])
    assert manifest.normalization == {"type": "ct_window", "window": [-175.0, 250.0]}
    assert manifest.preprocessing["target_spacing"] == [1.5, 1.5, 2.0] and manifest.overlap == 0.5
    assert [label.name for label in manifest.labels][2] == "Left Kideny"  # the bundle's own spelling

    case = _case(tmp_path / "case.nii.gz", (70, 52, 52), (2.0, 2.0, 2.0), 7)  # (k, j, i): 140 x 104 x 104 mm
    prepared = _compare("swin_unetr_btcv-shaped bundle", package, swin, case, SWIN)
    assert min(prepared.array.shape) >= 64  # every axis takes more than one window
