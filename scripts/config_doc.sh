#!/usr/bin/env bash
# Prints docs/configuration.md from the binaries' own --help (the one table
# in common/config.c), so the reference cannot drift from the code.
#   scripts/config_doc.sh > docs/configuration.md
set -euo pipefail
bin=${LJ_BIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/build}
cat <<'HEAD'
# Configuration reference

Every setting is both an environment variable and a flag (`--name value` or
`--name=value`; flags win over the environment). Every default works for a
local run. Generated from `--help` by `scripts/config_doc.sh`; a test fails
when this page and `--help` disagree.
HEAD
for prog in ljwx-producer ljwx-consumer ljwx-import ljwx-notifier; do
    printf '\n## %s\n\n```\n' "$prog"
    "$bin/$prog" --help
    printf '```\n'
done
