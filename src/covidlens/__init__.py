"""covidlens: screen chest CT and X-ray images for COVID-19, explain the evidence, measure lesions."""

__version__ = "0.1.0"
