"""Checks that an image file holds as many voxel bytes as its header promises.

SimpleITK 2.5 reads a truncated ``.nii``/``.nii.gz`` without complaint and fills the missing voxels
with zeros, which would silently segment a half-empty volume. These checks parse just enough of
each header (NIfTI-1/2, NRRD, MetaImage) to know the expected data length and compare it with
what the file (or its detached data file) really holds. They raise
:class:`~segmentai_core.errors.InputError` naming the file; formats or encodings they do not
understand are left to the reader.
"""

from __future__ import annotations

import bz2
import gzip
import math
import struct
import zlib
from pathlib import Path

from ..errors import InputError

__all__ = [
    "NrrdHeader",
    "check_complete",
    "check_metaimage_complete",
    "check_nifti_complete",
    "check_nrrd_complete",
    "read_nrrd_header",
]

_CHUNK = 1 << 20
_MAX_HEADER_BYTES = 1 << 20  # a NRRD/MetaImage header longer than this is not a header

# NIfTI datatype code -> bits per voxel, used when bitpix is missing or zero.
_NIFTI_BITS = {
    2: 8,
    4: 16,
    8: 32,
    16: 32,
    32: 64,
    64: 64,
    128: 24,
    256: 8,
    512: 16,
    768: 32,
    1024: 64,
    1280: 64,
    1536: 128,
    1792: 128,
    2048: 256,
    2304: 32,
}

_NRRD_TYPE_BYTES = {}
for _names, _size in (
    (("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
    (
        (
            "short",
            "short int",
            "signed short",
            "signed short int",
            "int16",
            "int16_t",
            "ushort",
            "unsigned short",
            "unsigned short int",
            "uint16",
            "uint16_t",
        ),
        2,
    ),
    (("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"), 4),
    (
        (
            "longlong",
            "long long",
            "long long int",
            "signed long long",
            "signed long long int",
            "int64",
            "int64_t",
            "ulonglong",
            "unsigned long long",
            "unsigned long long int",
            "uint64",
            "uint64_t",
            "double",
        ),
        8,
    ),
):
    for _name in _names:
        _NRRD_TYPE_BYTES[_name] = _size

_MET_TYPE_BYTES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_LONG": 4,
    "MET_ULONG": 4,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}


def _truncated(path: Path, expected: int, found: int, what: str = "voxel data") -> InputError:
    return InputError(
        f"{path} is truncated or corrupt: its header promises {expected} bytes of {what} but the file holds {found}"
    )


def _stream_length(path: Path, opener, offset: int = 0, limit: int | None = None) -> int:
    """Number of decompressed bytes, stopping once ``limit`` is reached (errors mean corrupt)."""
    total = 0
    try:
        with open(path, "rb") as raw:
            raw.seek(offset)
            with opener(raw) as stream:
                while limit is None or total < limit:
                    chunk = stream.read(_CHUNK)
                    if not chunk:
                        break
                    total += len(chunk)
    except (EOFError, zlib.error, OSError, ValueError) as error:
        # gzip raises EOFError on a cut stream, BadGzipFile (OSError) on a damaged one.
        raise InputError(f"{path} is truncated or corrupt: its compressed data cannot be read ({error})") from None
    return total


def _zlib_length(path: Path, offset: int, limit: int) -> int:
    """Decompressed length of a raw zlib stream (MetaImage ``CompressedData = True``)."""
    decompressor = zlib.decompressobj()
    total = 0
    try:
        with open(path, "rb") as raw:
            raw.seek(offset)
            while total < limit:
                chunk = raw.read(_CHUNK)
                if not chunk:
                    break
                total += len(decompressor.decompress(chunk))
            total += len(decompressor.flush())
    except zlib.error as error:
        raise InputError(f"{path} is truncated or corrupt: its compressed data cannot be read ({error})") from None
    return total


# -- NIfTI ------------------------------------------------------------------------------------


def _nifti_expected_bytes(path: Path, header: bytes) -> int:
    """vox_offset + voxel bytes from a NIfTI-1 or NIfTI-2 header."""
    for endian in ("<", ">"):
        if len(header) >= 4 and struct.unpack(endian + "i", header[:4])[0] in (348, 540):
            break
    else:
        raise InputError(f"{path} is not a NIfTI file (its header size field is not 348 or 540)")
    version = 1 if struct.unpack(endian + "i", header[:4])[0] == 348 else 2
    if version == 1:
        if len(header) < 348:
            raise _truncated(path, 348, len(header), "header")
        dims = struct.unpack(endian + "8h", header[40:56])
        datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
        vox_offset = struct.unpack(endian + "f", header[108:112])[0]
    else:
        if len(header) < 540:
            raise _truncated(path, 540, len(header), "header")
        datatype, bitpix = struct.unpack(endian + "2h", header[12:16])
        dims = struct.unpack(endian + "8q", header[16:80])
        vox_offset = struct.unpack(endian + "q", header[168:176])[0]
    ndim = dims[0]
    if not 1 <= ndim <= 7 or any(d < 0 for d in dims[1 : ndim + 1]):
        raise InputError(f"{path} is corrupt: its NIfTI header gives {ndim} dimensions of sizes {dims[1:]}")
    bits = bitpix if bitpix > 0 else _NIFTI_BITS.get(datatype, 0)
    if bits <= 0:
        raise InputError(f"{path} is corrupt: its NIfTI header has an unknown data type ({datatype})")
    voxels = math.prod(int(d) for d in dims[1 : ndim + 1])
    header_size = 348 if version == 1 else 540
    return max(int(vox_offset), header_size) + voxels * bits // 8


def check_nifti_complete(path: Path) -> None:
    """Raise InputError if a ``.nii`` or ``.nii.gz`` file holds fewer bytes than its header needs."""
    compressed = path.name.lower().endswith(".gz")
    try:
        if compressed:
            with gzip.open(path, "rb") as stream:
                header = stream.read(540)
        else:
            with open(path, "rb") as stream:
                header = stream.read(540)
    except (EOFError, zlib.error, OSError) as error:
        raise InputError(f"{path} is not a readable NIfTI file ({error})") from None
    expected = _nifti_expected_bytes(path, header)
    found = (
        _stream_length(path, lambda raw: gzip.GzipFile(fileobj=raw), limit=expected)
        if compressed
        else path.stat().st_size
    )
    if found < expected:
        raise _truncated(path, expected, found, "header and voxel data")


# -- NRRD -------------------------------------------------------------------------------------


class NrrdHeader:
    """Fields (``key: value``) and key/value pairs (``key:=value``) of a NRRD header."""

    def __init__(self, fields: dict[str, str], keyvalues: dict[str, str], data_offset: int) -> None:
        self.fields = fields
        self.keyvalues = keyvalues
        self.data_offset = data_offset  # byte offset just past the header's blank line


def _unescape(text: str) -> str:
    # NRRD escapes newlines and backslashes in key/value pairs.
    return text.replace("\\\\", "\0").replace("\\n", "\n").replace("\0", "\\")


def read_nrrd_header(path: Path) -> NrrdHeader:
    """Parse the text header of a ``.nrrd``/``.nhdr`` file (raises InputError if it is not NRRD)."""
    with open(path, "rb") as stream:
        head = stream.read(_MAX_HEADER_BYTES)
    if not head.startswith(b"NRRD000"):
        raise InputError(f"{path} is not a NRRD file (it does not start with 'NRRD000')")
    fields: dict[str, str] = {}
    keyvalues: dict[str, str] = {}
    position = 0
    data_offset = len(head)
    lines = head.split(b"\n")
    for number, raw_line in enumerate(lines):
        position += len(raw_line) + 1
        line = raw_line.rstrip(b"\r").decode("latin-1")
        if number == 0 or line.startswith("#"):
            continue
        if line == "":
            data_offset = position
            break
        if ":=" in line:
            key, value = line.split(":=", 1)
            keyvalues[_unescape(key)] = _unescape(value)
        elif ": " in line:
            key, value = line.split(": ", 1)
            fields[key.strip().lower()] = value.strip()
    else:
        if len(head) >= _MAX_HEADER_BYTES:
            raise InputError(f"{path} is not a valid NRRD file (its header does not end)")
    return NrrdHeader(fields, keyvalues, data_offset)


def _nrrd_expected_bytes(path: Path, fields: dict[str, str]) -> int | None:
    try:
        sizes = [int(s) for s in fields["sizes"].split()]
    except (KeyError, ValueError):
        raise InputError(f"{path} is not a valid NRRD file (missing or bad 'sizes' field)") from None
    type_bytes = _NRRD_TYPE_BYTES.get(fields.get("type", "").lower())
    if type_bytes is None:
        return None  # block or unknown type: leave it to the reader
    return math.prod(sizes) * type_bytes


def check_nrrd_complete(path: Path) -> None:
    """Raise InputError if a NRRD file (attached or detached data) is shorter than its header says."""
    header = read_nrrd_header(path)
    fields = header.fields
    expected = _nrrd_expected_bytes(path, fields)
    encoding = fields.get("encoding", "").lower()
    if expected is None or encoding not in ("raw", "gzip", "gz", "bzip2", "bz2"):
        return  # text/hex encodings fail loudly in the reader
    if int(fields.get("line skip", fields.get("lineskip", "0")) or 0) != 0:
        return
    byte_skip = int(fields.get("byte skip", fields.get("byteskip", "0")) or 0)
    data_file_name = fields.get("data file", fields.get("datafile"))
    if data_file_name:
        if data_file_name.startswith("LIST") or len(data_file_name.split()) > 1:
            return  # multi-file data: not checked here
        data_path = (path.parent / data_file_name) if not Path(data_file_name).is_absolute() else Path(data_file_name)
        if not data_path.is_file():
            raise InputError(f"{path} refers to a data file {data_file_name} that does not exist")
        offset = 0
    else:
        data_path, offset = path, header.data_offset
    if encoding == "raw":
        if byte_skip == -1:
            found = data_path.stat().st_size  # data sits at the end of the file
        else:
            found = data_path.stat().st_size - offset - byte_skip
    else:
        opener = (lambda raw: gzip.GzipFile(fileobj=raw)) if encoding in ("gzip", "gz") else bz2.BZ2File
        found = _stream_length(data_path, opener, offset=offset, limit=expected) - max(byte_skip, 0)
    if found < expected:
        raise _truncated(path, expected, max(found, 0))


# -- MetaImage --------------------------------------------------------------------------------


def _read_metaimage_header(path: Path) -> tuple[dict[str, str], int]:
    with open(path, "rb") as stream:
        head = stream.read(_MAX_HEADER_BYTES)
    fields: dict[str, str] = {}
    position = 0
    for raw_line in head.split(b"\n"):
        position += len(raw_line) + 1
        line = raw_line.rstrip(b"\r").decode("latin-1")
        if "=" not in line:
            if line.strip():
                raise InputError(f"{path} is not a valid MetaImage file (unexpected header line)")
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        fields[key] = value
        if key == "ElementDataFile":
            return fields, position
    raise InputError(f"{path} is not a valid MetaImage file (no ElementDataFile line)")


def check_metaimage_complete(path: Path) -> None:
    """Raise InputError if a ``.mha``/``.mhd`` image holds fewer voxel bytes than its header says."""
    fields, offset = _read_metaimage_header(path)
    try:
        sizes = [int(s) for s in fields["DimSize"].split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
    except (KeyError, ValueError):
        raise InputError(f"{path} is not a valid MetaImage file (missing or bad DimSize)") from None
    type_bytes = _MET_TYPE_BYTES.get(fields.get("ElementType", ""))
    data_name = fields["ElementDataFile"]
    if type_bytes is None or data_name.startswith("LIST") or "%" in data_name or " " in data_name:
        return  # unknown types and multi-file data are left to the reader
    expected = math.prod(sizes) * channels * type_bytes
    if data_name != "LOCAL":
        data_path = path.parent / data_name
        if not data_path.is_file():
            raise InputError(f"{path} refers to a data file {data_name} that does not exist")
        offset = 0
    else:
        data_path = path
    header_size = int(fields.get("HeaderSize", "0") or 0)
    if header_size > 0:
        offset += header_size
    if fields.get("CompressedData", "False").lower() == "true":
        found = _zlib_length(data_path, offset, expected)
    elif header_size == -1:
        return  # data at the end of the file: nothing to compare
    else:
        found = data_path.stat().st_size - offset
    if found < expected:
        raise _truncated(path, expected, max(found, 0))


# -- dispatch ---------------------------------------------------------------------------------


def check_complete(path: Path) -> None:
    """Run the byte-length check that matches the file's extension (other formats pass)."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        check_nifti_complete(path)
    elif name.endswith((".nrrd", ".nhdr")):
        check_nrrd_complete(path)
    elif name.endswith((".mha", ".mhd")):
        check_metaimage_complete(path)
