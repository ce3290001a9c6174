import pytest

from tests.segmentation.runs import tiny_segmentation_run


@pytest.fixture(scope="session")
def seg_run(data_root, tmp_path_factory):
    return tiny_segmentation_run(data_root, tmp_path_factory)
