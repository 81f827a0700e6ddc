"""Reading pickled PyTorch checkpoints without running their code.

``torch.load(weights_only=True)`` rebuilds only tensors, plain containers and the globals
allowed explicitly. nnU-Net checkpoints also hold NumPy scalars (numbers in the training log),
so exactly the NumPy types that carry plain numbers are allowed; anything else (a class, a
function such as ``os.system``) is refused before it is called.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any, List, Tuple, Union

from ..errors import ModelError

__all__ = ["load_checkpoint", "allowed_globals"]


def allowed_globals() -> List[Union[Any, Tuple[Any, str]]]:
    """NumPy globals that only rebuild numbers and dtypes, under their NumPy 1 and 2 names."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # NumPy 1
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]

    allowed: List[Union[Any, Tuple[Any, str]]] = [
        scalar, np.dtype,
        (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
    ]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in ("Float16DType", "Float32DType", "Float64DType", "Int8DType", "Int16DType", "Int32DType",
                     "Int64DType", "UInt8DType", "UInt16DType", "UInt32DType", "UInt64DType", "BoolDType"):
            if hasattr(dtypes, name):
                allowed.append(getattr(dtypes, name))
    return allowed


def load_checkpoint(path: Union[str, Path], data: bytes | None = None) -> Any:
    """Unpickle the checkpoint at ``path`` (or its bytes ``data``) safely; ModelError if refused."""
    import torch

    path = Path(path)
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ModelError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = f" ({found.group(1)})" if found else ""
        raise ModelError(
            f"{path.name} was refused: it holds Python objects outside the allowed plain types{what}, "
            "and loading it could run code"
        ) from error
    except Exception as error:  # torch raises RuntimeError subclasses with long texts
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ModelError(f"{path.name} is not a readable PyTorch checkpoint ({first})") from error
