/* Checkpoint reading and writing behind one interface.
 *
 * asam_checkpoint_open() recognises safetensors, torch.save zip archives (.pth/.ckpt/.bin,
 * zip64 too, read through a restricted unpickler that never executes anything) and rejects
 * the legacy non-zip torch format with a clear "unsupported" error. Files are mmap'ed;
 * tensor payloads are only touched when read.
 *
 * Names of torch.save checkpoints (the pickled object is flattened to named tensors):
 *  - The top-level object must be a dict (or OrderedDict).
 *  - Wrapper rule: while that dict holds no tensor directly and has a key "state_dict",
 *    "model_state_dict", "model" or "module" (checked in this order) whose value is a dict,
 *    the tensors are taken from inside it WITHOUT the wrapper prefix. So a CompVis .ckpt
 *    {"state_dict": {...}, "global_step": N} yields "model.diffusion_model...." names.
 *  - Within the chosen dict, tensor values keep their key; nested dicts are flattened with
 *    '.'-joined keys ({"unet": {"conv.weight": t}} -> "unet.conv.weight"); int keys are
 *    written in decimal; every other value (numbers, lists, optimizer state objects, unknown
 *    pickled classes) is ignored.
 *  - Tensor names must be unique.
 * Unknown pickled classes become opaque placeholders (never imported or called), so checkpoints
 * holding e.g. argparse.Namespace or numpy scalars still load their tensors. */
#ifndef ASAM_CHECKPOINT_H
#define ASAM_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ASAM_DT_F32,
    ASAM_DT_F16,
    ASAM_DT_BF16,
    ASAM_DT_F64,
    ASAM_DT_I64,
    ASAM_DT_I32,
    ASAM_DT_I16,
    ASAM_DT_I8,
    ASAM_DT_U8,
    ASAM_DT_BOOL,
} asam_dtype;

#define ASAM_CKPT_MAX_DIMS 8

typedef struct {
    const char *name; /* full key, e.g. "image_encoder.pos_embed" */
    asam_dtype dtype;
    int ndim; /* 0 for scalars */
    int64_t shape[ASAM_CKPT_MAX_DIMS];
    int64_t stride[ASAM_CKPT_MAX_DIMS]; /* in elements; contiguous for safetensors */
    int64_t numel;
    const uint8_t *data; /* first element (already offset), inside the mapping */
} asam_ckpt_tensor;

typedef struct asam_checkpoint asam_checkpoint;

/* Returns 0 and sets *out, or -1 with asam_last_error() = "PATH: problem". */
int asam_checkpoint_open(const char *path, asam_checkpoint **out);
/* Same from a memory buffer, which must outlive the checkpoint (tensor data points into it);
 * name is used in error messages. */
int asam_checkpoint_open_memory(const void *data, size_t n, const char *name,
                                asam_checkpoint **out);
void asam_checkpoint_close(asam_checkpoint *ck);
const char *asam_checkpoint_path(const asam_checkpoint *ck);
/* "safetensors", "torch-zip" or "memory" */
const char *asam_checkpoint_format(const asam_checkpoint *ck);
size_t asam_checkpoint_count(const asam_checkpoint *ck);
const asam_ckpt_tensor *asam_checkpoint_get(const asam_checkpoint *ck, size_t i);
/* NULL when absent (no error recorded). */
const asam_ckpt_tensor *asam_checkpoint_find(const asam_checkpoint *ck, const char *name);
/* Metadata string (safetensors __metadata__), NULL when absent. */
const char *asam_checkpoint_metadata(const asam_checkpoint *ck, const char *key);

/* Copy a tensor into dst (numel floats), converting any float/int dtype to f32 and
 * gathering strided torch storages. */
int asam_ckpt_read_f32(const asam_checkpoint *ck, const asam_ckpt_tensor *t, float *dst);
/* Same for integer tensors into int64 (I64/I32/I16/I8/U8/BOOL; floats are rejected). */
int asam_ckpt_read_i64(const asam_checkpoint *ck, const asam_ckpt_tensor *t, int64_t *dst);
/* Raw contiguous bytes (numel * dtype size) for U8/BOOL etc. */
int asam_ckpt_read_raw(const asam_checkpoint *ck, const asam_ckpt_tensor *t, void *dst);

size_t asam_dtype_size(asam_dtype dt);
const char *asam_dtype_name(asam_dtype dt); /* safetensors spelling: "F32", "BF16", ... */

/* Safetensors writer: tensors are written in the given order of names sorted bytewise,
 * header padded to 8 bytes, atomically (temp file, fsync, rename). data is contiguous, or NULL
 * for a tensor of zeros written as a hole (a sparse file: shape-only test checkpoints). */
typedef struct {
    const char *name;
    asam_dtype dtype;
    int ndim;
    int64_t shape[ASAM_CKPT_MAX_DIMS];
    const void *data;
} asam_st_entry;
/* A checkpoint over tensors already in memory (contiguous, any dtype), which must outlive it:
 * what model loaders bind from when the weights are built in memory (format "memory"). */
int asam_checkpoint_from_entries(const asam_st_entry *entries, size_t n, const char *name,
                                 asam_checkpoint **out);
/* metadata: NULL or n_meta pairs of (key, value) strings. */
int asam_safetensors_write(const char *path, const asam_st_entry *entries, size_t n,
                           const char *const *metadata, size_t n_meta);

/* torch.save-compatible writer: a zip archive (prefix "archive", stored entries, 64-byte
 * aligned payloads, zip64 when needed) whose data.pkl is a collections.OrderedDict of tensors
 * in the given order, each rebuilt by torch._utils._rebuild_tensor_v2 from its own storage.
 * torch.load (also weights_only=True) and Sam.load_state_dict accept it. Atomic. */
int asam_torch_save_write(const char *path, const asam_st_entry *entries, size_t n);
/* Same with the state dict one level down, {key: OrderedDict} (EfficientSAM's official
 * layout is {"model": state_dict}); the reader unwraps it again (see the wrapper rule). */
int asam_torch_save_write_wrapped(const char *path, const char *key, const asam_st_entry *entries,
                                  size_t n);
/* Either of the above (wrap_key NULL: not wrapped) with metadata: n_meta (key, value) string
 * pairs kept in the archive's asam_metadata.json record, which torch.load ignores and
 * asam_checkpoint_metadata reads back, as safetensors' __metadata__. */
int asam_torch_save_write_meta(const char *path, const char *wrap_key, const asam_st_entry *entries,
                               size_t n, const char *const *metadata, size_t n_meta);

/* Rewrite a checkpoint with every floating-point tensor stored as float_dtype (F32, F16 or
 * BF16; integer tensors copied unchanged), same names, order and shapes: safetensors, or a
 * torch.save archive for .pth/.pt/.bin/.ckpt (unwrapped). The output's "provenance" metadata
 * records the conversion and the input's hash; the input's own provenance is kept as
 * "source_provenance". Atomic. Returns 0, or -1 with asam_last_error() naming the file. */
int asam_checkpoint_convert(const char *in, const char *out, asam_dtype float_dtype);

#ifdef __cplusplus
}
#endif
#endif
