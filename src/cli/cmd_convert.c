/* asam convert IN OUT [--dtype f16|bf16|f32]: a checkpoint's floating-point tensors stored in
 * another precision (how the trained miniature models are committed: F16), names, shapes and
 * integer tensors unchanged; provenance records the conversion. */
#include "cli/cli_util.h"
#include "cli/options.h"
#include "asam/checkpoint.h"
#include "asam/error.h"

#include <stdio.h>

int cmd_convert(int argc, char **argv) {
    const char *files[3];
    cli_list file_list = {files, 0, 2};
    int dtype = 0;
    const cli_opt opts[] = {
        {"--dtype", OPT_CHOICE, &dtype, "f16|bf16|f32", "type of every floating-point tensor",
         .choices = "f16|bf16|f32"},
    };
    const cli_spec spec = {"convert",
                           "IN OUT [--dtype f16|bf16|f32]",
                           "Rewrite a checkpoint (safetensors or torch.save zip) with its float\n"
                           "tensors in another precision. OUT is safetensors, or a torch.save zip\n"
                           "when it ends in .pth/.pt/.bin/.ckpt; written atomically.",
                           opts,
                           CLI_NOPTS(opts),
                           &file_list,
                           NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc) return cli_exit_code(rc);
    if (file_list.n != 2) {
        cli_help(&spec, stderr);
        return CLI_USAGE;
    }
    static const asam_dtype types[] = {ASAM_DT_F16, ASAM_DT_BF16, ASAM_DT_F32};
    if (asam_checkpoint_convert(files[0], files[1], types[dtype]))
        return cli_fail("convert", "%s", asam_last_error());
    printf("convert: %s -> %s (%s floats)\n", files[0], files[1], asam_dtype_name(types[dtype]));
    return 0;
}
