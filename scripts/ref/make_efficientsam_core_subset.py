#!/usr/bin/env python3
"""Copy the part of ../shared/fixtures/efficientsam_tiny that proves EfficientSAM's core into
tests/data/efficientsam_tiny (gzip'ed), so a fresh clone without the fixtures still checks it:
the model (model.safetensors plus the metadata key encoder_num_heads = 2, the one
hyper-parameter tensor shapes do not show), case_box_landscape's image, prompts, embedding, prompt embeddings, low-res logits,
IoU and the top rows of the pre-processed input, and case_grad's losses and gradients.
The tensors are copied byte for byte (pure Python safetensors reader/writer, no torch)."""
import gzip, json, os, shutil, struct, sys

FIX = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../../shared/fixtures/efficientsam_tiny")
OUT = os.path.join(os.path.dirname(__file__), "../../tests/data/efficientsam_tiny")

BOX = ["image_u8", "point_coords", "point_labels", "point_coords_1024", "point_labels_padded",
       "preprocessed_input_top", "image_embeddings", "sparse_embeddings", "hyper_in",
       "low_res_logits_all", "iou_predictions_all", "multi_iou_predictions",
       "single_iou_predictions"]
GRAD = ["image_u8", "point_coords", "point_labels", "target_mask", "iou_target", "loss",
        "loss_bce", "loss_dice", "loss2", "iou_predictions", "grad_image_embeddings",
        "grad_iou_token", "grad_mask_tokens", "loss2_grad_iou_token", "loss2_grad_mask_tokens"]


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    return hdr, data


def write(path, hdr, data, names, meta=None):
    out_hdr, chunks, off = {}, [], 0
    if meta:
        out_hdr["__metadata__"] = meta
    for k in sorted(names):
        e = hdr[k]
        b = data[e["data_offsets"][0]:e["data_offsets"][1]]
        out_hdr[k] = {"dtype": e["dtype"], "shape": e["shape"], "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    h = json.dumps(out_hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


os.makedirs(OUT, exist_ok=True)
for case, names, out in (("case_box_landscape", BOX, "core_box.safetensors.gz"),
                         ("case_grad", GRAD, "core_grad.safetensors.gz")):
    hdr, data = read(os.path.join(FIX, case + ".safetensors"))
    write(os.path.join(OUT, out), hdr, data, names)
hdr, data = read(os.path.join(FIX, "model.safetensors"))
write(os.path.join(OUT, "model.safetensors.gz"), hdr, data,
      [k for k in hdr if k != "__metadata__"], {"encoder_num_heads": "2"})
shutil.copy(os.path.join(FIX, "config.json"), os.path.join(OUT, "config.json"))
