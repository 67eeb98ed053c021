"""The ASAM pipeline stages (invert, attack, generate, tune, eval, ...) as Python functions
taking the CLI's options as keyword arguments:

    asam.tune(model="sam_vit_b.pth", data="adv:out/gen:sa1b", out="tuned", epochs=4)

runs `asam tune --model sam_vit_b.pth --data adv:out/gen:sa1b --out tuned --epochs 4`.

Why the program and not library structs: the stages are minutes-to-hours jobs whose options,
defaults, validation, resumable state files and progress lines live in the CLI; driving the
installed `asam` program keeps exactly one definition of every option (whatever the CLI
accepts, these functions accept, documented by `asam <stage> --help`), keeps a crash or an
out-of-memory kill in a child process, and needs no second binding of the pipeline's
configuration structs. Keyword rules: `foo_bar=v` -> `--foo-bar v`; True -> the bare flag;
False/None -> omitted; a list or tuple -> the option repeated once per item. Progress lines go
to this process's stderr as they come; the program's stdout is returned as a string. A
failure raises AsamError carrying the program's one-line message (and .returncode: 2 for a
usage error, else 1). The program runs with --threads set by asam.set_threads().

The program is <package>/bin/asam, or $ASAM_BINARY."""

import os
import subprocess
import sys
import threading

from ._lib import AsamError

_here = os.path.dirname(os.path.abspath(__file__))
_threads = None


def _binary():
    return os.environ.get("ASAM_BINARY") or os.path.join(_here, "bin", "asam")


def _args(kwargs):
    out = []
    for key, value in kwargs.items():
        flag = "--" + key.rstrip("_").replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            for v in value:
                out += [flag, os.fspath(v) if isinstance(v, os.PathLike) else str(v)]
        else:
            out += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return out


def run(command, *positional, **options):
    """Run `asam COMMAND [positional...] [--options...]`; returns its stdout."""
    argv = [_binary()]
    if _threads:
        argv += ["--threads", str(_threads)]
    argv += [command] + [os.fspath(p) for p in positional] + _args(options)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    last = []

    def relay():  # stream progress lines through, remember the last one for the error
        for raw in iter(proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace")
            sys.stderr.write(line)
            if line.strip():
                last[:] = [line.strip()]

    t = threading.Thread(target=relay, daemon=True)
    t.start()
    out = proc.stdout.read().decode("utf-8", "replace")
    rc = proc.wait()
    t.join()
    proc.stdout.close()
    proc.stderr.close()
    if rc == 0:
        return out
    err = AsamError(last[0] if last else "asam %s: exit status %d" % (command, rc))
    err.returncode = rc
    raise err


def _stage(name, doc):
    def stage(**options):
        return run(name.replace("_", "-"), **options)

    stage.__name__ = name
    stage.__doc__ = doc + " Options as `asam %s --help`." % name.replace("_", "-")
    return stage


invert = _stage("invert", "DDIM + null-text inversion of SA-1B images.")
attack = _stage("attack", "Adversarial latent attack against SAM.")
generate = _stage("generate", "Invert + attack over a dataset (resumable, --shard i/n).")
tune = _stage("tune", "Tune SAM's output tokens on (adversarial) data.")
eval = _stage("eval", "Evaluate SAM checkpoints (mIoU, boundary IoU).")  # noqa: A001 (CLI name)
train_controlnet = _stage("train_controlnet", "Train the mask-to-image ControlNet.")
attack_pgd = _stage("attack_pgd", "Pixel-space PGD baseline dataset.")
demo = _stage("demo", "The ASAM pipeline end to end on the built-in synthetic default.")
segment = _stage("segment", "SAM masks from box/point/mask prompts, written to files.")
