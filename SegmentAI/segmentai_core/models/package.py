"""A model package on disk: manifest + checksummed weights, loaded without ever running code.

Weights are read into memory once, hashed, compared with the manifest's SHA-256, and only then
parsed from those same bytes (so the file cannot change between the check and the load).
``state_dict`` files are unpickled with ``weights_only=True``: a pickle that carries code is
refused before any of it runs. TorchScript files are programs: they load only when the user
trusted them and pass the checks of :mod:`.code_guard`. Only regular files are read (a FIFO or a
device as the weights file would hang).
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import pickle
import stat
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Union

from ..errors import ModelError, OutputError
from ..io.staging import staged_folder, write_json_atomic
from .manifest import MANIFEST_NAME, ModelManifest, load_manifest
from .architectures import NNUNET, build_network, weights_follow

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ModelPackage", "write_model_package", "sha256_of_file"]

DEFAULT_WEIGHTS_NAME = "model.safetensors"


def sha256_of_file(path: Union[str, Path]) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelPackage:
    """A model folder. ``error`` is set (and ``manifest`` unusable) when the package is broken.

    Broken packages exist so that a registry listing can show them with their problem instead
    of failing; :meth:`open` raises instead of returning one.
    """

    def __init__(
        self,
        folder: Union[str, Path],
        manifest: Optional[ModelManifest] = None,
        builtin: bool = False,
        error: Optional[str] = None,
    ) -> None:
        self.folder = Path(folder)
        self._manifest = manifest
        self.builtin = builtin
        self.error = error
        self._code_allowed = False  # set by allow_code(): --trust-code for this process only
        if manifest is None and error is None:
            self._manifest = load_manifest(self.folder)

    @classmethod
    def open(cls, folder: Union[str, Path], builtin: bool = False) -> "ModelPackage":
        """Read and validate the package in ``folder`` (ModelError if it is not a valid one)."""
        return cls(folder, load_manifest(folder), builtin=builtin)

    @classmethod
    def scan(cls, folder: Union[str, Path], builtin: bool = False) -> "ModelPackage":
        """Like :meth:`open`, but a broken package comes back with ``error`` set."""
        try:
            return cls.open(folder, builtin=builtin)
        except ModelError as error:
            return cls(folder, None, builtin=builtin, error=str(error))

    # --- identity ----------------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def manifest(self) -> ModelManifest:
        if self._manifest is None:
            raise ModelError(self.error or f"model folder {self.folder} is broken")
        return self._manifest

    @property
    def id(self) -> str:
        return self._manifest.id if self._manifest else self.folder.name

    @property
    def version(self) -> str:
        return self._manifest.version if self._manifest else "?"

    @property
    def full_id(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def source(self) -> str:
        return "builtin" if self.builtin else "user"

    @property
    def weights_path(self) -> Path:
        return self.folder / self.manifest.weights_file

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"broken: {self.error}"
        return f"ModelPackage({self.full_id!r}, {str(self.folder)!r}, {self.source}, {state})"

    # --- integrity ---------------------------------------------------------------------------

    def _read_verified_weights(self) -> bytes:
        """The weights file's bytes, after checking that they hash to the manifest's SHA-256."""
        manifest = self.manifest
        path = self.weights_path
        # The schema allows a bare file name only; re-check after resolving links.
        if self.folder.resolve() not in path.resolve().parents:
            raise ModelError(f"model '{manifest.id}': weights file {manifest.weights_file} lies outside its folder")
        try:
            info = os.stat(path)
            if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
                raise ModelError(f"model '{manifest.id}': weights file {path.name} is not a regular file")
            _check_weights_size(manifest.id, path, info.st_size)
            data = path.read_bytes()
        except MemoryError:
            raise ModelError(f"model '{manifest.id}': weights file {path.name} does not fit in memory") from None
        except FileNotFoundError as error:
            raise ModelError(f"model '{manifest.id}': weights file {path} is missing") from error
        except OSError as error:
            raise ModelError(f"model '{manifest.id}': cannot read {path}: {error.strerror or error}") from error
        actual = hashlib.sha256(data).hexdigest()
        if actual != manifest.weights_sha256:
            raise ModelError(
                f"model '{manifest.id}': weights hash mismatch for {path.name} (expected "
                f"{manifest.weights_sha256[:12]}..., found {actual[:12]}...): "
                "the model folder was modified or is corrupt"
            )
        return data

    def verify(self) -> None:
        """Check the weights file against the manifest's SHA-256 (ModelError on mismatch).

        A weights file larger than the memory available is refused before it is read.
        """
        self._read_verified_weights()

    def check_loadable(self) -> None:
        """:meth:`verify`, then the same safety checks loading makes, without running anything.

        State dicts are parsed with ``weights_only`` (a code-carrying pickle or a pickle named
        ``.safetensors`` is refused); TorchScript archives get the static check of
        :func:`~.code_guard.check_torchscript_archive` (nothing is loaded).
        """
        from .code_guard import check_torchscript_archive

        data = self._read_verified_weights()
        if self.manifest.weights_format == "torchscript":
            check_torchscript_archive(data, f"model '{self.manifest.id}'")
        else:
            self._parse_state_dict(data)

    # --- code trust ----------------------------------------------------------------------------

    @property
    def carries_code(self) -> bool:
        """True for formats that are programs rather than weights (TorchScript)."""
        return self.ok and self.manifest.weights_format == "torchscript"

    def allow_code(self) -> "ModelPackage":
        """Let this package object load its code in this process (``--trust-code``); returns self."""
        self._code_allowed = True
        return self

    @property
    def code_trusted(self) -> bool:
        """True when the user allowed this package's code: for this run, or its SHA-256 recorded."""
        from .code_guard import is_trusted

        return self._code_allowed or (self.carries_code and is_trusted(self.manifest.weights_sha256))

    # --- loading -----------------------------------------------------------------------------

    def load_network(self, device: Union[str, "torch.device"] = "cpu") -> "torch.nn.Module":
        """Verify the weights, build the network, load the weights strictly, move it, eval mode.

        Nothing is cached here: the inference engine keeps loaded networks.
        """
        manifest = self.manifest
        data = self._read_verified_weights()
        fmt = manifest.weights_format
        if fmt == "torchscript":
            network = self._load_torchscript(data)
        else:
            network = _network_with(manifest, self._parse_state_dict(data), "the weights do not fit")
        return network.to(device).eval()

    def _load_torchscript(self, data: bytes) -> "torch.nn.Module":
        """Trusted TorchScript only: static archive check, load, then every graph checked."""
        import torch

        from .code_guard import check_torchscript_archive, check_torchscript_graphs, refusal_message

        manifest = self.manifest
        where = f"model '{manifest.id}'"
        if not self.code_trusted:
            raise ModelError(refusal_message(manifest.id))
        check_torchscript_archive(data, where)  # before torch.jit.load runs any __setstate__
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; its files still load
                warnings.simplefilter("ignore", DeprecationWarning)
                network = torch.jit.load(io.BytesIO(data), map_location="cpu")
        except Exception as error:  # torch raises RuntimeError subclasses with long texts
            raise ModelError(f"{where}: {manifest.weights_file} is not a TorchScript file "
                             f"({_first_line(error)})") from error
        check_torchscript_graphs(network, where)
        return network

    def _parse_state_dict(self, data: bytes) -> Dict[str, Any]:
        import torch

        manifest = self.manifest
        name = manifest.weights_file
        if manifest.weights_format == "safetensors":
            from safetensors import SafetensorError
            from safetensors.torch import load as load_safetensors

            try:
                return load_safetensors(data)
            except (SafetensorError, ValueError, OSError) as error:
                raise ModelError(f"model '{manifest.id}': {name} is not a safetensors file ({_first_line(error)})") \
                    from error
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            # weights_only refuses any global outside tensors and plain containers before calling it.
            raise ModelError(
                f"model '{manifest.id}': {name} was refused: it holds Python objects other than tensors, "
                "and loading it could run code (convert it to safetensors)"
            ) from error
        except Exception as error:
            raise ModelError(f"model '{manifest.id}': {name} is not a PyTorch state dict ({_first_line(error)})") \
                from error
        if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
        ):
            raise ModelError(f"model '{manifest.id}': {name} must hold a flat mapping of parameter names to tensors")
        return dict(state)

    # --- description -------------------------------------------------------------------------

    def card(self) -> str:
        """A human-readable summary: identity, task, labels, preprocessing, licence, data, accuracy."""
        if not self.ok:
            return f"{self.folder.name} ({self.source}, {self.folder})\n  BROKEN: {self.error}"
        m = self.manifest
        lines = [
            f"{m.name} ({m.full_id}, {self.source})",
            f"  folder:        {self.folder}",
            f"  task:          {m.task}",
            f"  modality:      {m.modality}; input channels: {', '.join(m.input_channels)}",
            f"  network:       {m.architecture_name} {m.dimensions}D, weights {m.weights_format} "
            f"(sha256 {m.weights_sha256[:12]}...)",
            "  labels:        " + ", ".join(f"{label.value}={label.name}" for label in m.labels),
        ]
        if self.carries_code:
            lines.append("  runs code:     yes (TorchScript program); " + (
                "trusted on this machine" if self.code_trusted else
                f"refused until you trust it ('segmentai models trust {m.id}')"))
        if m.architecture_row.pipeline == NNUNET:  # nnU-Net's own preprocessing (x-nnunet), not the generic fields
            settings = m.nnunet_settings
            schemes = ", ".join(n["scheme"] for n in (settings.normalization if settings else []))
            lines += [
                f"  spacing:       {' x '.join(f'{s:g}' for s in m.target_spacing)} mm, stored axis order (nnU-Net)",
                f"  normalization: nnU-Net {schemes}",
            ]
        else:
            lines += [
                f"  spacing:       {' x '.join(f'{s:g}' for s in m.target_spacing)} mm, orientation {m.orientation}",
                f"  normalization: {_normalization_text(m.normalization)}",
            ]
        lines += [
            f"  patch size:    {' x '.join(str(s) for s in m.patch_size)} voxels, overlap {m.overlap:g}",
            f"  licence:       weights {m.license['weights']}"
            + (f", code {m.license['code']}" if m.license.get("code") else ""),
        ]
        if isinstance(m.training_data, str):
            lines.append(f"  training data: {m.training_data}")
        else:
            lines.append("  training data: " + "; ".join(
                f"{d['name']} ({d['cases']} cases, {d['license']})" for d in m.training_data))
        if m.accuracy:
            lines.append("  accuracy:")
            for entry in m.accuracy:
                label = f" [{entry['label']}]" if entry.get("label") else ""
                notes = f" ({entry['notes']})" if entry.get("notes") else ""
                lines.append(f"    {entry['metric']}{label} on {entry['dataset']}: {entry['value']:g}{notes}")
        else:
            lines.append("  accuracy:      not reported")
        if m.parent:
            lines.append(f"  derived from:  {m.parent['id']}@{m.parent['version']}")
        if m.created:
            lines.append(f"  created:       {m.created}")
        if m.notes:
            lines.append(f"  notes:         {m.notes}")
        return "\n".join(lines)


def _check_weights_size(model_id: str, path: Path, size: int) -> None:
    """A weights file (a sparse 50 GB one, say) larger than the memory available is refused unread."""
    from ..inference.memory import GIB, available_ram_bytes

    limit = available_ram_bytes() * 0.75
    if size > limit:
        raise ModelError(f"model '{model_id}': weights file {path.name} is {size / GIB:.1f} GiB, more than the "
                         f"{limit / GIB:.1f} GiB of memory available")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0][:200] if text else type(error).__name__)


def _state_dict_problem(network: Any, state: Mapping[str, Any], error: BaseException) -> str:
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        return f"{len(missing)} missing keys, e.g. '{missing[0]}'"
    if unexpected:
        return f"{len(unexpected)} unexpected keys, e.g. '{unexpected[0]}'"
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            return f"'{key}' has shape {list(value.shape)}, the network expects {list(expected[key].shape)}"
    return _first_line(error)


def _normalization_text(norm: Dict[str, Any]) -> str:
    kind = norm["type"]
    if kind == "ct_window":
        return f"CT window {norm['window'][0]:g}..{norm['window'][1]:g} scaled to 0..1"
    if kind == "percentile":
        return f"clip to percentiles {norm['lower']:g}..{norm['upper']:g}, scaled to 0..1"
    if kind == "zscore":
        rescale = norm.get("rescale")
        return "z-score" + (" (non-zero voxels)" if norm.get("nonzero") else "") + \
            (f", then scaled to {rescale[0]:g}..{rescale[1]:g}" if rescale else "")
    return "none"


def write_model_package(
    folder: Union[str, Path],
    manifest_dict: Dict[str, Any],
    state_dict: Mapping[str, "torch.Tensor"],
) -> ModelPackage:
    """Publish a trained network as a new package folder (used by the training package).

    The weights are saved as safetensors, their SHA-256 goes into the manifest (``weights`` is
    filled in; ``file`` defaults to ``model.safetensors``), the manifest is validated and the
    weights checked against its architecture before anything is written. The folder appears
    whole or not at all; an existing non-empty folder is refused.
    """
    from safetensors.torch import save as save_safetensors

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise OutputError(f"{folder} exists already; choose a new folder for the model package")
    tensors = {str(k): v.detach().to("cpu").clone().contiguous() for k, v in state_dict.items()}
    data = save_safetensors(tensors)
    manifest_data = copy.deepcopy(manifest_dict)
    weights = dict(manifest_data.get("weights") or {})
    weights.update(
        file=weights.get("file", DEFAULT_WEIGHTS_NAME),
        format="safetensors",
        sha256=hashlib.sha256(data).hexdigest(),
    )
    manifest_data["weights"] = weights
    manifest = ModelManifest.from_dict(manifest_data)
    if manifest.architecture_row.carries_code:
        raise ModelError("write_model_package writes state dicts; TorchScript packages are not written here")
    _check_fits(manifest, tensors)

    with staged_folder(folder, "model package") as staging:
        (staging / manifest.weights_file).write_bytes(data)
        write_json_atomic(staging / MANIFEST_NAME, manifest.to_dict())
    return ModelPackage.open(folder)


def _network_with(manifest: ModelManifest, tensors: Mapping[str, Any], problem: str) -> "torch.nn.Module":
    """The manifest's network with ``tensors`` loaded strictly; ModelError saying what does not fit."""
    with weights_follow():  # strict loading below replaces every parameter: no random init needed
        network = build_network(manifest)
    try:
        if _on_meta(network):  # assigned, each tensor in the dtype the network declares
            declared = network.state_dict()
            tensors = {key: value.to(declared[key].dtype) if _differs_in_dtype(value, declared.get(key)) else value
                       for key, value in tensors.items()}
            network.load_state_dict(tensors, strict=True, assign=True)
        else:
            network.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise ModelError(
            f"model '{manifest.id}': {problem} architecture {manifest.architecture_name} "
            f"({_state_dict_problem(network, tensors, error)})"
        ) from error
    return network


def _on_meta(network) -> bool:
    return any(tensor.is_meta for tensor in network.parameters())


def _differs_in_dtype(value: Any, declared: Any) -> bool:
    dtype = getattr(declared, "dtype", None)
    return dtype is not None and getattr(value, "dtype", dtype) != dtype


def _check_fits(manifest: ModelManifest, tensors: Mapping[str, Any]) -> None:
    _network_with(manifest, tensors, "the state dict does not fit")

