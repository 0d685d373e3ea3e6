#!/usr/bin/env bash
# Sessions per second of `smtp-plan run`: 1,000 (test, target) pairs of
# EHLO, MAIL, RCPT, DATA, QUIT at --concurrency 1, 10 and 100, against
#   - the built-in responder (`smtp-plan serve`, persona exchange-2013), and
#   - Postfix's smtp-sink (if installed);
# with Postfix's smtp-source (a C load generator) as the baseline against the same
# servers. Medians of RUNS runs (default 5). See bench/README.md.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

runs=${RUNS:-5}
sessions=1000
levels=(1 10 100)
limit=${RUN_TIMEOUT:-120} # seconds one timed command may take before it counts as failed
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer" >&2; exit 2; }

work=$(mktemp -d)
pids=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local p
  for p in ${pids[@]+"${pids[@]}"}; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools -------------------------------------------------------------------
PATH=$PATH:/usr/sbin:/sbin
if ! command -v smtp-source >/dev/null; then
  echo "installing postfix (for smtp-source and smtp-sink)..." >&2
  [[ $(id -u) == 0 ]] || { echo "smtp-source missing: install the postfix package (needs root)" >&2; exit 1; }
  echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >"$work/apt.log" 2>&1; then
    apt-get update -q >>"$work/apt.log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >>"$work/apt.log" 2>&1 ||
      { cat "$work/apt.log" >&2; exit 1; }
  fi
fi
have_sink=0
command -v smtp-sink >/dev/null && have_sink=1

cargo build --release --quiet
bin=$PWD/target/release/smtp-plan

# --- servers -----------------------------------------------------------------
probe() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# start_server LOG CMD... : starts CMD (every @PORT@ in it replaced by a free port
# below the ephemeral range) in the background; sets server_port and server_pid.
start_server() {
  local log=$1 port pid i
  shift
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 12000))
    probe "$port" && continue
    "${@//@PORT@/$port}" >"$log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for i in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      if probe "$port"; then server_port=$port server_pid=$pid; return 0; fi
      sleep 0.05
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  echo "could not start: $*" >&2
  cat "$log" >&2
  exit 1
}
check_alive() { # pid log name
  kill -0 "$1" 2>/dev/null || { echo "$3 died; its log:" >&2; cat "$2" >&2; exit 1; }
}

start_server "$work/responder.log" "$bin" serve --listen 127.0.0.1:@PORT@
resp_port=$server_port resp_pid=$server_pid
if ((have_sink)); then
  sink_user=()
  [[ $(id -u) == 0 ]] && sink_user=(-u nobody)
  start_server "$work/sink.log" smtp-sink ${sink_user[@]+"${sink_user[@]}"} -m 1000 127.0.0.1:@PORT@ 1024
  sink_port=$server_port sink_pid=$server_pid
fi

# --- the plan: 1,000 tests, one host target (its port is --var port=...) -----
plan=$work/sessions.yaml
{
  cat <<'EOF'
version: 1
name: sessions benchmark
vars:
  port: "2525"
settings:
  helo: contoso.com
  per_host: 1000
  timeouts: { connect: 10s, reply: 30s, data: 30s, session: 1m }
targets:
  - host: "127.0.0.1:${port}"
tests:
EOF
  for ((i = 1; i <= sessions; i++)); do
    cat <<EOF
  - name: delivery $i
    steps:
      - ehlo: contoso.com
      - mail_from: chris@contoso.com
      - rcpt_to: kate@fabrikam.com
      - data:
          headers: { Subject: "bench $i" }
          body: "Test message $i\n"
      - quit: {}
EOF
  done
} >"$plan"
"$bin" validate --var "port=$resp_port" "$plan" >/dev/null

# --- timing ------------------------------------------------------------------
out=$work/out.txt
# timed CMD... : runs CMD with output to $out; sets elapsed (seconds) and status
timed() {
  local s e
  s=$EPOCHREALTIME
  set +e
  timeout "$limit" "$@" >"$out" 2>&1
  status=$?
  set -e
  e=$EPOCHREALTIME
  elapsed=$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.6f", e - s }')
}
fail() { # message
  echo "FAILED: $1 (exit status $status)" >&2
  echo "--- output:" >&2
  tail -n 40 "$out" >&2
  exit 1
}
plan_run() { # port concurrency
  local cmd=("$bin" run --var "port=$1" --concurrency "$2" "$plan")
  timed "${cmd[@]}"
  if ((status != 0)) || ! grep -q "^$sessions passed, 0 failed, 0 errored, 0 skipped" "$out"; then
    fail "${cmd[*]}"
  fi
}
source_run() { # port concurrency
  local cmd=(smtp-source -s "$2" -m "$sessions" -c -M contoso.com -S bench -l 16
    -f chris@contoso.com -t kate@fabrikam.com "127.0.0.1:$1")
  timed "${cmd[@]}"
  local last
  last=$(tr '\r' '\n' <"$out" | grep -E '^[0-9]+$' | tail -n 1 || true)
  if ((status != 0)) || [[ $last != "$sessions" ]] || grep -qE 'warning|fatal' "$out"; then
    fail "${cmd[*]} (last counter: ${last:-none})"
  fi
}

# Keys: plan-resp, source-resp, plan-sink, source-sink; values: space-separated seconds.
declare -A samples
measure() { # key port concurrency fn
  "$4" "$2" "$3"
  samples[$1,$3]+="$elapsed "
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
rate() { awk -v n="$sessions" -v t="$1" 'BEGIN { printf "%.0f", n / t }'; }

# Warm-up (not counted): page cache, first connections.
plan_run "$resp_port" 10
source_run "$resp_port" 10
((have_sink)) && plan_run "$sink_port" 10

echo "$sessions sessions per run, median of $runs runs, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)" >&2
# The fixed cost inside every smtp-plan run: loading and validating the plan.
for ((r = 1; r <= runs; r++)); do
  timed "$bin" validate --var "port=$resp_port" "$plan"
  ((status == 0)) || fail "smtp-plan validate $plan"
  samples[validate,0]+="$elapsed "
done
for c in "${levels[@]}"; do
  for ((r = 1; r <= runs; r++)); do
    printf '\rconcurrency %-3s run %d/%d' "$c" "$r" "$runs" >&2
    measure plan-resp "$resp_port" "$c" plan_run
    measure source-resp "$resp_port" "$c" source_run
    check_alive "$resp_pid" "$work/responder.log" "smtp-plan serve"
    if ((have_sink)); then
      measure plan-sink "$sink_port" "$c" plan_run
      measure source-sink "$sink_port" "$c" source_run
      check_alive "$sink_pid" "$work/sink.log" smtp-sink
    fi
  done
done
printf '\r%40s\r' '' >&2

# --- report ------------------------------------------------------------------
echo "sessions/s ($sessions sessions per run, median of $runs runs, $(nproc) cores)"
if ((have_sink)); then
  printf '%-11s | %-38s | %-38s\n' "" "vs smtp-plan serve (exchange-2013)" "vs smtp-sink"
  printf '%-11s | %11s %13s %12s | %11s %13s %12s\n' concurrency smtp-plan smtp-source ratio smtp-plan smtp-source ratio
else
  printf '%-11s | %-38s\n' "" "vs smtp-plan serve (exchange-2013)"
  printf '%-11s | %11s %13s %12s\n' concurrency smtp-plan smtp-source ratio
fi
for c in "${levels[@]}"; do
  p=$(rate "$(median <<<"${samples[plan-resp,$c]}")")
  s=$(rate "$(median <<<"${samples[source-resp,$c]}")")
  line=$(printf '%-11s | %11s %13s %12s' "$c" "$p" "$s" "$(awk -v a="$p" -v b="$s" 'BEGIN { printf "%.2f", a / b }')")
  if ((have_sink)); then
    p=$(rate "$(median <<<"${samples[plan-sink,$c]}")")
    s=$(rate "$(median <<<"${samples[source-sink,$c]}")")
    line+=$(printf ' | %11s %13s %12s' "$p" "$s" "$(awk -v a="$p" -v b="$s" 'BEGIN { printf "%.2f", a / b }')")
  fi
  echo "$line"
done
echo "smtp-plan validate of the same plan (part of every smtp-plan run): $(median <<<"${samples[validate,0]}") s"
echo
echo "wall seconds of each run:"
for key in plan-resp source-resp plan-sink source-sink; do
  for c in "${levels[@]}"; do
    [[ -n ${samples[$key,$c]:-} ]] && printf '  %-12s c=%-3s %s\n' "$key" "$c" "${samples[$key,$c]}"
  done
done
exit 0
