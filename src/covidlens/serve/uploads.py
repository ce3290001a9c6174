"""Receiving scans: the multipart body read into memory under limits, then handed to the one reader.

The body is parsed as it arrives (python-multipart's streaming parser), so a request is refused as
soon as it passes the size or part limit, before the rest is read. Files stay in memory; only to
reach :func:`covidlens.data.io.read_scan`, which reads paths, are they written into a private
temporary folder (mode 0700) under names the server makes up from what the bytes are, never from the
request, and that folder is removed when the request ends. Error sentences of the reader name those
private paths; they are rewritten to "the upload" before they leave.
"""

from __future__ import annotations

import json
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from covidlens.data.io import Scan, read_scan
from covidlens.errors import CovidlensError
from covidlens.serve.errors import ApiError, UploadAborted

#: The multipart field that carries the scan, repeated for the slices of one DICOM series.
FIELD = "file"
#: Smallest side, in pixels, of an image worth screening: below it a slice or radiograph has no anatomy.
MIN_SIDE = 32
_NIFTI_MAGIC = (b"n+1\x00", b"ni1\x00", b"n+2\x00")
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class UploadLimits:
    #: Whole request body, multipart framing included.
    max_bytes: int = 256 << 20
    #: File parts in one request (the slices of a thin-slice chest CT series are about 600).
    max_files: int = 1000
    #: Bytes of one part's headers: file names and types, never more than a few hundred bytes.
    max_header_bytes: int = 8 << 10


@dataclass
class UploadedFile:
    content_type: str
    data: bytearray = field(default_factory=bytearray)

    @property
    def kind(self) -> str:
        """What the bytes are, from their first bytes: dicom, nifti, nifti-gz or image (PIL decides which)."""
        head = bytes(self.data[:352])
        if head[128:132] == b"DICM":
            return "dicom"
        if head[344:348] in _NIFTI_MAGIC or head[4:8] in _NIFTI_MAGIC:
            return "nifti"
        if head[:2] == _GZIP_MAGIC:
            return "nifti-gz"
        return "image"


@dataclass
class Upload:
    files: list[UploadedFile]

    @property
    def size(self) -> int:
        return sum(len(f.data) for f in self.files)

    def describe(self) -> str:
        """Size and types only: what may be logged about an upload."""
        kinds = sorted({f.kind for f in self.files})
        return f"{len(self.files)} file(s), {self.size} bytes, {'+'.join(kinds)}"


class _MultipartCollector:
    """Callbacks of the streaming parser: keeps the file parts, refuses anything else."""

    def __init__(self, limits: UploadLimits):
        self.limits = limits
        self.files: list[UploadedFile] = []
        self._headers: dict[str, str] = {}
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._header_bytes = 0
        self._current: UploadedFile | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header_chunk(self._header_field, data, start, end),
            "on_header_value": lambda data, start, end: self._header_chunk(self._header_value, data, start, end),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
        }

    def _part_begin(self) -> None:
        self._headers, self._header_bytes, self._current = {}, 0, None
        if len(self.files) >= self.limits.max_files:
            raise ApiError(
                413, "too_many_files",
                f"The request has more than {self.limits.max_files} parts; send at most {self.limits.max_files} files "
                "(the slices of one series) in the field 'file'.",
            )

    def _header_chunk(self, target: bytearray, data: bytes, start: int, end: int) -> None:
        self._header_bytes += end - start
        if self._header_bytes > self.limits.max_header_bytes:
            raise ApiError(400, "bad_multipart", "A part of the request has oversized headers; send plain file parts.")
        target.extend(data[start:end])

    def _header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = self._header_value.decode("latin-1")
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        name = options.get(b"name", b"").decode("latin-1")
        if name != FIELD:
            shown = name if len(name) <= 40 and name.isprintable() else name[:40].encode("unicode_escape").decode()
            raise ApiError(
                400, "bad_field",
                f"The request has a field named {shown!r}; send the scan in the multipart field 'file' "
                "(repeated for the slices of one series) and options as query parameters.",
            )
        self._current = UploadedFile(self._headers.get("content-type", ""))
        self.files.append(self._current)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._current.data.extend(data[start:end])


async def receive_upload(request: Request, limits: UploadLimits) -> Upload:
    """Read the multipart body of ``request`` into memory, refusing it as soon as it breaks a limit."""
    content_type = request.headers.get("content-type", "")
    kind, options = parse_options_header(content_type)
    if kind == b"application/json":
        body = await _bounded_body(request, limits)
        try:
            json.loads(body)
        except ValueError as exc:
            raise ApiError(
                400, "malformed_json",
                f"The request body is not valid JSON ({exc}); this endpoint takes no JSON: send the scan as "
                "multipart/form-data in the field 'file'.",
            ) from None
        raise ApiError(415, "unsupported_media_type", _MULTIPART_ONLY)
    if kind != b"multipart/form-data":
        raise ApiError(415, "unsupported_media_type", _MULTIPART_ONLY)
    boundary = options.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_multipart", "The multipart body has no boundary in its Content-Type header.")
    _check_declared_length(request, limits)
    collector = _MultipartCollector(limits)
    parser = MultipartParser(boundary, collector.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limits.max_bytes:
                raise _too_large(limits)
            parser.write(chunk)
        parser.finalize()
    except ClientDisconnect:
        raise UploadAborted() from None
    except MultipartParseError:
        raise ApiError(400, "bad_multipart", "The multipart body is malformed or cut short; send it again.") from None
    if not collector.files:
        raise ApiError(400, "no_file", "The request holds no file; send the scan in the multipart field 'file'.")
    for index, part in enumerate(collector.files):
        if not part.data:
            which = "The uploaded file" if len(collector.files) == 1 else f"File {index + 1} of the upload"
            raise ApiError(422, "empty_file", f"{which} is empty (0 bytes); choose the scan file again.")
    return Upload(collector.files)


_MULTIPART_ONLY = (
    "This endpoint takes the scan as multipart/form-data in the field 'file', "
    "e.g. curl -F file=@scan.png http://127.0.0.1:8000/v1/predict."
)


def _too_large(limits: UploadLimits) -> ApiError:
    return ApiError(
        413, "upload_too_large",
        f"The upload is larger than this server accepts ({limits.max_bytes} bytes); send one scan at a time or "
        "ask the operator to raise --max-upload-mb.",
    )


def _check_declared_length(request: Request, limits: UploadLimits) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(limits)


async def _bounded_body(request: Request, limits: UploadLimits) -> bytes:
    _check_declared_length(request, limits)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limits.max_bytes:
                raise _too_large(limits)
    except ClientDisconnect:
        raise UploadAborted() from None
    return bytes(body)


@contextmanager
def opened_scan(upload: Upload) -> Iterator[tuple[Scan, Path]]:
    """The upload read as one :class:`~covidlens.data.io.Scan`, and the private path it was read from
    (valid inside the ``with`` block only); reading errors become 422 with the private path hidden."""
    with tempfile.TemporaryDirectory(prefix="covidlens-upload-") as folder:
        root = Path(folder)
        try:
            path = _write_private(upload, root)
            scan = read_scan(path)
        except CovidlensError as exc:
            raise ApiError(422, "unreadable_upload", public_message(str(exc), root)) from None
        _check_size(scan)
        try:
            yield scan, path
        except CovidlensError as exc:  # the library refusing the scan further on (a model, quantify)
            raise ApiError(422, "unreadable_upload", public_message(str(exc), root)) from None


def _write_private(upload: Upload, root: Path) -> Path:
    files = upload.files
    if len(files) == 1:
        suffix = {"dicom": ".dcm", "nifti": ".nii", "nifti-gz": ".nii.gz", "image": ".img"}[files[0].kind]
        path = root / f"scan{suffix}"
        path.write_bytes(files[0].data)
        return path
    others = [i + 1 for i, f in enumerate(files) if f.kind != "dicom"]
    if others:
        raise ApiError(
            422, "not_a_series",
            f"Several files were sent but file {others[0]} is not DICOM; several files must be the DICOM slices of "
            "one series (send a PNG, JPEG or NIfTI file on its own).",
        )
    series = root / "series"
    series.mkdir()
    for index, part in enumerate(files):
        (series / f"slice-{index:05d}.dcm").write_bytes(part.data)
    return series


def _check_size(scan: Scan) -> None:
    rows, cols = scan.pixels.shape[-2:]
    if min(rows, cols) < MIN_SIDE:
        raise ApiError(
            422, "image_too_small",
            f"The upload is {cols}x{rows} pixels; covidlens needs at least {MIN_SIDE} pixels on each side of a "
            "CT slice or chest X-ray.",
        )


def public_message(message: str, root: Path) -> str:
    """A reader's sentence with the private paths under ``root`` replaced by what the user sent."""
    base = re.escape(str(root))
    message = re.sub(base + r"/series/slice-(\d+)\.dcm", lambda m: f"file {int(m.group(1)) + 1} of the upload", message)
    message = re.sub(base + r"/series", "the uploaded series", message)
    message = re.sub(base + r"/scan[.a-z]*", "the upload", message)
    message = message.replace(str(root), "the upload folder")
    return message[:1].upper() + message[1:]


__all__ = ["FIELD", "MIN_SIDE", "Upload", "UploadLimits", "UploadedFile", "opened_scan", "receive_upload"]
