"""Restore + postprocess of a many-class output (as the catalog's CT models give), timed alone.

On the volume resampled to 1.5 mm (TotalSegmentator's spacing), ``classes`` structures tile the
head's foreground like organs do (a soft Voronoi partition around random seeds: smooth
probabilities, boundaries a few voxels wide, background outside the head); the soft-max is restored
to the input grid and postprocessed (largest component and hole filling for every class), with
the time and the RSS added by those two steps. The engine's order for two-class models (holes
filled on the 1.5 mm grid before the restore, keep-largest after it) is timed after that, with the
voxels it changes. A random-weight network is not used: its label map changes class from voxel to
voxel, nothing like an organ atlas, and there a restore that interpolates only at boundaries
interpolates everywhere (tried: minutes for 104 classes).
Called by ``bench_segment.py --many-classes N`` in a fresh subprocess.
"""

from __future__ import annotations

import resource
import threading
import time


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _PeakSampler:
    """Highest RSS seen while the ``with`` block runs (sampled every 5 ms)."""

    def __enter__(self):
        self.peak = _rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mib())

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib())


def soft_partition(foreground, classes: int, seed: int = 0, width_voxels: float = 1.5):
    """Soft-max probabilities (classes + 1, *shape) of ``classes`` cells tiling ``foreground``."""
    import numpy as np
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    inside = np.argwhere(foreground)
    seeds = inside[rng.choice(len(inside), classes, replace=False)].astype(np.float32)
    grid = np.indices(foreground.shape, dtype=np.float32)
    # Logits: minus the distance to each seed, sharpened so that boundaries are ~width voxels wide.
    logits = np.empty((classes + 1,) + foreground.shape, dtype=np.float32)
    for c, point in enumerate(seeds, start=1):
        logits[c] = -np.sqrt(sum((grid[a] - point[a]) ** 2 for a in range(3)))
    nearest = logits[1:].max(axis=0)
    outside = ndimage.distance_transform_edt(~foreground) - ndimage.distance_transform_edt(foreground)
    logits[0] = nearest + outside.astype(np.float32)  # background wins outside the foreground
    logits /= width_voxels
    logits -= logits.max(axis=0, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=0, keepdims=True)
    return logits


def run_many_classes(path: str, threads: int, classes: int) -> dict:
    import numpy as np
    import torch

    from segmentai_core.inference.postprocess import clean_labels, fill_holes_in_probabilities, keep_largest_component
    from segmentai_core.inference.preprocess import prepare_input
    from segmentai_core.inference.restore import restore_labels
    from segmentai_core.io import read_volume
    from segmentai_core.progress import Progress

    torch.set_num_threads(threads)
    volume = read_volume(path)
    prepared = prepare_input(volume, {"orientation": "RAS", "target_spacing": [1.5, 1.5, 1.5],
                                      "normalization": {"type": "zscore"}})
    probabilities = soft_partition(prepared.array > 0.0, classes, seed=0)
    values = list(range(1, classes + 1))
    before = _rss_mib()
    with _PeakSampler() as sampler:
        t = time.perf_counter()  # the engine's order for a many-class model: restore, then the 3D steps
        labels, box = restore_labels(probabilities, prepared.canonical, volume.geometry, values, Progress())
        restore_s = time.perf_counter() - t
        t = time.perf_counter()
        if box is not None:
            clean_labels(labels, values, largest=True, holes=True, within=box)
        postprocess_s = time.perf_counter() - t
    parity = _parity_in_slab(probabilities, prepared.canonical, volume.geometry, values)
    # Measured and not taken for many classes: the two-class models' order (holes filled on the
    # 1.5 mm grid, the restore, keep-largest on the input grid).
    t = time.perf_counter()
    fill_holes_in_probabilities(probabilities, largest=True, slice_holes=False)
    on_grid, box = restore_labels(probabilities, prepared.canonical, volume.geometry, values, Progress())
    if box is not None:
        keep_largest_component(on_grid, values, within=box)
    on_grid_s = time.perf_counter() - t
    differ = on_grid != labels
    return {
        "classes": classes, "canonical_shape": list(prepared.array.shape), "input_shape": list(volume.geometry.shape),
        "classes_present": int(len(np.unique(labels))) - 1,
        "restore_s": restore_s, "postprocess_s": postprocess_s, "restore_plus_postprocess_s": restore_s + postprocess_s,
        "probabilities_mib": probabilities.nbytes / 1024**2,
        # Peak RSS during restore + postprocess above what the process held before them (image,
        # probabilities, network), output label map included: the work memory of these two steps.
        "work_peak_mib": sampler.peak - before,
        "model_grid_postprocess_then_restore_s": on_grid_s,
        "model_grid_voxels_differing": int(np.count_nonzero(differ)),
        "model_grid_voxels_differing_made_background": int(np.count_nonzero(differ & (on_grid == 0))),
        "foreground_voxels": int(np.count_nonzero(labels)),
        "rss_before_mib": before,
        **parity,
    }


def _parity_in_slab(probabilities, canonical, original, values, planes: int = 12) -> dict:
    """Restore against the plain definition (every class resampled by SimpleITK, then arg-max) on
    ``planes`` input planes through the middle: the plain one takes minutes on the whole grid."""
    from segmentai_core.inference.restore import probabilities_to_labels_reference, restore_labels
    from segmentai_core.progress import Progress

    k0 = original.shape[0] // 2 - planes // 2
    slab = original.cropped((k0, 0, 0), (k0 + planes, original.shape[1], original.shape[2]))
    ours, _ = restore_labels(probabilities, canonical, slab, values, Progress())
    plain = probabilities_to_labels_reference(probabilities, canonical, slab, values, Progress())
    return {"parity_slab_planes": [int(k0), int(k0 + planes)],
            "parity_slab_foreground_voxels": int((plain > 0).sum()),
            "parity_slab_voxels_differing_from_plain_definition": int((ours != plain).sum())}
