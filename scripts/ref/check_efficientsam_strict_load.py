#!/usr/bin/env python3
"""Load a checkpoint written by asam (e.g. asam tune's efficientsam_tuned.pt) into the OFFICIAL
EfficientSAM builder, which does torch.load(f)["model"] and a strict load_state_dict.

usage: /usr/bin/python3 scripts/ref/check_efficientsam_strict_load.py FILE.pt OFFICIAL_DIR
OFFICIAL_DIR holds the official package efficient_sam/ (yformer/EfficientSAM, e.g. extracted
with `git -C MIRROR archive HEAD efficient_sam | tar -x -C DIR`); it is not part of asam.
Only the official ViT-Ti / ViT-S shapes can be built by build_efficient_sam."""
import sys

import torch

path, official = sys.argv[1], sys.argv[2]
sys.path.insert(0, official)
from efficient_sam.efficient_sam import build_efficient_sam  # noqa: E402

top = torch.load(path, map_location="cpu")
assert list(top.keys()) == ["model"], f"top-level keys {list(top.keys())}"
sd = top["model"]
C = sd["image_encoder.patch_embed.proj.weight"].shape[0]
heads = {192: 3, 384: 6}[C]
model = build_efficient_sam(C, heads, checkpoint=path)  # strict=True inside
own = model.state_dict()
assert set(own) == set(sd), "key sets differ"
for k, v in sd.items():
    assert torch.equal(own[k], v), k
print(f"{path}: top-level ['model'], {len(sd)} tensors, build_efficient_sam({C}, {heads}) "
      f"loaded it strictly; every tensor equal after loading")
