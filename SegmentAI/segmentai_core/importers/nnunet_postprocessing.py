"""Reading nnU-Net v2's ``postprocessing.pkl`` as plain data, without running pickled code.

``nnUNetv2_find_best_configuration`` (through ``determine_postprocessing``) pickles a pair
``(functions, kwargs)``: a list of function *references* (in practice nnU-Net's
``remove_all_but_largest_component_from_segmentation``) and one keyword dictionary per
function. Unpickling it normally would import and hand back whatever callable it names, and a
crafted file can call one while loading. Here a restricted unpickler resolves only the known
nnU-Net postprocessing function names, to an inert marker, plus NumPy's number rebuilders;
every other global is refused before anything is called. The result is a list of JSON steps::

    {"function": "remove_all_but_largest_component", "labels_or_regions": [1, [2, 3]], "background_label": 0}

where an int is a label and a list of ints is a region (the union of those labels), as in
nnU-Net's ``region_or_label_to_mask``.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ..errors import ModelError

__all__ = ["KEEP_LARGEST", "find_postprocessing_file", "read_postprocessing"]

KEEP_LARGEST = "remove_all_but_largest_component"
"""Step name of nnU-Net's ``remove_all_but_largest_component_from_segmentation``."""

_KNOWN_FUNCTIONS = {
    ("nnunetv2.postprocessing.remove_connected_components",
     "remove_all_but_largest_component_from_segmentation"): KEEP_LARGEST,
}
_MAX_BYTES = 1 << 20  # the real file is a few hundred bytes


class _Function:
    """Inert stand-in for a known nnU-Net function: it has a name and cannot be called."""

    __slots__ = ("step",)

    def __init__(self, step: str) -> None:
        self.step = step


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed globals; anything else raises before it can be called."""

    def find_class(self, module: str, name: str) -> Any:
        step = _KNOWN_FUNCTIONS.get((module, name))
        if step is not None:
            return _Function(step)
        number = _numpy_global(module, name)
        if number is not None:
            return number
        raise pickle.UnpicklingError(f"GLOBAL {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def _numpy_global(module: str, name: str) -> Optional[Any]:
    """NumPy's scalar and dtype rebuilders (label values may be NumPy integers), nothing else."""
    if module not in ("numpy.core.multiarray", "numpy._core.multiarray", "numpy"):
        return None
    import numpy as np

    if name == "dtype":
        return np.dtype
    if name == "scalar" and module != "numpy":
        try:
            from numpy._core.multiarray import scalar
        except ImportError:  # NumPy 1
            from numpy.core.multiarray import scalar  # type: ignore[no-redef]
        return scalar
    return None


def find_postprocessing_file(folder: Path, folds: Sequence[str]) -> Optional[Path]:
    """The ``crossval_results_folds_*/postprocessing.pkl`` for the imported folds, if the folder has one.

    nnU-Net names the folder after the folds it cross-validated (``crossval_results_folds_0_1_2_3_4``):
    the one matching ``folds`` (``["fold_0", ...]``) wins, otherwise the one covering most folds.
    """
    candidates = sorted(p for p in folder.glob("crossval_results_folds_*/postprocessing.pkl") if p.is_file())
    if not candidates:
        return None
    wanted = "_".join(sorted((f.replace("fold_", "") for f in folds), key=lambda v: (len(v), v)))
    for path in candidates:
        if path.parent.name == f"crossval_results_folds_{wanted}":
            return path
    return max(candidates, key=lambda p: len(p.parent.name.split("_")))


def _label(value: Any, where: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ModelError(f"{where}: {value!r} is not a label value")
    return int(value.__index__())


def _label_or_region(value: Any, where: str) -> Union[int, List[int]]:
    """An int label, or a region (tuple/list of labels) as a list of ints."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ModelError(f"{where}: an empty region")
        return [_label(v, where) for v in value]
    return _label(value, where)


def _step(function: Any, kwargs: Any, where: str) -> Dict[str, Any]:
    if not isinstance(function, _Function):
        raise ModelError(f"{where}: {function!r} is not an nnU-Net postprocessing function")
    if not isinstance(kwargs, dict):
        raise ModelError(f"{where}: the arguments of {function.step} are not a dictionary")
    unknown = sorted(set(map(str, kwargs)) - {"labels_or_regions", "background_label"})
    if unknown or "labels_or_regions" not in kwargs:
        raise ModelError(f"{where}: {function.step} with arguments {sorted(map(str, kwargs))} is not supported")
    targets = kwargs["labels_or_regions"]
    # nnU-Net: a list holds several labels/regions; a lone int or tuple is one label/region.
    items = targets if isinstance(targets, list) else [targets]
    return {
        "function": function.step,
        "labels_or_regions": [_label_or_region(item, where) for item in items],
        "background_label": _label(kwargs.get("background_label", 0), where),
    }


def read_postprocessing(path: Union[str, Path], data: Optional[bytes] = None) -> List[Dict[str, Any]]:
    """The steps of an nnU-Net ``postprocessing.pkl`` (or its bytes ``data``) as JSON-ready dicts.

    Raises a one-line :class:`ModelError` for anything but ``(functions, kwargs)`` built from
    the known nnU-Net postprocessing functions and plain data; nothing named in a refused file
    is imported or called.
    """
    path = Path(path)
    where = f"{path.parent.name}/{path.name}"
    if data is None:
        try:
            if path.stat().st_size > _MAX_BYTES:
                raise ModelError(f"{where} is too large for an nnU-Net postprocessing file")
            data = path.read_bytes()
        except OSError as error:
            raise ModelError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        content = _RestrictedUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as error:
        found = re.match(r"GLOBAL ([\w.]+)", str(error))
        what = f" ({found.group(1)})" if found else ""
        raise ModelError(f"{where} was refused: it names Python objects other than nnU-Net's postprocessing "
                         f"functions{what}, and loading it could run code") from error
    except Exception as error:  # noqa: BLE001 - a damaged pickle raises many kinds; one line for all
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ModelError(f"{where} is not a readable nnU-Net postprocessing file ({first})") from error
    if not (isinstance(content, tuple) and len(content) == 2 and all(isinstance(c, list) for c in content)
            and len(content[0]) == len(content[1])):
        raise ModelError(f"{where} is not an nnU-Net postprocessing file (expected (functions, kwargs) lists)")
    return [_step(f, k, where) for f, k in zip(*content)]
