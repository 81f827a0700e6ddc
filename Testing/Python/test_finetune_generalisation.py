"""Few-shot fine-tuning that generalises: no left-right flip for lateralised labels, a threshold chosen
on the held-aside part and baked into the head, inference windows of the training patch, and a
held-aside cut across slices only."""

from __future__ import annotations

import math
import re

import numpy as np
import torch

from conftest import make_tiny_package
from segmentai_core.dataset import add_case
from segmentai_core.models.package import ModelPackage

from test_finetune_data_plan import QUICK, ct_case

torch.set_num_threads(1)


def body_with(organ_i: slice) -> tuple:
    image = np.zeros((20, 30, 60), np.float32)
    image[:, 5:25, 10:50] = 1.0  # the body spans i 10..49, centre 29.5
    label = np.zeros(image.shape, np.uint8)
    label[5:15, 10:20, organ_i] = 1
    return image, label


def test_a_class_off_the_midline_is_lateralised_and_a_centred_one_is_not():
    from segmentai_train.data_plan import lateralised_classes

    assert lateralised_classes([body_with(slice(12, 22))], 2, axis=2) == [1]  # a spleen: one side
    assert lateralised_classes([body_with(slice(24, 36))], 2, axis=2) == []  # a bladder: the midline
    image, label = body_with(slice(24, 36))
    label[5:15, 10:20, 40:46] = 2
    assert lateralised_classes([(image, label)], 3, axis=2) == [2]


def test_no_flip_in_the_augmentation_of_a_lateralised_class():
    from segmentai_train.sampling import CanonicalCase, PatchSampler

    image, label = body_with(slice(12, 22))
    image = image + np.linspace(0, 1, image.shape[2], dtype=np.float32)  # left differs from right
    case = CanonicalCase("c", image, label)
    for flip_axis in (2, None):
        sampler = PatchSampler([case], (16, 16, 16), batch_size=1, foreground_fraction=1.0, seed=3,
                               flip_axis=flip_axis)
        names = [type(t).__name__ for t in sampler.augment.transforms]
        assert ("RandFlipd" in names) == (flip_axis is not None)


def test_threshold_is_chosen_where_the_validation_gains_and_zero_where_it_does_not():
    from segmentai_train.calibration import MIN_GAIN, choose_offsets, offset_for

    truth = np.zeros((4, 10, 10), np.uint8)
    truth[:, 2:8, 2:8] = 1
    p = np.where(truth == 1, 0.3, 0.05)  # an under-confident model: foreground at 0.3
    logits = np.stack([np.log(1 - p), np.log(p)]).astype(np.float32)
    offsets, before, after = choose_offsets([logits], [truth])
    assert before == 0.0 and after == 1.0
    assert offsets[0] == 0 and 1 / (1 + math.exp(offsets[1])) < 0.3  # a threshold below 0.3
    confident = np.stack([np.where(truth == 1, -3.0, 3.0), np.where(truth == 1, 3.0, -3.0)]).astype(np.float32)
    offsets, before, after = choose_offsets([confident], [truth])
    assert not offsets.any() and before == after == 1.0  # nothing to gain: the 0.5 threshold stays
    assert MIN_GAIN > 0 and abs(offset_for(0.5)) < 1e-9


def test_offsets_go_into_the_output_bias_only_when_they_move_the_logits_exactly():
    from monai.networks.nets import UNet

    from segmentai_train.calibration import add_class_offsets

    torch.manual_seed(0)
    net = UNet(3, 1, 2, (4, 8), (2,), num_res_units=1).eval()
    probe = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        before = net(probe)
    assert add_class_offsets(net, [0.0, 1.5], probe)
    with torch.no_grad():
        moved = net(probe) - before
    assert torch.allclose(moved[:, 0], torch.zeros_like(moved[:, 0]), atol=1e-4)
    assert torch.allclose(moved[:, 1], torch.full_like(moved[:, 1], 1.5), atol=1e-4)
    normalised = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1), torch.nn.InstanceNorm3d(2))
    state = {k: v.clone() for k, v in normalised.state_dict().items()}
    assert not add_class_offsets(normalised, [0.0, 1.5], probe)  # a bias before a norm does not shift logits
    assert all(torch.equal(state[k], v) for k, v in normalised.state_dict().items())


def test_held_aside_cuts_across_slices_only():
    from segmentai_train.holdout import split_case
    from segmentai_train.sampling import CanonicalCase

    image = np.zeros((15, 60, 60), np.float32)
    label = np.zeros(image.shape, np.uint8)
    label[0:12, 5:55, 5:55] = 1  # 12 slices, wide in-plane: still cut across the slices
    train, val = split_case(CanonicalCase("c", image, label), 0.25)
    assert val.image.shape == (3, 60, 60) and train.image.shape == (12, 60, 60)
    flat = np.zeros(image.shape, np.uint8)
    flat[5:10, 5:55, 5:55] = 1  # 5 slices: not cut (in-sample), never cut within the slices
    assert split_case(CanonicalCase("f", image, flat)) is None


def test_lateral_ct_organ_package_has_no_x_mirror_its_training_patch_and_a_calibrated_head(tmp_path):
    from segmentai_train.finetune import finetune

    source = make_tiny_package(tmp_path / "tiny", modality="MR")
    image, mask = ct_case(seed=1, shape=(24, 48, 44))
    lateral = np.zeros_like(mask.array)
    lateral[:, 12:36, 26:38] = mask.array[:, 12:36, 26:38]  # the organ's half off the midline
    lateral[4:20, 18:30, 28:36] = 1
    data = tmp_path / "data"
    add_case(data, image, mask.with_array(lateral), {1: "Organ"}, {"draft_model": "t"})
    result = finetune(source, data, tmp_path / "run", epochs=2, **QUICK)
    manifest = ModelPackage.open(result.package_dir).manifest
    training = manifest.extensions["x-training"]
    assert any("no left-right flip" in reason for reason in training["plan"])
    assert 0 not in manifest.mirror_axes
    patch_reason = [r for r in training["plan"] if r.startswith("training patch")]
    assert patch_reason  # 24 slices: the 32-slice patch shrinks to the images, and inference windows follow it
    assert list(manifest.patch_size) == [int(v) for v in re.findall(r"\d+", patch_reason[0].split("(x, y, z)")[0])]
    assert list(manifest.patch_size) != list(source.manifest.patch_size)
    if "class_thresholds" in training:  # chosen on the held-aside part only when it gained there
        assert training["class_thresholds"]["val_dice"] >= training["class_thresholds"]["val_dice_at_0.5"]
    off = finetune(source, data, tmp_path / "off", epochs=1, calibrate_threshold=False, **QUICK)
    assert "class_thresholds" not in ModelPackage.open(off.package_dir).manifest.extensions["x-training"]
