"""Test helpers of the model catalog (not a test): tiny models in their providers' release layouts,
archives of them, a catalog pointing at a local HTTP server, and that server (127.0.0.1, with Range).

- :func:`tiny_nnunet_release`: an nnU-Net v2 result folder as TotalSegmentator's release zips hold
  it (``Dataset<id>_<name>/<trainer>__nnUNetPlans__3d_fullres/{dataset.json, plans.json,
  fold_0/checkpoint_final.pth}``), with an untrained 3-stage PlainConvUNet: built in well under
  a second (``nnunet_tiny.build_tiny_model`` trains one with nnunetv2 when parity matters).
- :func:`tiny_monai_bundle`: a MONAI bundle (``configs/metadata.json``, ``configs/inference.json``,
  ``models/model.pt``) around a small MONAI UNet, in the layout of the Model Zoo's zips.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
import time
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

TS_FOLDER = "Dataset501_SegmentAITiny_part1_organs_8subj"
TS_TRAINER_FOLDER = "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"


def tiny_nnunet_release(root: Path, labels: Optional[Dict[str, int]] = None, seed: int = 0) -> Path:
    """``root/<TS_FOLDER>``: the folder a TotalSegmentator-style release zip unpacks to."""
    import torch
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    labels = labels or {"background": 0, "spleen": 1, "kidney_right": 2}
    arch_kwargs = {"n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": "torch.nn.modules.conv.Conv3d",
                   "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                   "n_conv_per_stage": [1, 1, 1], "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
                   "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                   "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
                   "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
    plans = {
        "dataset_name": TS_FOLDER.rsplit("_", 1)[0], "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "original_median_spacing_after_transp": [3.0, 3.0, 3.0],
        "configurations": {"3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": [16, 16, 16], "spacing": [3.0, 3.0, 3.0],
            "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                   "force_separate_z": None},
            "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                             "arch_kwargs": arch_kwargs,
                             "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
            "batch_dice": True}},
        "foreground_intensity_properties_per_channel": {"0": {"mean": 40.0, "std": 80.0, "percentile_00_5": -200.0,
                                                              "percentile_99_5": 400.0}},
    }
    dataset = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 8, "file_ending": ".nii.gz",
               "name": "SegmentAITiny", "license": "Apache-2.0"}
    folder = root / TS_FOLDER / TS_TRAINER_FOLDER
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    torch.manual_seed(seed)
    network = PlainConvUNet(input_channels=1, num_classes=len(labels), deep_supervision=False,
                            n_stages=3, features_per_stage=[4, 8, 16], conv_op=torch.nn.Conv3d,
                            kernel_sizes=[[3, 3, 3]] * 3, strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                            n_conv_per_stage=[1, 1, 1], n_conv_per_stage_decoder=[1, 1], conv_bias=True,
                            norm_op=torch.nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-05, "affine": True},
                            nonlin=torch.nn.LeakyReLU, nonlin_kwargs={"inplace": True})
    checkpoint = {"network_weights": network.state_dict(), "trainer_name": "nnUNetTrainerNoMirroring",
                  "init_args": {"configuration": "3d_fullres", "fold": 0}, "inference_allowed_mirroring_axes": None}
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    return root / TS_FOLDER


def tiny_monai_bundle(root: Path, name: str = "tiny_ct_segmentation", seed: int = 0) -> Path:
    """``root/<name>``: a MONAI bundle of a small 3-class UNet (CT, 2 mm, intensity window)."""
    import torch
    from monai.networks.nets import UNet

    network_def = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3,
                   "channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1, "norm": "batch"}
    keys = ["image"]
    inference = {
        "bundle_root": ".", "network_def": network_def,
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": keys}, {"_target_": "EnsureChannelFirstd", "keys": keys},
            {"_target_": "Orientationd", "keys": keys, "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": keys, "pixdim": [2.0, 2.0, 2.0], "mode": "bilinear"},
            {"_target_": "ScaleIntensityRanged", "keys": keys, "a_min": -100, "a_max": 300, "b_min": 0.0,
             "b_max": 1.0, "clip": True},
            {"_target_": "EnsureTyped", "keys": keys}]},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 2, "overlap": 0.25},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}]},
    }
    metadata = {
        "version": "0.1.0", "name": "Tiny CT bundle", "task": "tests only: an untrained 3-class network",
        "license": "Apache-2.0",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "hounsfield", "modality": "CT", "num_channels": 1}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 3,
                                 "channel_def": {"0": "background", "1": "liver", "2": "spleen"}}},
        },
    }
    folder = root / name
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2))
    (folder / "configs" / "inference.json").write_text(json.dumps(inference, indent=2))
    torch.manual_seed(seed)
    args = {k: v for k, v in network_def.items() if k != "_target_"}
    torch.save(UNet(**args).state_dict(), folder / "models" / "model.pt")
    return folder


def zip_folder(folder: Path, archive: Path) -> Path:
    """Zip ``folder`` with its own name as the top folder (as the providers' zips are made)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted(folder.rglob("*")):
            out.write(path, path.relative_to(folder.parent).as_posix())
    return archive


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def catalog_entry(model_id: str, importer: str, parts: List[dict], architecture: Optional[str] = None,
                  classes: int = 2, modality: str = "CT") -> dict:
    """One catalog entry in the shipped catalog's format."""
    return {
        "id": model_id, "title": f"{model_id} (test)", "provider": "tests", "version": "1.0.0",
        "task": "tests only", "modality": modality, "importer": importer,
        "architecture": architecture or ("nnUNet" if importer == "nnunet" else "UNet"),
        "classes": {"count": classes}, "parts": parts,
        "license": {"weights": "Apache-2.0", "commercial_use": True}, "citation": "none (tests)",
        "homepage": "http://127.0.0.1/", "facts_from": "the test that wrote it",
    }


def part(name: str, url: str, data: Optional[bytes], sha256: Optional[str] = "auto", **extra) -> dict:
    """A catalog part for ``data`` served at ``url`` (size and SHA-256 from the bytes unless given)."""
    entry = {"name": name, "url": url, "size_bytes": len(data) if data is not None else None,
             "sha256": (sha256_of(data) if data is not None else None) if sha256 == "auto" else sha256}
    entry.update(extra)
    return entry


def write_catalog(path: Path, entries: List[dict]) -> Path:
    path.write_text(json.dumps({"schema_version": 1, "models": entries}, indent=2))
    return path


class ArchiveServer:
    """An HTTP server on 127.0.0.1 (a free port) serving ``files`` (URL path → bytes), with Range.

    ``drop_after``: URL path → byte count; the first GET of that path sends only that many bytes of
    the body (with the full Content-Length) and closes the connection, as a dropped link would.
    ``requests`` records (path, Range header) of every GET; ``ignore_range`` answers ranges with 200.
    """

    def __init__(self, files: Optional[Dict[str, bytes]] = None) -> None:
        self.files: Dict[str, bytes] = dict(files or {})
        self.drop_after: Dict[str, int] = {}
        self.ignore_range = False  # answer a Range request with the whole file (200), as some servers do
        self.chunk_delay_s = 0.0  # > 0: send the body in 64 KiB pieces with this pause between them (a slow link)
        self.requests: List[tuple] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                server.requests.append((path, self.headers.get("Range")))
                data = server.files.get(path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                match = None if server.ignore_range else re.match(r"^bytes=(\d+)-$", self.headers.get("Range") or "")
                if match:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                drop = server.drop_after.pop(path, None)
                if drop is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                body = body if drop is None else body[:drop]
                step = 1 << 16 if server.chunk_delay_s > 0 else max(len(body), 1)
                try:
                    for start in range(0, len(body), step):
                        self.wfile.write(body[start:start + step])
                        self.wfile.flush()
                        if server.chunk_delay_s > 0:
                            time.sleep(server.chunk_delay_s)
                except (BrokenPipeError, ConnectionResetError):  # the client went away (Cancel)
                    self.close_connection = True
                    return
                if drop is not None:
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> "ArchiveServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
