"""Group near-duplicate images (the same radiograph re-exported, re-cropped or re-labelled) by a perceptual hash.

A set without patient ids can still leak between its splits through copies of one image; grouping the
copies keeps each on one side. The hash is a 256-bit DCT hash: the image at 64x64 grey, its 16x16
lowest 2-D DCT coefficients, each compared with their median. 64 bits (the usual pHash) are too coarse
for chest radiographs, which all look alike at 8x8: on the COVID-19 Radiography folder distinct
patients, even a COVID and a Normal image, came within 4 of 64 bits. At 256 bits, inspected by eye on that
folder, copies lie within 48 bits and distinct images from about 50 on (the bulk from 52 on), so two
images within :data:`MAX_DISTANCE` bits are one group, and groups chain (union-find).

Hashing decodes every image once (about 2 s for 2,400 JPEGs on one core), so the hashes are cached
under ``~/.cache/covidlens/near-duplicates``, keyed by each file's name, size and modification time:
a changed or added file is hashed again, the rest is read back. The comparison itself is all pairs
on packed bits (a fraction of a second for a few thousand images).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from covidlens.data.io import MAX_PIXELS
from covidlens.errors import CovidlensError

MAX_DISTANCE = 48
HASH_SIZE = 64  # side of the grey thumbnail the DCT is taken of
HASH_BITS = 16  # side of the low-frequency block kept: 16 x 16 = 256 bits
CACHE_ENV = "COVIDLENS_CACHE"


def cache_dir() -> Path:
    """``$COVIDLENS_CACHE`` when set, otherwise ``~/.cache/covidlens``."""
    env = os.environ.get(CACHE_ENV)
    return (Path(env) if env else Path.home() / ".cache" / "covidlens") / "near-duplicates"


def image_hash(path: Path) -> bytes:
    """The 256-bit DCT hash of one image, as 32 bytes."""
    from scipy.fft import dctn

    with Image.open(path) as image:
        if image.width * image.height > MAX_PIXELS:
            raise CovidlensError(f"{path} has more than {MAX_PIXELS} pixels; shrink it before hashing it.")
        image.draft("L", (HASH_SIZE, HASH_SIZE))  # JPEG: decode at a reduced scale, much faster
        grey = image.convert("L").resize((HASH_SIZE, HASH_SIZE), Image.Resampling.BILINEAR)
    low = dctn(np.asarray(grey, dtype=np.float64), norm="ortho")[:HASH_BITS, :HASH_BITS].ravel()
    return np.packbits(low > np.median(low[1:])).tobytes()


def _hashes(paths: Sequence[Path], names: Sequence[str], folder: Path) -> list[bytes]:
    """Hashes for ``paths``, read from the cache where name, size and mtime still match."""
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    cache_file = cache_dir() / f"{key}.json"
    try:
        cached = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cached = {}
    out, fresh, changed = [], {}, False
    for path, name in zip(paths, names):
        stat = path.stat()
        entry = cached.get(name)
        if entry and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
            digest = bytes.fromhex(entry[2])
        else:
            digest, changed = image_hash(path), True
        fresh[name] = [stat.st_size, stat.st_mtime_ns, digest.hex()]
        out.append(digest)
    if changed or set(fresh) != set(cached):
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(fresh))
            tmp.replace(cache_file)
        except OSError:
            pass  # a read-only home only costs the next load the hashing time again
    return out


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per uint64 word (``np.bitwise_count`` where numpy has it, 2.0 on)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words).astype(np.int32)
    return np.unpackbits(words.view(np.uint8), axis=-1).reshape(*words.shape, 64).sum(axis=-1, dtype=np.int32)


def near_duplicate_groups(paths: Sequence[Path], folder: Path, max_distance: int = MAX_DISTANCE) -> list[str]:
    """A group name per path: the name (relative to ``folder``) of the group's first member."""
    names = [os.path.relpath(p, folder) for p in paths]
    hashes = np.frombuffer(b"".join(_hashes(paths, names, folder)), dtype=np.uint64).reshape(len(paths), -1)
    parent = list(range(len(paths)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(paths), 256):
        block = hashes[start : start + 256]
        distance = _popcount(block[:, None, :] ^ hashes[None, start:, :]).sum(axis=2)
        for i, j in zip(*np.nonzero(distance <= max_distance)):
            a, b = root(start + int(i)), root(start + int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [names[root(i)] for i in range(len(paths))]
