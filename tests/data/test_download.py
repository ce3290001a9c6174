import hashlib

import pytest

from covidlens.data.download import fetch
from covidlens.errors import CovidlensError


def test_fetch_verifies_checksum_and_keeps_good_file(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"covidlens" * 1000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    target = tmp_path / "out" / "file.bin"
    assert fetch(source.as_uri(), target, digest, progress=False) == digest
    assert target.read_bytes() == source.read_bytes()


def test_fetch_discards_a_file_with_the_wrong_checksum(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"tampered")
    target = tmp_path / "file.bin"
    target.write_bytes(b"previous good copy")
    with pytest.raises(CovidlensError, match="checksum mismatch"):
        fetch(source.as_uri(), target, "0" * 64, progress=False)
    assert target.read_bytes() == b"previous good copy"
    assert not (tmp_path / "file.bin.part").exists()


def test_fetch_reports_an_unreachable_url(tmp_path):
    with pytest.raises(CovidlensError, match="could not download"):
        fetch((tmp_path / "missing.zip").as_uri(), tmp_path / "x.zip", progress=False)
