#!/usr/bin/env bash
# Times `smtp-plan validate` on 1,000 generated plans in one run and on one plan
# of 10,000 targets and 100 tests, against a baseline: parsing the same YAML with
# PyYAML's C loader (no checks at all). See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
bin=target/release/smtp-plan
python3 bench/gen.py many "$work/many" 1000
python3 bench/gen.py big "$work/big.yaml" 10000 100
runs=${RUNS:-5}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_it() { # prints wall seconds of one run of "$@"
  local s e
  s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
  echo "$e - $s" | bc -l
}
yaml_parse() {
  python3 -c 'import sys, yaml
L = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
for p in sys.argv[1:]:
    yaml.load(open(p), Loader=L)' "$@"
}

report() { # name, command...
  local name=$1; shift
  local t
  t=$(for _ in $(seq "$runs"); do time_it "$@"; done | median)
  printf '%-44s %8.3f s\n' "$name" "$t"
}

echo "median of $runs runs, $(nproc) cores"
report "smtp-plan validate: 1,000 plans" "$bin" validate "$work"/many/*.yaml
report "baseline PyYAML parse: 1,000 plans" yaml_parse "$work"/many/*.yaml
report "smtp-plan validate: 10,000 targets x 100 tests" "$bin" validate "$work/big.yaml"
report "baseline PyYAML parse: same plan" yaml_parse "$work/big.yaml"
