/* Old internal names of the random SD checkpoint writer, now public in asam/sd_synth.h; kept
 * until src/cli uses those. */
#ifndef ASAM_SD_SYNTH_H
#define ASAM_SD_SYNTH_H

#include "asam/sd_synth.h"

typedef asam_sd_synth_unet_cfg sd_synth_unet_cfg;
typedef asam_sd_synth_vae_cfg sd_synth_vae_cfg;
#define sd_synth_unet_sd15 asam_sd_synth_unet_sd15
#define sd_synth_vae_sd15 asam_sd_synth_vae_sd15
#define sd_synth_write asam_sd_synth_write

#endif
