"""segment-anything code run unchanged except for its import: the predictor-on-a-box snippet of
the official notebook (notebooks/predictor_example.ipynb, "Specifying a specific object with a
box") against `asam segment --box ... --save ... --json` on the same checkpoint and image
(bit for bit), and against the official package's outputs for the same box (the reference
values of the C tests, within 1e-4).

The tiny test model has no registry key of its own; like a user with a custom encoder size, the
test adds one (the official _build_sam with the tiny encoder) before running the snippet."""

import functools
import json
import os

import numpy as np

import asam
from asam.build_sam import _build_sam
from conftest import DATA, TOL, check_masks, read_safetensors, rel_err

SNIPPET = """
import numpy as np
from asam import sam_model_registry, SamPredictor  # was: from segment_anything import ...

sam = sam_model_registry[model_type](checkpoint=sam_checkpoint)
sam.to(device=device)
predictor = SamPredictor(sam)
predictor.set_image(image)

input_box = np.array([252.5, 105, 548, 297])
masks, scores, logits = predictor.predict(
    point_coords=None,
    point_labels=None,
    box=input_box[None, :],
    multimask_output=False,
)
"""


def test_segment_anything_snippet_equals_cli(tmp_path, sam_tiny_pth, subset):
    img_path = os.path.join(DATA, "sam_tiny", "image_a.png")
    asam.sam_model_registry["tiny"] = functools.partial(_build_sam, 64, 3, 2, [1])
    try:
        ns = {"model_type": "tiny", "sam_checkpoint": sam_tiny_pth, "device": "cpu", "image": asam.imread(img_path)}
        exec(SNIPPET, ns)
    finally:
        del asam.sam_model_registry["tiny"]
    masks, scores, logits = ns["masks"], ns["scores"], ns["logits"]
    assert masks.shape == (1, 480, 640) and masks.dtype == np.bool_
    assert scores.shape == (1,) and scores.dtype == np.float32
    assert logits.shape == (1, 256, 256) and logits.dtype == np.float32

    save, png = tmp_path / "r.safetensors", tmp_path / "m.png"
    out = asam.segment(model=sam_tiny_pth, image=img_path, box="252.5,105,548,297", out=png, save=save, json=True)
    r = read_safetensors(str(save))
    np.testing.assert_array_equal(r["low_res_logits"], logits)
    np.testing.assert_array_equal(r["iou_predictions"], scores)
    np.testing.assert_array_equal(r["mask_logits"] > 0, masks)
    np.testing.assert_array_equal(asam.imread(png)[..., 0] > 0, masks[0])
    rec = json.loads(out)["masks"][0]
    assert np.float32(rec["iou"]) == scores[0] and rec["area"] == int(masks.sum())
    # and the official segment-anything's outputs for this box (fixture case a, the values the
    # C tests use), within the forward tolerance
    assert rel_err(logits, subset["a.single_low_res_logits"]) < TOL
    assert rel_err(scores, subset["a.single_iou_predictions"]) < TOL
    check_masks(masks, subset["a.single_mask_logits"], subset["a.single_masks"])
