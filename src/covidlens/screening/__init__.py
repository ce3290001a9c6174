"""Screen studies: one answer per patient study, built on the evidence that holds on real scans.

``covidlens.screen(inputs, out_dir, lesion=..., ct=..., cxr_lungs=..., cxr=...)`` (and ``covidlens screen``,
``covidlens predict`` on a volume, ``/v1/screen``) turns each study into a verdict with its evidence and
writes the files hospital systems read. :mod:`~covidlens.screening.verdict` holds the rule and why.
"""

from covidlens.screening.archive import ScreenRun, screen, write_table
from covidlens.screening.road import ScreenModels, StudyEvidence, Verdict, screen_scan, study_modality
from covidlens.screening.studies import Study, find_studies

__all__ = ["ScreenModels", "ScreenRun", "Study", "StudyEvidence", "Verdict", "find_studies", "screen", "screen_scan",
           "study_modality", "write_table"]
