# asam world + asam train-sam from the command line: the world's folders, a few training steps
# with an evaluation, a stop/resume, the checkpoint through `inspect` and `segment`, and the
# usage (2) / failure (1) exit codes with one error line.
. "$(dirname "$0")/lib/cli_common.sh"

export OMP_NUM_THREADS=1
"$BIN" world --out "$TMP/w" --seed 4 --count 6 --eval-count 2 --size 64 --quiet > "$TMP/world.out"
check "world exits 0" [ $? -eq 0 ]
for s in train val unseen_texture unseen_palette unseen_lighting unseen_blur_noise unseen_shapes unseen_clutter test; do
    check "world wrote $s" [ -f "$TMP/w/$s/sa_2.json" -a -f "$TMP/w/$s/sa_2.jpg" -a -f "$TMP/w/$s/captions.jsonl" ]
done
check "world.json records the sets" grep -q '"unseen_clutter"' "$TMP/w/world.json"
"$BIN" world --out "$TMP/w" --seed 5 --count 6 --eval-count 2 --size 64 --quiet 2> "$TMP/err"
rc=$?
check "world with another seed fails (1) naming --seed" [ $rc -eq 1 ]
check "  one error line" [ "$(wc -l < "$TMP/err")" -eq 1 ]
check "  it names --seed" grep -q -- "--seed" "$TMP/err"

T="--data sa1b:$TMP/w/train --img-size 64 --embed-dim 32 --depth 2 --heads 2 --window 2 --global-attn 1 --batch 2 --prompts 2 --warmup 2 --lr 1e-3 --quiet"
"$BIN" train-sam $T --out "$TMP/m.pth" --steps 6 --stop-after 3 2> "$TMP/err"
check "train-sam --stop-after exits 0" [ $? -eq 0 ]
check "  no checkpoint yet, a state file" [ ! -f "$TMP/m.pth" -a -f "$TMP/m.pth.state.safetensors" ]
"$BIN" train-sam $T --out "$TMP/m.pth" --steps 6 --resume --eval "sa1b:$TMP/w/val" --eval "$TMP/w/unseen_shapes" > "$TMP/out"
check "train-sam --resume --eval exits 0" [ $? -eq 0 ]
check "  prints the mIoU of each set" [ "$(grep -c 'box mIoU' "$TMP/out")" -eq 2 ]
check "  writes OUT.eval.json" grep -q '"miou"' "$TMP/m.pth.eval.json"
"$BIN" inspect "$TMP/m.pth" > "$TMP/inspect"
check "inspect sees the official names" grep -q "image_encoder.pos_embed" "$TMP/inspect"
check "  pos_embed is 4x4 tokens" grep -q "image_encoder.pos_embed.*1, 4, 4, 32" "$TMP/inspect"
"$BIN" segment --model "$TMP/m.pth" --image "$TMP/w/val/sa_1.jpg" --box 5,5,40,40 --out "$TMP/mask.png"
check "segment runs on the 64-input model" [ $? -eq 0 -a -f "$TMP/mask.png" ]

"$BIN" segment --model "$TMP/m.pth" --image "$TMP/w/val/sa_1.jpg" --box 5,5,40,40 --out "$TMP/mask2.png" --save "$TMP/s.safetensors"
check "segment --save on a 64-input model exits 0" [ $? -eq 0 -a -f "$TMP/s.safetensors" ]
"$BIN" inspect "$TMP/s.safetensors" > "$TMP/inspect_s"
check "  its embedding is (1, 256, 4, 4)" grep -q "image_embedding.*1, 256, 4, 4" "$TMP/inspect_s"
check "  its low-res logits are (1, 16, 16)" grep -q "low_res_logits.*1, 16, 16" "$TMP/inspect_s"
"$BIN" segment --model "$TMP/m.pth" --embedding "$TMP/s.safetensors" --mask-input "$TMP/s.safetensors" \
    --box 5,5,40,40 --out "$TMP/mask3.png"
check "segment --embedding --mask-input of that file exits 0" [ $? -eq 0 -a -f "$TMP/mask3.png" ]
"$BIN" segment --model "$TMP/m.pth" --embedding "$TMP/s.safetensors" --box 5,5,40,40 --out "$TMP/mask4.png"
check "  the reused embedding gives the same mask" cmp -s "$TMP/mask2.png" "$TMP/mask4.png"
fixture sam_tiny/model.pth "$TMP/sam1024.pth"
"$BIN" segment --model "$TMP/sam1024.pth" --image "$TMP/w/val/sa_1.jpg" --embedding "$TMP/s.safetensors" --box 5,5,40,40 --out "$TMP/mask5.png" 2> "$TMP/err"
check "a 64-input embedding with a 1024 model: failure (1)" [ $? -eq 1 -a "$(wc -l < "$TMP/err")" -eq 1 ]
check "  it names the size the model needs" grep -q "256x64x64" "$TMP/err"
"$BIN" eval --model "$TMP/m.pth" --data "sa1b:$TMP/w/val" --out "$TMP/ev.md" --quiet > /dev/null
check "eval on a 64-input model exits 0" [ $? -eq 0 ]
check "  with a table" grep -q "| val |" "$TMP/ev.md"
"$BIN" segment --everything --model "$TMP/m.pth" --image "$TMP/w/val/sa_1.jpg" --out "$TMP/amg" \
    --points-per-side 4 --pred-iou-thresh 0 --stability-score-thresh 0 --quiet
check "segment --everything on a 64-input model exits 0" [ $? -eq 0 ]
check "  with an SA-1B JSON" grep -q '"segmentation"' "$TMP/amg/sa_1.json"

# the ASAM pipeline on the 64-input model: PGD images, tuning on them, eval of both models,
# generate (tiny SD at 128 px, skip-gradient attack) -- each in the model's 64 frame
"$BIN" attack-pgd --model "$TMP/m.pth" --data "sa1b:$TMP/w/val" --out "$TMP/pgd" --iters 1 --quiet
check "attack-pgd on the 64-input model exits 0" [ $? -eq 0 -a -s "$TMP/pgd/sa_1.png" ]
"$BIN" tune --model "$TMP/m.pth" --data "adv:$TMP/pgd:$TMP/w/val" --out "$TMP/tuned" --epochs 1 \
    --batch 2 --points 256 --seed 2 2> "$TMP/err"
check "tune on its PGD images exits 0" [ $? -eq 0 -a -s "$TMP/tuned/sam_tuned.pth" ]
"$BIN" inspect "$TMP/tuned/sam_tuned.pth" > "$TMP/inspect_t"
check "  the tuned model keeps the 64 input (4x4 tokens)" grep -q "image_encoder.pos_embed.*1, 4, 4, 32" "$TMP/inspect_t"
"$BIN" eval --baseline "$TMP/m.pth" --model "$TMP/tuned/sam_tuned.pth" --data "val=sa1b:$TMP/w/val" \
    --json "$TMP/ev2.json" --quiet > /dev/null
check "eval of both exits 0" [ $? -eq 0 ]
check "  a result per model" [ "$(grep -o '"miou"' "$TMP/ev2.json" | wc -l)" -eq 2 ]
fixture sd_tiny/model.ckpt "$TMP/sd.ckpt"
fixture sd_tiny/control.pth "$TMP/control.pth"
"$BIN" generate --sd "$TMP/sd.ckpt" --controlnet "$TMP/control.pth" --sam "$TMP/m.pth" \
    --captions "$TMP/w/val/captions.jsonl" --data "sa1b:$TMP/w/val" --out "$TMP/gen" --size 128 \
    --steps 2 --null-steps 1 --iters 2 --limit 1 > /dev/null 2> "$TMP/err"
check "generate attacking the 64-input model exits 0" [ $? -eq 0 -a -s "$TMP/gen/adv/sa_1.jpg" ]
check "  its record holds the IoU of each iteration" grep -q '"miou"' "$TMP/gen/adv/sa_1.attack.json"

"$BIN" train-sam --data "$TMP/w/train" --out "$TMP/x.pth" --img-size 100 2> "$TMP/err"
check "train-sam --img-size 100: usage error (2)" [ $? -eq 2 ]
"$BIN" train-sam --data "$TMP/nothing" --out "$TMP/x.pth" --steps 1 2> "$TMP/err"
check "train-sam on a missing folder: failure (1)" [ $? -eq 1 ]
check "  one line naming the folder" [ "$(wc -l < "$TMP/err")" -eq 1 ] 
check "  it names the folder" grep -q "$TMP/nothing" "$TMP/err"
check "  no checkpoint" [ ! -f "$TMP/x.pth" ]
"$BIN" train-sam $T --out "$TMP/m.pth" --steps 6 --resume --seed 3 2> "$TMP/err"
check "resume with another --seed: failure (1) naming it" [ $? -eq 1 ] 
check "  it names --seed" grep -q -- "--seed" "$TMP/err"
exit $fail
