#!/usr/bin/env bash
# Shell checks: `lint` runs shellcheck on every shell script of the repository (ami/, sandbox/standins/,
# test/ami/ (fakes and bats files), scripts/*.sh, .ci/run); `bats` runs the readiness agent's bats suite (test/ami).
# With no argument, both. shellcheck and bats come from the Debian packages (.ci/run installs them):
# the npm shellcheck wrapper downloads a binary at install time, which CI cannot do.
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
  command -v "$1" >/dev/null || {
    echo "$1 is not installed: apt-get install $1" >&2
    exit 127
  }
}

# A file is a shell script when it is named *.sh, *.bash or *.bats or starts with a sh/bash shebang.
is_shell() {
  local first
  case "$1" in *.sh | *.bash | *.bats) return 0 ;; esac
  IFS= read -r first <"$1" || true
  [[ $first =~ ^\#!.*[/[:space:]](ba)?sh([[:space:]]|$) ]]
}

lint() {
  need shellcheck
  local files=() file
  while IFS= read -r -d '' file; do
    if is_shell "$file"; then files+=("$file"); fi
  done < <({
    find ami sandbox/standins test/ami/fakes -type f -print0
    find scripts -maxdepth 1 -type f -name '*.sh' -print0
    find test/ami -maxdepth 1 -type f -name '*.bats' -print0
  } | sort -z)
  files+=(.ci/run)
  echo "shellcheck $(shellcheck --version | sed -n 's/^version: //p'): ${#files[@]} scripts"
  shellcheck --external-sources "${files[@]}"
  echo "shellcheck: no findings"
}

run_bats() {
  need bats
  need jq
  bats test/ami
}

case "${1:-all}" in
  lint) lint ;;
  bats) run_bats ;;
  all) lint && run_bats ;;
  *)
    echo "usage: scripts/test-shell.sh [lint|bats|all]" >&2
    exit 2
    ;;
esac
