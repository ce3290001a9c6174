"""Pack a real trained model, serve it over HTTP on 127.0.0.1, pull it into a fresh store and predict
with it; and every refusal of ``models pull``, each leaving the store as it was."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from covidlens.cli import main
from tests.store.conftest import install_run, model_members, write_archive, write_manifest

IMAGE = "CT_COVID/2020.01.24.919183-p27-132.png"


@pytest.fixture(scope="module")
def packed(tiny_run, http_folder, tmp_path_factory):
    """The tiny run packed as ct-classifier.tar.gz in the served folder, and the model's own folder."""
    from covidlens.store import pack_folder, write_card

    folder = tmp_path_factory.mktemp("model") / "ct-classifier"
    shutil.copytree(tiny_run / "model", folder)
    write_card(folder, {"name": "ct-classifier", "summary": "a tiny test model"})
    served, _ = http_folder
    pack_folder(folder, served / "ct-classifier.tar.gz")
    return folder


def _store_left_clean(store: Path, name: str) -> None:
    assert not (store / name).exists()
    assert not [p for p in store.iterdir() if p.name.startswith(".")] if store.is_dir() else True


def _pull(manifest: Path | str, name: str = "ct-classifier") -> int:
    return main(["models", "pull", name, "--manifest", str(manifest)])


def test_pack_writes_archive_and_digest_and_is_reproducible(tiny_run, store, tmp_path, capsys):
    from covidlens.store.archive import sha256_of

    install_run(tiny_run, "ct-classifier")
    assert main(["models", "pack", "ct-classifier", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    archive = tmp_path / "a" / "ct-classifier.tar.gz"
    digest = sha256_of(archive)
    assert digest in out and '"sha256"' in out
    assert (tmp_path / "a" / "ct-classifier.tar.gz.sha256").read_text() == f"{digest}  ct-classifier.tar.gz\n"
    assert main(["models", "pack", "ct-classifier", "--out", str(tmp_path / "b")]) == 0
    assert sha256_of(tmp_path / "b" / "ct-classifier.tar.gz") == digest
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["card.json", "card.md", "model.json", "model.safetensors"]


def test_pull_verifies_installs_loads_and_predicts(packed, http_folder, store, covid_ct, tiny_run, capsys):
    from covidlens.checkpoint import load_checkpoint
    from covidlens.inference import predict

    served, url = http_folder
    manifest = write_manifest(served / "manifest.json", "ct-classifier", f"{url}/ct-classifier.tar.gz",
                              served / "ct-classifier.tar.gz")
    assert _pull(f"{url}/manifest.json") == 0
    assert "SHA-256 verified" in capsys.readouterr().out
    installed = store / "ct-classifier"
    assert sorted(p.name for p in installed.iterdir()) == ["card.json", "card.md", "model.json", "model.safetensors"]
    assert [p.name for p in store.iterdir()] == ["ct-classifier"]

    ckpt = load_checkpoint(installed)
    image = covid_ct / IMAGE
    pulled = predict(ckpt, [image], check_modality=False)[0]
    original = predict(load_checkpoint(tiny_run / "model"), [image], check_modality=False)[0]
    assert pulled.probability == pytest.approx(original.probability, abs=1e-6)

    assert _pull(manifest) == 2
    assert "already installed; pass --force" in capsys.readouterr().err
    assert main(["models", "pull", "ct-classifier", "--manifest", str(manifest), "--force"]) == 0

    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "efficientnet_lite0" in listing
    row = next(line for line in listing.splitlines() if line.startswith("ct-classifier"))
    assert " yes " in row and "efficientnet_lite0" in row and "card.md" in row
    assert next(line for line in listing.splitlines() if line.startswith("ct-lesions")).split()[1] == "no"
    assert main(["models", "card", "ct-classifier"]) == 0
    assert "# ct-classifier" in capsys.readouterr().out


def test_refuses_a_digest_mismatch(packed, http_folder, store, tmp_path, capsys):
    served, url = http_folder
    manifest = write_manifest(tmp_path / "m.json", "ct-classifier", f"{url}/ct-classifier.tar.gz",
                              served / "ct-classifier.tar.gz", sha256="0" * 64)
    assert _pull(manifest) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after pooch's progress bar
    assert last.startswith("covidlens: error: the file at") and "does not have its pinned SHA-256" in last
    _store_left_clean(store, "ct-classifier")


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
def test_refuses_members_outside_the_model_folder(kind, packed, http_folder, store, tmp_path, capsys):
    served, url = http_folder
    members = model_members(packed)
    if kind == "dotdot":
        members.append((tarfile.TarInfo("../escaped.txt"), b"outside"))
    elif kind == "absolute":
        members.append((tarfile.TarInfo(str(tmp_path / "escaped.txt")), b"outside"))
    else:
        link = tarfile.TarInfo("card.txt")
        link.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
        link.linkname = str(tmp_path / "escaped.txt") if kind == "symlink" else "../escaped.txt"
        members.append((link, None))
    archive = served / f"{kind}.tar.gz"
    write_archive(archive, members)
    assert _pull(write_manifest(tmp_path / "m.json", "ct-classifier", f"{url}/{archive.name}", archive)) == 2
    err = capsys.readouterr().err
    assert ("outside the model folder" in err or "absolute path" in err or "link" in err) and "nothing was installed" in err
    assert not (tmp_path / "escaped.txt").exists() and not (store.parent / "escaped.txt").exists()
    _store_left_clean(store, "ct-classifier")


def test_refuses_a_declared_size_over_the_bound(http_folder, store, tmp_path, capsys):
    _, url = http_folder
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"ct-classifier": {"url": f"{url}/huge.tar.gz", "sha256": "a" * 64,
                                                      "size": 3 << 30}}))
    assert _pull(manifest) == 2
    assert "over the 2 GiB bound" in capsys.readouterr().err
    _store_left_clean(store, "ct-classifier")


def test_refuses_members_that_unpack_over_the_bound(packed, http_folder, store, tmp_path, monkeypatch, capsys):
    """A small archive of zeros that inflates past the bound (lowered here to 256 kB, the real one is 2 GiB)."""
    from covidlens.store import archive as archive_module

    monkeypatch.setattr(archive_module, "MAX_ARCHIVE_BYTES", 256 << 10)
    served, url = http_folder
    archive = served / "bomb.tar.gz"
    write_archive(archive, [(tarfile.TarInfo("model.json"), b"{}"), (tarfile.TarInfo("zeros.bin"), bytes(1 << 20))])
    assert archive.stat().st_size < 256 << 10
    assert _pull(write_manifest(tmp_path / "m.json", "ct-classifier", f"{url}/bomb.tar.gz", archive)) == 2
    assert "unpacks to more than" in capsys.readouterr().err
    _store_left_clean(store, "ct-classifier")


def test_refuses_a_model_json_that_fails_the_strict_checks(packed, http_folder, store, tmp_path, capsys):
    served, url = http_folder
    members = [(info, data) for info, data in model_members(packed) if info.name != "model.json"]
    meta = json.loads((packed / "model.json").read_text())
    meta["input_size"] = 5
    members.append((tarfile.TarInfo("model.json"), json.dumps(meta).encode()))
    archive = served / "badmeta.tar.gz"
    write_archive(archive, members)
    assert _pull(write_manifest(tmp_path / "m.json", "ct-classifier", f"{url}/badmeta.tar.gz", archive)) == 2
    assert "input_size must be a whole number" in capsys.readouterr().err
    _store_left_clean(store, "ct-classifier")


def test_refuses_a_model_of_the_wrong_kind_for_the_name(packed, http_folder, store, tmp_path, capsys):
    served, url = http_folder
    manifest = write_manifest(tmp_path / "m.json", "ct-lesions", f"{url}/ct-classifier.tar.gz",
                              served / "ct-classifier.tar.gz")
    assert _pull(manifest, "ct-lesions") == 2
    assert "must be a ct segmentation model" in capsys.readouterr().err
    _store_left_clean(store, "ct-lesions")


def test_an_unpublished_default_manifest_entry_says_so(store, capsys):
    assert main(["models", "pull", "ct-lesions"]) == 2
    err = capsys.readouterr().err
    assert "no published ct-lesions archive yet" in err and "covidlens models build ct-lesions" in err


def test_card_of_a_model_not_installed_is_one_sentence(store, capsys):
    assert main(["models", "card", "cxr-lungs"]) == 0
    assert capsys.readouterr().out.strip() == ("no cxr-lungs model is installed: run 'covidlens models build "
                                               "cxr-lungs' or 'covidlens models pull cxr-lungs'.")
