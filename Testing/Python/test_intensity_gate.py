"""The voxel-wise HU gate of fine-tuned CT packages: on the model's grid in the engine, and kept by a
fine-tuning run only where it raises the validation Dice."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from segmentai_core.errors import ModelError
from segmentai_core.geometry import Geometry
from segmentai_core.inference.intensity_gate import gate_labels, gate_probabilities, normalized_ranges
from segmentai_core.volume import Volume

torch.set_num_threads(1)

WINDOW = {"type": "ct_window", "window": [-160.0, 240.0]}


def organ_with_neighbour(seed: int = 0):
    """HU image: a 60 HU organ touching a 5 HU neighbour (a gallbladder beside a liver), noise 8 HU,
    inside 20 HU tissue; returns the image and the organ's mask."""
    rng = np.random.default_rng(seed)
    hu = np.full((24, 32, 32), 20.0) + rng.normal(0, 8, (24, 32, 32))
    organ = np.zeros(hu.shape, bool)
    organ[4:20, 6:20, 6:26] = True
    neighbour = np.zeros(hu.shape, bool)
    neighbour[8:16, 20:28, 10:22] = True  # shares the face j = 20 with the organ
    hu[organ] += 40.0
    hu[neighbour] -= 15.0
    return hu.astype(np.float32), organ, neighbour


def test_normalized_ranges_map_hu_through_the_window_and_refuse_other_normalisations():
    ranges = normalized_ranges({1: (40.0, 80.0)}, [1], WINDOW)
    assert ranges[1] == pytest.approx((0.5, 0.6))
    assert normalized_ranges({1: (-500.0, 80.0)}, [1], WINDOW)[1][0] == 0.0  # clipped as the image is
    with pytest.raises(ModelError, match="ct_window"):
        normalized_ranges({1: (40.0, 80.0)}, [1], {"type": "percentile"})
    with pytest.raises(ModelError, match="label 2"):
        normalized_ranges({2: (40.0, 80.0)}, [1], WINDOW)


def test_gate_takes_the_neighbour_of_another_density_and_keeps_the_noisy_organ_whole():
    hu, organ, neighbour = organ_with_neighbour()
    labels = (organ | neighbour).astype(np.uint8)  # the network took the neighbour for the organ
    gate_labels(labels, hu, {1: (36.0, 84.0)})  # the organ's quartiles -/+ one IQR, roughly
    kept = labels > 0
    assert kept[neighbour].mean() < 0.02  # the neighbour is gone
    from scipy import ndimage

    inner = ndimage.binary_erosion(organ)  # a noisy voxel does not punch a hole: the median decides
    assert kept[inner].all() and kept[organ].mean() > 0.95  # only edges, mostly outside, can go
    probabilities = np.stack([np.full(hu.shape, 0.2, np.float32), np.full(hu.shape, 0.8, np.float32)])
    probabilities[:, ~(organ | neighbour)] = [[1.0], [0.0]]
    taken = gate_probabilities(probabilities, hu, {1: (36.0, 84.0)})
    assert taken == int(np.count_nonzero((probabilities[1] == 0) & (organ | neighbour)))
    np.testing.assert_allclose(probabilities.sum(0), 1.0)  # the mass moved to the background
    assert (probabilities[1][neighbour] == 0).mean() > 0.98 and (probabilities[1][inner] > 0.5).all()


def _constant_ct_package(folder, gate=None, normalization=WINDOW):
    """A valid package whose network says "object" everywhere (zero weights, output bias [0, 5])."""
    from segmentai_core.models.networks import build_network
    from segmentai_core.models.package import write_model_package
    from segmentai_core.testing import TINY_MANIFEST

    manifest = copy.deepcopy(TINY_MANIFEST)
    manifest.update(modality="CT", input_channels=["CT"])
    manifest["preprocessing"] = dict(manifest["preprocessing"], target_spacing=[1.0, 1.0, 1.0],
                                     normalization=normalization)
    manifest["inference"] = dict(manifest["inference"], mirror_axes=[])
    manifest["postprocessing"] = {"largest_component": True, "fill_holes": True}
    if gate is not None:
        manifest["postprocessing"]["intensity_gate"] = gate
    network = build_network(manifest["architecture"], 3, 1, 2)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
        last = [m for m in network.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))][-1]
        last.bias.copy_(torch.tensor([0.0, 5.0]))
    return write_model_package(folder, manifest, network.state_dict())


def test_engine_applies_the_manifest_gate_on_the_model_grid_and_fills_the_holes_it_leaves(tmp_path):
    from segmentai_core.inference.engine import Segmenter

    hu, organ, neighbour = organ_with_neighbour(seed=1)
    hu[10:14, 10:14, 12:16] = 200.0  # a contrast-filled vessel inside the organ: gated, then refilled as a hole
    volume = Volume(np.round(hu).astype(np.int16), Geometry.create(hu.shape, (1.0, 1.0, 1.0)))
    plain = Segmenter(_constant_ct_package(tmp_path / "plain"), device="cpu").segment(volume).labelmap.array
    assert plain.all()  # without the gate the constant network labels everything
    gated = Segmenter(_constant_ct_package(tmp_path / "gated", gate={"1": [36, 84]}), device="cpu")
    labels = gated.segment(volume).labelmap.array > 0
    dice = 2 * (labels & organ).sum() / (labels.sum() + organ.sum())
    assert dice > 0.95 and labels[neighbour].mean() < 0.05
    assert labels[10:14, 10:14, 12:16].all()  # the enclosed vessel came back with hole filling


def test_engine_refuses_a_gate_its_normalisation_cannot_express_before_any_work(tmp_path):
    from segmentai_core.inference.engine import Segmenter

    package = _constant_ct_package(tmp_path / "p", gate={"1": [36, 84]}, normalization={"type": "zscore"})
    hu = organ_with_neighbour()[0]
    volume = Volume(np.round(hu).astype(np.int16), Geometry.create(hu.shape, (1.0, 1.0, 1.0)))
    with pytest.raises(ModelError, match="ct_window"):
        Segmenter(package, device="cpu").segment(volume)


def test_finetuning_keeps_the_gate_only_where_the_validation_gains():
    from segmentai_train.gate_choice import choose_intensity_gate
    from segmentai_train.sampling import CanonicalCase

    hu, organ, neighbour = organ_with_neighbour(seed=2)
    image = (np.clip(hu, -160, 240) + 160) / 400  # the network's input under WINDOW
    truth = organ.astype(np.uint8)
    case = CanonicalCase("val", image.astype(np.float32), truth)
    post = {"largest_component": True, "fill_holes": True}
    leaky = lambda _image: (organ | neighbour).astype(np.uint8)  # noqa: E731 - the network took the neighbour
    gate, before, after = choose_intensity_gate(leaky, [case], 2, {1: (36.0, 84.0)}, [1], WINDOW, post)
    assert gate == {1: (36.0, 84.0)} and after > before + 0.04
    exact = lambda _image: truth.copy()  # noqa: E731 - nothing to gain: no gate
    assert choose_intensity_gate(exact, [case], 2, {1: (36.0, 84.0)}, [1], WINDOW, post)[0] == {}
    mixed = truth.copy()  # a structure of two densities: the gate would cut its low half off
    mixed_hu = hu.copy()
    mixed_hu[4:12, 6:20, 6:26] -= 40.0
    mixed_case = CanonicalCase("mixed", ((np.clip(mixed_hu, -160, 240) + 160) / 400).astype(np.float32), mixed)
    assert choose_intensity_gate(exact, [mixed_case], 2, {1: (36.0, 84.0)}, [1], WINDOW, post)[0] == {}
    assert choose_intensity_gate(leaky, [case], 2, {1: (36.0, 84.0)}, [1], {"type": "percentile"}, post)[0] == {}
