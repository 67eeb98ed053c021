# Sourced by the tests/cli_*.sh scripts, which CTest runs as `bash X.sh ASAM_BIN SRC_DIR`:
# sets BIN, SRC, the shared fixtures folder FIX, a temporary folder TMP (removed on exit), the
# failure flag `fail`, and the helpers below.
BIN=$1
SRC=$2
TMP=$(mktemp -d)
FIX=${ASAM_FIXTURES:-$SRC/../shared/fixtures}
trap 'rm -rf "$TMP"' EXIT
fail=0

check() { # check DESCRIPTION CONDITION...
    local what=$1
    shift
    if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}

# fixture REL DEST: the fixture file REL (e.g. sam_tiny/model.pth) from tests/data (plain or
# .gz) or from $ASAM_FIXTURES (default ../shared/fixtures), copied to DEST; skips the test
# (exit 77) when it is nowhere.
fixture() {
    local rel=$1 dest=$2 shared=$FIX
    if [ -f "$SRC/tests/data/$rel.gz" ]; then
        gzip -dc "$SRC/tests/data/$rel.gz" > "$dest"
    elif [ -f "$SRC/tests/data/$rel" ]; then
        cp "$SRC/tests/data/$rel" "$dest"
    elif [ -f "$shared/$rel" ]; then
        cp "$shared/$rel" "$dest"
    else
        echo "SKIP: $rel not found"
        exit 77
    fi
}

# pass / failm MESSAGE: one result line; failm marks the test failed.
pass() { echo "ok   $1"; }
failm() {
    echo "FAIL $1"
    fail=1
}
