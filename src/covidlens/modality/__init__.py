"""Telling chest CT slices from chest X-rays and from images that are neither, before any verdict."""

from covidlens.modality.check import KINDS, ModalityCheck, check_modality, check_scan, mismatch_message

__all__ = ["KINDS", "ModalityCheck", "check_modality", "check_scan", "mismatch_message"]
