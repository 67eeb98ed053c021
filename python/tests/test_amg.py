"""SamAutomaticMaskGenerator against the official generator's outputs (the reference the C test
test_sam_amg uses: tests/data/amg/amg_reference.json.gz, made by
scripts/ref/make_amg_reference.py) and against `asam segment --everything` on the same model,
image and options (identical records)."""

import gzip
import json
import os

import numpy as np
import pytest

import asam
from asam import SamAutomaticMaskGenerator
from conftest import DATA, REPO

_REF = os.path.join(DATA, "amg", "amg_reference.json.gz")
# Three of the reference's six cases keep this test short (the C test runs all six): box NMS
# on a small image, crops with a point downscale, hole / island removal on a 640x480 image.
CASES = ("small_nms", "small_crops_down2", "landscape_min_area")
_KEYS = ["segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"]


@pytest.fixture(scope="module")
def reference():
    if not os.path.exists(_REF):
        pytest.skip("tests/data/amg/amg_reference.json.gz not found")
    with gzip.open(_REF) as f:
        ref = json.load(f)
    return {c["name"]: c for c in ref["cases"]}


_results = {}


def generate(sam, case, output_mode="coco_rle"):
    """The generator's records for a reference case (cached: the runs take seconds)."""
    key = (case["name"], output_mode)
    if key not in _results:
        image = asam.imread(os.path.join(REPO, case["image"]))
        gen = SamAutomaticMaskGenerator(sam, output_mode=output_mode, **case["options"])
        _results[key] = gen.generate(image)
    return _results[key]


def coco_counts(s):
    """pycocotools' compressed counts string -> run lengths (LEB128-like 5-bit groups with a
    continuation bit and a sign bit; from the third run on, relative to the run two back)."""
    runs, i = [], 0
    while i < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[i]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i, k = i + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def decode(counts, h, w):
    """An uncompressed COCO RLE (column-major runs, zeros first) -> bool (h, w)."""
    flat = np.repeat(np.arange(len(counts)) % 2 == 1, counts)
    assert flat.size == h * w
    return flat.reshape(w, h).T


@pytest.mark.parametrize("name", CASES)
def test_matches_official(sam_tiny, reference, name):
    """(coco_rle output, decoded here.) As test_sam_amg: every official mask at IoU >= 0.99 in the official order, bbox within
    1 px, crop_box exact, area within 1 %, predicted_iou within 1e-4, stability within 2e-3,
    point_coords within 1e-9; and the official record types."""
    case = reference[name]
    got = generate(sam_tiny, case)
    ref = case["masks"]
    assert len(got) == len(ref), (len(got), len(ref))
    h, w = ref[0]["size"] if ref else (0, 0)
    for g, r in zip(got, ref):
        assert list(g) == _KEYS
        assert isinstance(g["area"], int) and all(isinstance(v, int) for v in g["bbox"] + g["crop_box"])
        assert isinstance(g["predicted_iou"], float) and isinstance(g["stability_score"], float)
        assert all(isinstance(v, float) for v in g["point_coords"][0]) and len(g["point_coords"]) == 1
        seg = g["segmentation"]
        assert seg["size"] == [h, w] and isinstance(seg["counts"], str)
        counts = coco_counts(seg["counts"])
        a, b = decode(counts, h, w), decode(r["counts"], h, w)
        iou = (a & b).sum() / max((a | b).sum(), 1)
        assert iou >= 0.99, iou
        assert g["area"] == int(a.sum()) == sum(counts[1::2])
        assert max(abs(x - y) for x, y in zip(g["bbox"], r["bbox"])) <= 1
        assert g["crop_box"] == r["crop_box"]
        assert abs(g["area"] - r["area"]) <= 0.01 * max(1, r["area"])
        assert abs(g["predicted_iou"] - r["predicted_iou"]) <= 1e-4
        assert abs(g["stability_score"] - r["stability_score"]) <= 2e-3
        assert np.abs(np.subtract(g["point_coords"], r["point_coords"])).max() <= 1e-9


@pytest.mark.parametrize("name", ("small_nms", "landscape_min_area"))
def test_equals_cli(tmp_path, sam_tiny, sam_tiny_pth, reference, name):
    """`asam segment --everything` (the package's program) with the same options writes the
    same records (COCO RLE strings, every number) in the same order."""
    case = reference[name]
    coco = generate(sam_tiny, case)
    opts = dict(case["options"])
    img = os.path.join(REPO, case["image"])
    out = tmp_path / "out"
    asam.segment(everything=True, model=sam_tiny_pth, image=img, out=out, quiet=True, no_overlay=True, **opts)
    stem = os.path.splitext(os.path.basename(img))[0]
    with open(out / (stem + ".json")) as f:
        anns = json.load(f)["annotations"]
    assert len(anns) == len(coco) > 0
    for g, c in zip(coco, anns):
        assert g["segmentation"] == c["segmentation"]
        for key in ("area", "bbox", "crop_box"):
            assert g[key] == c[key], (key, g[key], c[key])
        # The JSON holds 15 significant digits (cJSON): the scores are float32 values, equal
        # as float32; the points are float64, equal to the printed precision.
        for key in ("predicted_iou", "stability_score"):
            assert np.float32(g[key]) == np.float32(c[key]), (key, g[key], c[key])
        np.testing.assert_allclose(g["point_coords"], c["point_coords"], rtol=1e-14, atol=0)


def test_output_modes(sam_tiny, reference):
    """binary_mask, uncompressed_rle and coco_rle describe the same masks."""
    case = reference["small_nms"]
    rle = generate(sam_tiny, case, "uncompressed_rle")
    coco = generate(sam_tiny, case)
    binary = generate(sam_tiny, case, "binary_mask")
    assert len(rle) == len(coco) == len(binary)
    for r, c, b in zip(rle, coco, binary):
        h, w = r["segmentation"]["size"]
        m = b["segmentation"]
        assert m.dtype == np.bool_ and m.shape == (h, w)
        np.testing.assert_array_equal(m, decode(r["segmentation"]["counts"], h, w))
        assert all(isinstance(v, int) for v in r["segmentation"]["counts"])
        assert c["segmentation"] == {"size": [h, w], "counts": c["segmentation"]["counts"]}
        assert coco_counts(c["segmentation"]["counts"]) == r["segmentation"]["counts"]
        for key in _KEYS[1:]:
            assert r[key] == c[key] == b[key]


def test_point_grids_equal_points_per_side(sam_tiny, reference):
    """An explicit grid equal to the official 3 x 3 grid gives the points_per_side=3 result."""
    case = reference["small_nms"]
    side = np.linspace(1 / 6, 5 / 6, 3)
    grid = np.stack(np.meshgrid(side, side), -1).reshape(-1, 2)  # x fastest, as build_point_grid
    opts = dict(case["options"], points_per_side=None, point_grids=[grid])
    image = asam.imread(os.path.join(REPO, case["image"]))
    got = SamAutomaticMaskGenerator(sam_tiny, output_mode="coco_rle", **opts).generate(image)
    assert got == generate(sam_tiny, case)


def test_errors(sam_tiny, image_a):
    with pytest.raises(ValueError, match="Exactly one of points_per_side or point_grid"):
        SamAutomaticMaskGenerator(sam_tiny, points_per_side=None)
    with pytest.raises(ValueError, match="Exactly one"):
        SamAutomaticMaskGenerator(sam_tiny, point_grids=[np.zeros((1, 2))])
    with pytest.raises(ValueError, match="Unknown output_mode"):
        SamAutomaticMaskGenerator(sam_tiny, output_mode="polygons")
    with pytest.raises(TypeError):
        SamAutomaticMaskGenerator("sam.pth")
    gen = SamAutomaticMaskGenerator(sam_tiny, points_per_side=2)
    with pytest.raises(ValueError, match="uint8"):
        gen.generate(image_a.astype(np.float32))
    # Limits of the C generator come back as AsamError with its message.
    with pytest.raises(asam.AsamError, match="crop_n_layers 5 out of range"):
        SamAutomaticMaskGenerator(sam_tiny, points_per_side=2, crop_n_layers=5).generate(image_a)
    with pytest.raises(asam.AsamError, match="coordinates must be in"):
        SamAutomaticMaskGenerator(sam_tiny, points_per_side=None, point_grids=[np.full((2, 2), 1.5)]).generate(image_a)
    with pytest.raises(asam.AsamError, match="point grids given"):
        SamAutomaticMaskGenerator(sam_tiny, points_per_side=None, crop_n_layers=1, point_grids=[np.full((2, 2), 0.5)]).generate(image_a)
