"""Telling chest CT slices from chest X-rays and from images that are neither, before any verdict."""

from covidlens.modality.check import KINDS, ModalityCheck, check_modality, check_scan, mismatch_message
from covidlens.modality.tags import HEADER_MODALITIES, header_tags, modality_from_header

__all__ = ["HEADER_MODALITIES", "KINDS", "ModalityCheck", "check_modality", "check_scan", "header_tags",
           "mismatch_message", "modality_from_header"]
