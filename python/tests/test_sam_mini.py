"""A SAM of input side 128 (SAM-mini's size; build_sam.py's image_size parameter) through the
Python API: the builder takes it (the size is read from the checkpoint), the predictor works in
its 128 frame with (S/4, S/4) low-res logits and an (1, 256, S/16, S/16) embedding, a reused
embedding and a low-res mask prompt give the same answers as the image, and segment --everything
agrees with SamAutomaticMaskGenerator's shapes."""

import ctypes

import numpy as np

from asam import SamAutomaticMaskGenerator, SamPredictor
from asam import _lib
from asam.sam import Sam, _build_sam

S = 128


def _mini(path):
    cfg = _lib.SamConfig()
    cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.head_dim, cfg.mlp_dim, cfg.window = 32, 2, 2, 16, 128, 4
    cfg.n_global, cfg.img_size = 1, S
    cfg.global_idx[0] = 1
    cfg.is_global[1] = 1
    cfg.variant = b"custom"
    handle = ctypes.c_void_p()
    _lib.check(_lib.asam_sam_init_random(ctypes.byref(cfg), 5, ctypes.byref(handle)))
    Sam(handle.value).save(path)
    return _build_sam(32, 2, 2, [1], checkpoint=path)


def _image(h, w):
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 40 + x % 50
    img[..., 1] = 60 + y % 70
    inside = (x - 40) ** 2 + (y - 30) ** 2 < 400
    img[inside] = (220, 60, 90)
    return img


def test_mini_predictor(tmp_path):
    sam = _mini(str(tmp_path / "mini.safetensors"))
    assert sam.image_size == S
    p = SamPredictor(sam)
    img = _image(80, 100)
    p.set_image(img)
    assert p.original_size == (80, 100) and p.input_size == (102, 128)  # ResizeLongestSide(128)
    emb = p.get_image_embedding()
    assert emb.shape == (1, 256, S // 16, S // 16)
    box = np.array([20, 10, 60, 50])
    masks, iou, low = p.predict(box=box, multimask_output=True)
    assert masks.shape == (3, 80, 100) and iou.shape == (3,) and low.shape == (3, S // 4, S // 4)

    # the same from the stored embedding, and with the best low-res mask as a prompt
    q = SamPredictor(sam)
    q.set_image_embedding(emb, (80, 100))
    assert q.input_size == p.input_size
    masks2, iou2, low2 = q.predict(box=box, multimask_output=True)
    assert np.array_equal(masks, masks2) and np.array_equal(iou, iou2) and np.array_equal(low, low2)
    m3, _, l3 = p.predict(box=box, mask_input=low[np.argmax(iou)][None], multimask_output=False)
    assert m3.shape == (1, 80, 100) and l3.shape == (1, S // 4, S // 4)

    # a batch of boxes
    mb, ib, lb = p.predict_boxes(boxes=np.array([[20, 10, 60, 50], [0, 0, 99, 79]]), multimask_output=False)
    assert mb.shape == (2, 1, 80, 100) and lb.shape == (2, 1, S // 4, S // 4)
    assert np.array_equal(mb[0], p.predict(box=box, multimask_output=False)[0])


def test_mini_automatic_masks(tmp_path):
    sam = _mini(str(tmp_path / "mini.safetensors"))
    gen = SamAutomaticMaskGenerator(sam, points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0)
    recs = gen.generate(_image(S, S))
    assert recs, "no masks"
    for r in recs:
        assert r["segmentation"].shape == (S, S)
        x, y = r["point_coords"][0]
        assert 0 <= x < S and 0 <= y < S
        assert r["crop_box"] == [0, 0, S, S]
