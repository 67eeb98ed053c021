"""SamPredictor against the official reference values (the ones the C tests use) and against
the `asam segment` program on the same model, image and prompts."""

import os
import subprocess
import threading
import time

import numpy as np
import pytest

import asam
from asam import SamPredictor
from conftest import DATA, TOL, check_masks, fixture, read_safetensors, rel_err

BOX_A = np.array([252.5, 105, 548, 297])  # fixture case a's box (also in a.box_xyxy)


def test_installed_layout():
    # The package's own libasam finds the data beside itself (share/asam in the package).
    d = asam.data_dir()
    assert os.path.isfile(os.path.join(d, "clip", "vocab.json"))
    if not os.environ.get("ASAM_LIBRARY"):
        assert d.startswith(os.path.dirname(asam.__file__))


def test_embedding_matches_reference(predictor_a, subset):
    emb = predictor_a.get_image_embedding()
    assert emb.shape == (1, 256, 64, 64) and emb.dtype == np.float32
    assert rel_err(emb, subset["a.image_embedding"]) < TOL
    assert predictor_a.original_size == (480, 640) and predictor_a.input_size == (768, 1024)


def test_predict_box_matches_reference(predictor_a, subset):
    np.testing.assert_array_equal(subset["a.box_xyxy"], BOX_A.astype(np.float32))
    masks, iou, low = predictor_a.predict(box=BOX_A, multimask_output=False)
    assert masks.shape == (1, 480, 640) and masks.dtype == np.bool_
    assert iou.shape == (1,) and iou.dtype == np.float32
    assert low.shape == (1, 256, 256) and low.dtype == np.float32
    assert rel_err(low, subset["a.single_low_res_logits"]) < TOL
    assert rel_err(iou, subset["a.single_iou_predictions"]) < TOL
    check_masks(masks, subset["a.single_mask_logits"], subset["a.single_masks"])
    logits, _, _ = predictor_a.predict(box=BOX_A, multimask_output=False, return_logits=True)
    assert logits.dtype == np.float32 and rel_err(logits, subset["a.single_mask_logits"]) < TOL
    masks3, iou3, low3 = predictor_a.predict(box=BOX_A)  # multimask_output defaults to True
    assert masks3.shape == (3, 480, 640) and iou3.shape == (3,) and low3.shape == (3, 256, 256)
    assert rel_err(low3, subset["a.multi_low_res_logits"]) < TOL
    assert rel_err(iou3, subset["a.multi_iou_predictions"]) < TOL


def test_predict_equals_cli(tmp_path, sam_tiny_pth, predictor_a):
    """`asam segment --save` on the same model/image/box gives bit-identical outputs."""
    img = os.path.join(DATA, "sam_tiny", "image_a.png")
    clis = [None] + ([os.environ["ASAM_CLI"]] if os.environ.get("ASAM_CLI") else [])
    masks, iou, low = predictor_a.predict(box=BOX_A, multimask_output=True)
    logits, _, _ = predictor_a.predict(box=BOX_A, multimask_output=True, return_logits=True)
    for k, cli in enumerate(clis):
        out = tmp_path / ("r%d.safetensors" % k)
        box = "%g,%g,%g,%g" % tuple(BOX_A)
        if cli is None:  # the package's program, through the stage layer
            asam.segment(model=sam_tiny_pth, image=img, box=box, multimask=True, out=tmp_path / "m.png", save=out)
        else:  # the build tree's program
            subprocess.run([cli, "segment", "--model", sam_tiny_pth, "--image", img, "--box", box, "--multimask",
                            "--out", str(tmp_path / "m.png"), "--save", str(out)], check=True, capture_output=True)
        r = read_safetensors(str(out))
        np.testing.assert_array_equal(r["low_res_logits"], low)
        np.testing.assert_array_equal(r["iou_predictions"], iou)
        np.testing.assert_array_equal(r["mask_logits"], logits)
        np.testing.assert_array_equal(r["image_embedding"], predictor_a.get_image_embedding())
        np.testing.assert_array_equal(r["mask_logits"] > 0, masks)


def test_bgr_input(sam_tiny, image_a, predictor_a):
    p = SamPredictor(sam_tiny)
    p.set_image(np.ascontiguousarray(image_a[..., ::-1]), image_format="BGR")
    np.testing.assert_array_equal(p.get_image_embedding(), predictor_a.get_image_embedding())


def test_points_portrait(sam_tiny):
    fx = fixture("case_points_portrait.safetensors")
    p = SamPredictor(sam_tiny)
    p.set_image(fx["image_u8"])
    assert p.input_size == (1024, 439)
    assert rel_err(p.get_image_embedding(), fx["image_embedding"]) < TOL
    for multi, pre in ((False, "single_"), (True, "multi_")):
        logits, iou, low = p.predict(fx["point_coords"], fx["point_labels"].astype(np.int64), fx["box_xyxy"],
                                     multimask_output=multi, return_logits=True)
        assert rel_err(low, fx[pre + "low_res_logits"]) < TOL
        assert rel_err(iou, fx[pre + "iou_predictions"]) < TOL
        assert rel_err(logits, fx[pre + "mask_logits"]) < TOL
        masks, _, _ = p.predict(fx["point_coords"], fx["point_labels"], fx["box_xyxy"], multimask_output=multi)
        check_masks(masks, fx[pre + "mask_logits"], fx[pre + "masks"])


def test_mask_input(predictor_a):
    fx = fixture("case_mask_input.safetensors")
    pts, lab = fx["point_coords"], fx["point_labels"]
    _, iou1, low1 = predictor_a.predict(pts, lab, multimask_output=True)
    assert rel_err(low1, fx["step1_multi_low_res_logits"]) < TOL
    for multi, pre in ((False, "single_"), (True, "multi_")):
        masks, iou, low = predictor_a.predict(pts, lab, mask_input=fx["mask_input"], multimask_output=multi)
        assert rel_err(low, fx[pre + "low_res_logits"]) < TOL
        assert rel_err(iou, fx[pre + "iou_predictions"]) < TOL


def test_batched_boxes(predictor_a):
    fx = fixture("case_batch_boxes.safetensors")
    masks, iou, low = predictor_a.predict_boxes(fx["boxes_xyxy"], multimask_output=False)
    assert masks.shape == (4, 1, 480, 640) and iou.shape == (4, 1) and low.shape == (4, 1, 256, 256)
    assert rel_err(low, fx["single_low_res_logits"]) < TOL
    assert rel_err(iou, fx["single_iou_predictions"]) < TOL
    m2, i2, l2 = predictor_a.predict(box=fx["boxes_xyxy"], multimask_output=False)  # (B, 4) box
    np.testing.assert_array_equal(l2, low)
    logits, _, _ = predictor_a.predict_boxes(fx["boxes_xyxy"], multimask_output=False, return_logits=True)
    check_masks(masks, logits, fx["single_masks"])


def test_batched_points(predictor_a):
    fx = fixture("case_points_neg_label.safetensors")
    _, iou, low = predictor_a.predict_boxes(point_coords=fx["point_coords"], point_labels=fx["point_labels"])
    assert iou.shape == (2, 3) and low.shape == (2, 3, 256, 256)
    assert rel_err(low, fx["multi_low_res_logits"]) < TOL
    assert rel_err(iou, fx["multi_iou_predictions"]) < TOL


def test_outputs_are_views(predictor_a):
    masks, iou, low = predictor_a.predict(box=BOX_A)
    for a in (masks, iou, low):
        assert not a.flags.owndata  # views of the library's buffers, no copy
    masks2, _, _ = predictor_a.predict(box=BOX_A)
    assert not np.shares_memory(masks, masks2)
    del masks2
    np.testing.assert_array_equal(masks, predictor_a.predict(box=BOX_A)[0])


def test_reset_and_errors(sam_tiny, sam_tiny_pth, tmp_path):
    p = SamPredictor(sam_tiny)
    with pytest.raises(RuntimeError, match="An image must be set"):
        p.predict(box=BOX_A)
    with pytest.raises(RuntimeError, match="An image must be set"):
        p.get_image_embedding()
    with pytest.raises(ValueError):
        p.set_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(FileNotFoundError):
        asam.sam_model_registry["vit_b"](checkpoint=str(tmp_path / "none.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(asam.AsamError, match="bad.pth"):
        asam.sam_model_registry["vit_b"](checkpoint=str(bad))
    with pytest.raises(asam.AsamError, match="expects embed_dim 768"):
        asam.sam_model_registry["vit_b"](checkpoint=sam_tiny_pth)
    with pytest.raises(asam.AsamError, match="none.png"):
        asam.imread(tmp_path / "none.png")
    p.set_image(np.zeros((32, 48, 3), np.uint8))
    assert p.is_image_set and p.original_size == (32, 48)
    p.reset_image()
    assert not p.is_image_set
    with pytest.raises(RuntimeError):
        p.predict(box=BOX_A)


def test_set_image_releases_the_gil(sam_tiny, image_a):
    p = SamPredictor(sam_tiny)
    worker = threading.Thread(target=p.set_image, args=(image_a,))
    gaps, last = [], None
    t0 = time.perf_counter()
    worker.start()
    while worker.is_alive():
        now = time.perf_counter()
        if last is not None:
            gaps.append(now - last)
        last = now
        time.sleep(0.001)
    worker.join()
    took = time.perf_counter() - t0
    assert p.is_image_set
    # With the GIL held for the whole call, this loop would stall for all of it.
    assert took > 0.05 and max(gaps) < 0.5 * took, (took, max(gaps))


def test_threads():
    n = asam.get_threads()
    asam.set_threads(1)
    assert asam.get_threads() == 1
    asam.set_threads(n)
    with pytest.raises(ValueError):
        asam.set_threads(0)

