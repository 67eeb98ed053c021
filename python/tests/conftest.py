"""Shared fixtures for the Python tests: the repository's tiny SAM test data (tests/data) and
the official reference outputs (../shared/fixtures or $ASAM_FIXTURES; tests needing them are
skipped when absent), read with a small numpy safetensors reader."""

import gzip
import json
import os
import shutil
import struct

import numpy as np
import pytest

REPO = os.environ.get("ASAM_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(REPO, "tests", "data")
FIXTURES = os.environ.get("ASAM_FIXTURES") or os.path.join(REPO, "..", "shared", "fixtures")
TOL = 1e-4  # forward tolerance of the C tests: max |diff| / max |reference|

_DT = {"F32": np.float32, "U8": np.uint8, "I64": np.int64, "F64": np.float64, "I32": np.int32}


def read_safetensors(path):
    """{name: numpy array} of a (possibly gzip'ed) safetensors file."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + b : 8 + n + end], dtype=_DT[e["dtype"]]).reshape(e["shape"])
    return out


def rel_err(got, ref):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))


def check_masks(masks, ref_logits, ref_masks):
    """Binary masks equal except where the reference logit is within 1e-3 of 0 (as the C tests)."""
    diff = (np.asarray(masks) != 0) != (np.asarray(ref_masks) != 0)
    assert not np.any(diff & (np.abs(ref_logits) >= 1e-3)), "mask pixels differ away from the boundary"


@pytest.fixture(scope="session")
def sam_tiny_pth(tmp_path_factory):
    src = os.path.join(DATA, "sam_tiny", "model.pth.gz")
    if not os.path.exists(src):
        pytest.skip("tests/data/sam_tiny/model.pth.gz not found")
    dst = str(tmp_path_factory.mktemp("model") / "sam_tiny.pth")
    with gzip.open(src) as f, open(dst, "wb") as g:
        shutil.copyfileobj(f, g)
    return dst


@pytest.fixture(scope="session")
def sam_tiny(sam_tiny_pth):
    from asam.build_sam import _build_sam

    # The tiny model's encoder, as the fixtures were made: _build_sam(64, 3, 2, [1]).
    return _build_sam(64, 3, 2, [1], checkpoint=sam_tiny_pth)


@pytest.fixture(scope="session")
def image_a():
    import asam

    return asam.imread(os.path.join(DATA, "sam_tiny", "image_a.png"))


@pytest.fixture(scope="session")
def subset():
    return read_safetensors(os.path.join(DATA, "sam_tiny", "sam_subset.safetensors.gz"))


@pytest.fixture(scope="session")
def predictor_a(sam_tiny, image_a):
    from asam import SamPredictor

    p = SamPredictor(sam_tiny)
    p.set_image(image_a)
    return p


def fixture(name):
    path = os.path.join(FIXTURES, "sam_tiny", name)
    if not os.path.exists(path):
        pytest.skip("%s not found (set ASAM_FIXTURES)" % path)
    return read_safetensors(path)
