"""What a DICOM header's Modality value says about the image: one table, read by the modality check,
the web service and quantify alike, so a tag never means a chest X-ray to one and something else to
another.
"""

from __future__ import annotations

#: DICOM Modality values (PS3.3 C.7.3.1.1.1) of the images covidlens reads: CT, and the radiographs a
#: chest X-ray arrives as (computed, digital, digital radiography, radio fluoroscopy, and
#: conventional film/screen). Every other value is some other kind of image ('other'), X-ray based or
#: not: angiography (XA) and mammography (MG) are not chest radiographs.
HEADER_MODALITIES: dict[str, str] = {
    "CT": "ct",
    "CR": "cxr",
    "DX": "cxr",
    "DR": "cxr",
    "RF": "cxr",
    "RG": "cxr",
}


def modality_from_header(tag: str | None) -> str | None:
    """'ct', 'cxr' or 'other' for a DICOM Modality value (any case, spaces ignored); None when the
    header states none."""
    tag = (tag or "").strip().upper()
    if not tag:
        return None
    return HEADER_MODALITIES.get(tag, "other")


def header_tags(kind: str) -> tuple[str, ...]:
    """The Modality values read as ``kind`` ('ct' or 'cxr'), for messages that name them."""
    return tuple(tag for tag, value in HEADER_MODALITIES.items() if value == kind)
