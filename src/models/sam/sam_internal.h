/* Internals shared by the SAM source files. */
#ifndef ASAM_SAM_INTERNAL_H
#define ASAM_SAM_INTERNAL_H

#include "asam/sam.h"

/* The dense positional encoding as (256, 64, 64) and/or (4096, 256); either may be NULL. */
void sam_compute_dense_pe(const asam_sam *m, float *chw, float *hwc);

#endif
