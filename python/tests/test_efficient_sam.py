"""EfficientSAM's Python API (build_efficient_sam*, the official model call, get_image_embeddings,
predict_masks) against the official reference values (tests/data/efficientsam_tiny, which the
C tests use, and every case of ../shared/fixtures/efficientsam_tiny when present) and against
`asam segment` with the same checkpoint, image and prompt."""

import gzip
import os
import shutil

import numpy as np
import pytest

import asam
from asam import build_efficient_sam, build_efficient_sam_vits, build_efficient_sam_vitt
from conftest import DATA, FIXTURES, TOL, check_masks, read_safetensors, rel_err

ESAM_DATA = os.path.join(DATA, "efficientsam_tiny")


@pytest.fixture(scope="module")
def esam_path(tmp_path_factory):
    src = os.path.join(ESAM_DATA, "model.safetensors.gz")
    if not os.path.exists(src):
        pytest.skip("tests/data/efficientsam_tiny/model.safetensors.gz not found")
    dst = str(tmp_path_factory.mktemp("esam") / "esam_tiny.safetensors")
    with gzip.open(src) as f, open(dst, "wb") as g:
        shutil.copyfileobj(f, g)
    return dst


@pytest.fixture(scope="module")
def model(esam_path):
    # The tiny model's encoder: width 64, 2 heads (config.json); neck and decoder from shapes.
    return build_efficient_sam(encoder_patch_embed_dim=64, encoder_num_heads=2, checkpoint=esam_path)


def to_tensor(u8):
    """torchvision ToTensor of an (H, W, 3) uint8 image, batched: (1, 3, H, W) float32."""
    return (np.asarray(u8).transpose(2, 0, 1).astype(np.float32) / np.float32(255))[None]


def case(name):
    path = os.path.join(FIXTURES, "efficientsam_tiny", name + ".safetensors")
    if not os.path.exists(path):
        pytest.skip("%s not found (set ASAM_FIXTURES)" % path)
    return read_safetensors(path)


def test_core_case(model):
    """The subset of the official box case that ships with the repository (as the C tests)."""
    fx = read_safetensors(os.path.join(ESAM_DATA, "core_box.safetensors.gz"))
    x = to_tensor(fx["image_u8"])
    emb = model.get_image_embeddings(x)
    assert emb.shape == (1, 64, 64, 64) and emb.dtype == np.float32
    assert rel_err(emb, fx["image_embeddings"]) < TOL
    pts, lab = fx["point_coords"], fx["point_labels"]
    logits, iou = model(x, pts, lab)  # the official call: multimask, scaled to the image
    assert logits.shape == (1, 1, 3, 240, 360) and logits.dtype == np.float32
    assert iou.shape == (1, 1, 3) and iou.dtype == np.float32
    assert rel_err(iou, fx["multi_iou_predictions"]) < TOL
    low, iou_m = model(x, pts, lab, scale_to_original_image_size=False)
    assert low.shape == (1, 1, 3, 256, 256)
    assert rel_err(low[0, 0], fx["low_res_logits_all"][0, 1:]) < TOL
    np.testing.assert_array_equal(iou_m, iou)
    low1, iou1 = model.predict_masks(emb, pts, lab, multimask_output=False, input_h=240, input_w=360)
    assert low1.shape == (1, 1, 1, 256, 256) and iou1.shape == (1, 1, 1)
    assert rel_err(low1[0, 0], fx["low_res_logits_all"][0, :1]) < TOL
    assert rel_err(iou1, fx["single_iou_predictions"]) < TOL


def test_official_cases(model):
    """Every case of the official fixture set: full-size logits, masks, IoU, embeddings."""
    box = case("case_box_landscape")
    x = to_tensor(box["image_u8"])
    logits, iou = model(x, box["point_coords"], box["point_labels"])
    assert rel_err(logits, box["multi_mask_logits"]) < TOL
    assert rel_err(iou, box["multi_iou_predictions"]) < TOL
    check_masks(logits >= 0, box["multi_mask_logits"], box["multi_masks"])
    emb = model.get_image_embeddings(x)
    assert rel_err(emb, box["image_embeddings"]) < TOL
    single, iou1 = model.predict_masks(emb, box["point_coords"], box["point_labels"], False, 240, 360, 240, 360)
    assert single.shape == (1, 1, 1, 240, 360)
    assert rel_err(single, box["single_mask_logits"]) < TOL
    assert rel_err(iou1, box["single_iou_predictions"]) < TOL

    for name in ("case_points_portrait", "case_many_points_tall"):
        fx = case(name)
        xi = to_tensor(fx["image_u8"])
        logits, iou = model(xi, fx["point_coords"], fx["point_labels"])
        assert logits.shape == fx["multi_mask_logits"].shape, name
        assert rel_err(logits, fx["multi_mask_logits"]) < TOL, name
        assert rel_err(iou, fx["multi_iou_predictions"]) < TOL, name
        check_masks(logits >= 0, fx["multi_mask_logits"], fx["multi_masks"])
        # the official example's int64 prompts give the same outputs
        if name == "case_many_points_tall":
            l2, i2 = model(xi, fx["point_coords"].astype(np.int64), fx["point_labels"].astype(np.int64))
            np.testing.assert_array_equal(l2, logits)

    bq = case("case_batch_queries")  # 4 queries of 3 points against image A's embedding
    for multi, pre, sl in ((True, "multi_", slice(1, 4)), (False, "single_", slice(0, 1))):
        low, iou = model.predict_masks(emb, bq["point_coords"], bq["point_labels"], multi, 240, 360)
        assert low.shape == (1, 4, 3 if multi else 1, 256, 256)
        assert rel_err(low[0], bq["low_res_logits_all"][:, sl]) < TOL
        assert rel_err(iou, bq[pre + "iou_predictions"]) < TOL
    # one embedding per query (the official [B*Q, C, H, W] form) decodes the same
    low_q, iou_q = model.predict_masks(np.repeat(emb, 4, 0), bq["point_coords"], bq["point_labels"], True, 240, 360)
    assert rel_err(low_q[0], bq["low_res_logits_all"][:, 1:]) < TOL
    assert rel_err(iou_q, bq["multi_iou_predictions"]) < TOL


def test_output_size(model):
    """predict_masks with an output size other than the input's: the official bicubic step."""
    torch = pytest.importorskip("torch")
    fx = read_safetensors(os.path.join(ESAM_DATA, "core_box.safetensors.gz"))
    emb = fx["image_embeddings"]
    low, _ = model.predict_masks(emb, fx["point_coords"], fx["point_labels"], True, 240, 360)
    out, _ = model.predict_masks(emb, fx["point_coords"], fx["point_labels"], True, 240, 360, 100, 130)
    assert out.shape == (1, 1, 3, 100, 130)
    ref = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(low[0])), (100, 130), mode="bicubic")
    assert rel_err(out[0], ref.numpy()) < TOL


def test_equals_cli(tmp_path, model, esam_path):
    """`asam segment` with the same checkpoint, image, points and box (the box as two points
    labelled 2 and 3, after the points) gives bit-identical outputs."""
    img = os.path.join(DATA, "sam_tiny", "image_a.png")
    out = tmp_path / "r.safetensors"
    asam.segment(model=esam_path, image=img, point="400,200,0", box="252.5,105,548,297", multimask=True,
                 out=tmp_path / "m.png", save=out)
    r = read_safetensors(str(out))
    x = to_tensor(asam.imread(img))
    pts = np.array([[[[400, 200], [252.5, 105], [548, 297]]]], np.float32)
    lab = np.array([[[0, 2, 3]]], np.float32)
    logits, iou = model(x, pts, lab)
    low, _ = model(x, pts, lab, scale_to_original_image_size=False)
    np.testing.assert_array_equal(logits[0, 0], r["mask_logits"])
    np.testing.assert_array_equal(iou[0, 0], r["iou_predictions"])
    np.testing.assert_array_equal(low[0, 0], r["low_res_logits"])
    np.testing.assert_array_equal(model.get_image_embeddings(x), r["image_embedding"])


def test_official_example_with_torch(model):
    """EfficientSAM_example.py's post-processing runs unchanged on torch inputs (torch in,
    torch out) and agrees with the numpy call."""
    torch = pytest.importorskip("torch")
    image = np.asarray(asam.imread(os.path.join(DATA, "sam_tiny", "image_a.png")))
    sample_image_tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255  # ToTensor
    input_points = torch.tensor([[[[580, 350], [650, 350]]]])
    input_labels = torch.tensor([[[1, 1]]])
    predicted_logits, predicted_iou = model(sample_image_tensor[None, ...], input_points, input_labels)
    assert isinstance(predicted_logits, torch.Tensor) and isinstance(predicted_iou, torch.Tensor)
    sorted_ids = torch.argsort(predicted_iou, dim=-1, descending=True)
    predicted_iou = torch.take_along_dim(predicted_iou, sorted_ids, dim=2)
    predicted_logits = torch.take_along_dim(predicted_logits, sorted_ids[..., None, None], dim=2)
    mask = torch.ge(predicted_logits[0, 0, 0, :, :], 0).cpu().detach().numpy()
    assert mask.shape == (480, 640) and mask.dtype == np.bool_
    logits, iou = model(to_tensor(image), input_points.numpy(), input_labels.numpy())
    best = int(np.argmax(iou[0, 0]))
    np.testing.assert_array_equal(mask, logits[0, 0, best] >= 0)


def test_builders_and_errors(model, esam_path, tmp_path):
    assert model.config.embed_dim == 64 and model.eval() is model and model.to("cpu") is model
    with pytest.raises(asam.AsamError, match="expects 192"):
        build_efficient_sam_vitt(checkpoint=esam_path)
    with pytest.raises(asam.AsamError, match="expects 384"):
        build_efficient_sam_vits(checkpoint=esam_path)
    with pytest.raises(FileNotFoundError, match="efficient_sam_vitt.pt"):
        build_efficient_sam_vitt()  # the official default path, weights/efficient_sam_vitt.pt
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(asam.AsamError, match="bad.pt"):
        build_efficient_sam(64, 2, checkpoint=str(bad))
    x = np.zeros((1, 3, 32, 48), np.float32)
    pts, lab = np.zeros((1, 1, 1, 2), np.float32), np.ones((1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="ToTensor"):
        model(x.astype(np.uint8), pts, lab)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        model(x[0], pts, lab)
    with pytest.raises(ValueError, match="batched_point_labels"):
        model(x, pts, lab[..., None])
    with pytest.raises(ValueError, match="2 prompt sets for 1 images"):
        model(x, np.zeros((2, 1, 1, 2), np.float32), np.ones((2, 1, 1), np.float32))
    with pytest.raises(asam.AsamError, match="no prompt"):
        model(x, np.zeros((1, 1, 0, 2), np.float32), np.ones((1, 1, 0), np.float32))
    # without a checkpoint: random weights with the official decoder (as build_efficient_sam)
    r = build_efficient_sam(192, 3)
    assert (r.config.embed_dim, r.config.num_heads, r.config.dim) == (192, 3, 256)
    # the official {"model": state_dict} checkpoint, when the fixture set is present
    pth = os.path.join(FIXTURES, "efficientsam_tiny", "model.pth")
    if os.path.exists(pth):
        m2 = build_efficient_sam(64, 2, checkpoint=pth)
        np.testing.assert_array_equal(m2.get_image_embeddings(x), model.get_image_embeddings(x))
