#!/usr/bin/env bash
# Shell checks: `lint` runs shellcheck on every shell script of the repository (ami/, sandbox/standins/,
# test/ami/ (fakes and bats files), scripts/*.sh, .ci/run) and on the bash of every step of the Image
# Builder components in ami/components; `bats` runs the readiness agent's bats suite (test/ami).
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
  lint_components
  echo "shellcheck: no findings"
}

# Image Builder's ExecuteBash runs a step's commands as one bash script, so each step becomes one file
# under $1, named <document>/<phase>/<step>.sh so findings point at the step. The synth-time markers
# (lib/golden-image.ts renderComponent) get stand-ins of the right shape; `@embed` lines sit inside
# heredocs, where they are data. The documents are YAML, so node (npm's, with the yaml package) reads them.
extract_component_steps() {
  local out=$1
  need node
  node - "$out" ami/components/*.yml <<'NODE'
const { mkdirSync, readFileSync, writeFileSync } = require('node:fs');
const { basename, join } = require('node:path');
const { parse } = require('yaml');
const [out, ...files] = process.argv.slice(2);
let count = 0;
for (const file of files) {
  const doc = parse(readFileSync(file, 'utf8'));
  for (const phase of doc.phases ?? []) {
    for (const step of phase.steps ?? []) {
      if (step.action !== 'ExecuteBash') continue;
      const commands = (step.inputs?.commands ?? []).map(String).join('\n');
      const script = commands
        .replaceAll('@agent-path@', '/usr/local/bin/understudy-readiness')
        .replace(/@sha256:[A-Za-z0-9._-]+@/g, '0'.repeat(64));
      const dir = join(out, basename(file), String(phase.name));
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `${step.name}.sh`), `#!/bin/bash\n${script}\n`);
      count += 1;
    }
  }
}
if (count === 0) throw new Error('no ExecuteBash step found in ami/components');
NODE
}

lint_components() {
  local tmp steps=() status=0
  tmp=$(mktemp -d)
  extract_component_steps "$tmp" || status=$?
  if ((status == 0)); then
    mapfile -d '' -t steps < <(cd "$tmp" && find . -type f -name '*.sh' -print0 | sort -z)
    echo "shellcheck: ${#steps[@]} component steps (ami/components/*.yml)"
    (cd "$tmp" && shellcheck --shell=bash "${steps[@]}") || status=$?
  fi
  rm -rf -- "$tmp"
  return "$status"
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
