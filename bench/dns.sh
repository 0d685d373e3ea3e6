#!/usr/bin/env bash
# Domains per second of `smtp-plan mx`: the MX hosts and their addresses of 10,000
# domains, each with two MX hosts of its own, served by a private NSD on loopback;
# with `dig` as the baseline doing the same lookups (MX, then A and AAAA of every
# MX host it got), driven by `xargs -P` at several parallelisms and batch sizes, and
# as one sequential `dig -f` process. Optionally (SHARED=1, the default) the same for
# 10,000 domains that share two MX hosts, to show the resolver's cache.
# Medians of RUNS runs (default 3), runs interleaved. See bench/README.md.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

runs=${RUNS:-3}
n=${DOMAINS:-10000}               # domains per variant
read -r -a parallel <<<"${PARALLEL:-4 16 64 128}" # xargs -P values for dig
read -r -a batches <<<"${BATCHES:-50 500}"        # queries per dig process (xargs -L)
shared=${SHARED:-1}               # also run the shared-MX-host variant
limit=${RUN_TIMEOUT:-120}         # seconds one timed command may take
max_seconds=${MAX_SECONDS:-900}   # the whole script, build included
rrl=${NSD_RRL:-off}               # `default` keeps NSD's response rate limiting (see README)
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer" >&2; exit 2; }
if ! [[ $n =~ ^[1-9][0-9]*$ ]] || ((n > 60000)); then echo "DOMAINS must be 1..60000" >&2; exit 2; fi
# NOFILE=1024 runs smtp-plan with that open-file limit (see README: it fails then).
[[ -n ${NOFILE:-} ]] && ulimit -n "$NOFILE"

work=$(mktemp -d)
nsd_pid=
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  if [[ -n $nsd_pid ]]; then
    kill -TERM -- "-$nsd_pid" 2>/dev/null || kill -TERM "$nsd_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$nsd_pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL -- "-$nsd_pid" 2>/dev/null || true
    wait "$nsd_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools -------------------------------------------------------------------
PATH=$PATH:/usr/sbin:/sbin
need=()
command -v nsd >/dev/null || need+=(nsd)
command -v dig >/dev/null || need+=(dnsutils)
command -v jq >/dev/null || need+=(jq)
command -v timeout >/dev/null || need+=(coreutils)
if ((${#need[@]})); then
  [[ $(id -u) == 0 ]] || { echo "missing: ${need[*]} (Debian packages; needs root to install)" >&2; exit 1; }
  echo "installing ${need[*]}..." >&2
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >"$work/apt.log" 2>&1; then
    apt-get update -q >>"$work/apt.log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >>"$work/apt.log" 2>&1 ||
      { cat "$work/apt.log" >&2; exit 1; }
  fi
fi

cargo build --release --quiet
bin=$PWD/target/release/smtp-plan

# --- the zone ----------------------------------------------------------------
# dI.test: MX 10 mx1.dI.test, MX 20 mx2.dI.test; mxK.dI.test A 127.(I/256).(I%256).K
# sI.test: MX 10 mx1.shared.test, MX 20 mx2.shared.test (A 127.255.255.1 and .2)
# No AAAA records: every AAAA question gets NODATA.
serial=$((RANDOM * 32768 + RANDOM)) # tells our NSD from anything else on the port
awk -v n="$n" -v serial="$serial" 'BEGIN {
  print "$TTL 300"
  printf "test. IN SOA ns.test. hostmaster.test. %d 3600 600 86400 300\n", serial
  print "test. IN NS ns.test."
  print "ns.test. IN A 127.0.0.1"
  print "mx1.shared.test. IN A 127.255.255.1"
  print "mx2.shared.test. IN A 127.255.255.2"
  for (i = 0; i < n; i++) {
    x = int(i / 256) % 256; y = i % 256
    printf "d%d.test. IN MX 10 mx1.d%d.test.\n", i, i
    printf "d%d.test. IN MX 20 mx2.d%d.test.\n", i, i
    printf "mx1.d%d.test. IN A 127.%d.%d.1\n", i, x, y
    printf "mx2.d%d.test. IN A 127.%d.%d.2\n", i, x, y
    printf "s%d.test. IN MX 10 mx1.shared.test.\n", i
    printf "s%d.test. IN MX 20 mx2.shared.test.\n", i
  }
}' >"$work/test.zone"

# --- NSD on a free loopback port (as tests/integration/nsd.rs starts it) ------
write_conf() { # port
  local rrl_lines=""
  # NSD's response rate limiting (on by default: 200 answers/s per /24, all NODATA
  # answers of a zone in one bucket) drops or truncates most AAAA answers here.
  [[ $rrl == default ]] || rrl_lines=$'    rrl-ratelimit: 0\n    rrl-whitelist-ratelimit: 0\n'
  cat >"$work/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1
    port: $1
    do-ip6: no
    server-count: 1
    username: ""
    chroot: ""
    database: ""
    zonesdir: "$work"
    zonelistfile: "$work/zone.list"
    pidfile: "$work/nsd.pid"
    xfrdfile: "$work/xfrd.state"
    xfrdir: "$work"
    logfile: "$work/nsd.log"
    verbosity: 1
${rrl_lines}remote-control:
    control-enable: no
zone:
    name: "test."
    zonefile: "test.zone"
EOF
}
port_busy() { # port: bound by anything, UDP or TCP?
  command -v ss >/dev/null || return 1
  [[ -n $(ss -Hlnu "sport = :$1") || -n $(ss -Hlnt "sport = :$1") ]]
}
port=
for _ in 1 2 3 4 5; do
  p=$((20000 + RANDOM % 12000))
  port_busy "$p" && continue
  write_conf "$p"
  rm -f "$work/nsd.log"
  setsid nsd -d -c "$work/nsd.conf" >"$work/nsd.stderr" 2>&1 &
  nsd_pid=$!
  for _ in $(seq 200); do # 10 s
    kill -0 "$nsd_pid" 2>/dev/null || break
    if [[ $(dig @127.0.0.1 -p "$p" +time=1 +tries=1 +short test. SOA 2>/dev/null) == *" $serial "* ]]; then
      port=$p
      break 2
    fi
    sleep 0.05
  done
  kill -TERM -- "-$nsd_pid" 2>/dev/null || true
  wait "$nsd_pid" 2>/dev/null || true
  nsd_pid=
done
[[ -n $port ]] || { echo "NSD did not start:" >&2; cat "$work/nsd.stderr" "$work/nsd.log" >&2 2>/dev/null; exit 1; }
server=127.0.0.1:$port

# NSD's query counters (SIGUSR1 logs its cumulative BIND8-style statistics):
# prints "A MX AAAA total tcp", or nothing if this NSD has no statistics.
nsd_counts() {
  local before after
  before=$(grep -c 'XSTATS' "$work/nsd.log" || true)
  kill -USR1 "$nsd_pid"
  for _ in $(seq 100); do
    after=$(grep -c 'XSTATS' "$work/nsd.log" || true)
    ((after > before)) && break
    sleep 0.02
  done
  ((after > before)) || return 0
  { grep 'NSTATS' "$work/nsd.log" | tail -n 1; grep 'XSTATS' "$work/nsd.log" | tail -n 1; } |
    awk '{ for (i = 1; i <= NF; i++) if (split($i, kv, "=") == 2) v[kv[1]] = kv[2] }
         END { printf "%d %d %d %d %d\n", v["A"], v["MX"], v["AAAA"], v["RQ"], v["RTCP"] }'
}
declare -A queries # variant,tool -> "MX x, A y, AAAA z, total t per domain; TCP k"
count_queries() { # key before after
  [[ -n $2 && -n $3 ]] || { queries[$1]="n/a (NSD without statistics)"; return; }
  queries[$1]=$(awk -v n="$n" -v b="$2" -v a="$3" 'BEGIN {
    split(b, x, " "); split(a, y, " ")
    printf "MX %.2f, A %.2f, AAAA %.2f; total %.2f per domain (%d queries, %d over TCP)",
      (y[2] - x[2]) / n, (y[1] - x[1]) / n, (y[3] - x[3]) / n, (y[4] - x[4]) / n, y[4] - x[4], y[5] - x[5] }')
}

# --- the commands ------------------------------------------------------------
mapfile -t d_domains < <(seq -f 'd%.0f.test' 0 $((n - 1)))
mapfile -t s_domains < <(seq -f 's%.0f.test' 0 $((n - 1)))
printf '%s MX\n' "${d_domains[@]}" >"$work/d.mx"
printf '%s MX\n' "${s_domains[@]}" >"$work/s.mx"

out=$work/out
err=$work/err
status=0 elapsed=0
timed() { # CMD... : runs CMD (stdout to $out, stderr to $err); sets elapsed and status
  local s e
  if ((SECONDS > max_seconds)); then
    echo "FAILED: over MAX_SECONDS=$max_seconds; stopping" >&2
    exit 1
  fi
  s=$EPOCHREALTIME
  set +e
  timeout "$limit" "$@" >"$out" 2>"$err"
  status=$?
  set -e
  e=$EPOCHREALTIME
  elapsed=$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.6f", e - s }')
}
fail() { # message
  echo "FAILED: $1 (exit status $status, ${elapsed}s)" >&2
  echo "--- stderr:" >&2
  tail -n 20 "$err" >&2
  exit 1
}

plan_mx() { # variant (d or s)
  local -n list=${1}_domains
  timed "$bin" mx --json --resolver "$server" "${list[@]}"
  ((status == 0)) || fail "smtp-plan mx --json --resolver $server ${list[0]} ... ${list[-1]}"
}

# The dig driver: phase 1 asks every domain's MX; the MX hosts of the answers (each
# once: sort -u stands for a cache) are phase 2's A and AAAA questions. PAR=seq is
# one `dig -f` process per phase; otherwise xargs runs PAR dig processes at a time,
# BATCH questions each, each process writing its own file.
cat >"$work/dig-mx.sh" <<'EOF'
set -euo pipefail
server=$1 port=$2 par=$3 batch=$4 questions=$5 dir=$6
rm -rf "$dir"; mkdir -p "$dir"
phase() { # questions-file output-prefix
  if [[ $par == seq ]]; then
    dig @"$server" -p "$port" +noall +answer -f "$1" >"$2.seq"
  else
    xargs -P "$par" -L "$batch" sh -c 'exec dig "$@" >>"$0.$$"' "$2" \
      @"$server" -p "$port" +noall +answer <"$1"
  fi
}
phase "$questions" "$dir/mx"
cat "$dir"/mx.* | awk '$4 == "MX" { print $6 " A"; print $6 " AAAA" }' | sort -u >"$dir/hosts"
phase "$dir/hosts" "$dir/addr"
EOF
dig_mx() { # variant par batch [key for dig_notes]
  local key=${4:-$2/$3}
  [[ $2 == seq ]] && key=${4:-seq}
  timed bash "$work/dig-mx.sh" 127.0.0.1 "$port" "$2" "$3" "$work/$1.mx" "$work/dig"
  local what="dig ${2}/${3} on $1"
  ((status == 0)) || fail "$what"
  # Every answer must be there: 2 MX per domain, and an A for every MX host.
  local mx a aaaa hosts want_hosts
  mx=$(cat "$work/dig"/mx.* | awk '$4 == "MX"' | wc -l)
  a=$(cat "$work/dig"/addr.* | awk '$4 == "A"' | wc -l)
  aaaa=$(cat "$work/dig"/addr.* | awk '$4 == "AAAA"' | wc -l)
  hosts=$(wc -l <"$work/dig/hosts")
  want_hosts=$((4 * n))
  [[ $1 == s ]] && want_hosts=4
  # dig's own complaints (`;; communications error ...: timed out`, then a retry 5 s
  # later; `;; Warning: ID mismatch`): counted and reported, fatal only when an answer
  # is missing.
  local notes
  notes=$(cat "$work/dig"/mx.* "$work/dig"/addr.* | grep -c '^;;' || true)
  dig_notes[$1,$key]=$((${dig_notes[$1,$key]:-0} + notes))
  if ((mx != 2 * n || hosts != want_hosts || a != want_hosts / 2 || aaaa != 0)); then
    grep -h '^;;' "$work/dig"/mx.* "$work/dig"/addr.* | sed -E 's/ID [0-9]+/ID N/g' | sort | uniq -c | head >&2 || true
    fail "$what: got $mx MX answers (want $((2 * n))), $hosts host questions (want $want_hosts), $a A answers, $aaaa AAAA"
  fi
}
declare -A dig_notes # variant,par/batch -> number of `;;` lines (timeouts, ID mismatches)

# --- validation runs (untimed; they also warm up and count queries) ----------
validate_plan() { # variant
  local list=${1}_domains
  local -n names=$list
  local before after
  before=$(nsd_counts)
  set +e
  timeout "$limit" "$bin" mx --json --resolver "$server" "${names[@]}" >"$work/$1.json" 2>"$err"
  status=$?
  set -e
  after=$(nsd_counts)
  count_queries "$1,smtp-plan" "$before" "$after"
  local check
  check=$(jq --argjson n "$n" --arg v "$1" -r '
    def addr($i; $k): if $v == "d" then "127.\(($i / 256 | floor) % 256).\($i % 256).\($k)"
                      else "127.255.255.\($k)" end;
    def host($i; $k): if $v == "d" then "mx\($k).d\($i).test" else "mx\($k).shared.test" end;
    def want($i): [1, 2] | map({preference: (. * 10), host: host($i; .), addresses: [addr($i; .)]});
    .domains as $d
    | [range(0; $n) | select(($d[.] // {}) as $r
        | ($r.domain != "\($v)\(.).test" or $r.status != "mx" or $r.hosts != want(.)))] as $bad
    | if ($d | length) == $n and ($bad | length) == 0 then "ok"
      else "\($d | length) domains in the report (want \($n)); \($bad | length) wrong, e.g.:\n"
        + ([$bad[:3][] | $d[.] | tojson] | join("\n"))
        + "\nstatuses: " + ($d | group_by(.status) | map("\(.[0].status) \(length)") | join(", "))
      end' "$work/$1.json" 2>&1) || true
  if [[ $check != ok || $status != 0 ]]; then
    echo "FAILED: smtp-plan mx --json --resolver $server ${names[0]} ... ${names[-1]}: exit status $status" >&2
    echo "$check" >&2
    jq -r '.domains[] | select(.status != "mx") | .message // empty' "$work/$1.json" 2>/dev/null |
      sed -E 's/[ds][0-9]+\.test/X.test/g' | sort | uniq -c | sort -rn | head -5 >&2 || true
    tail -n 5 "$err" >&2
    exit 1
  fi
}
validate_dig() { # variant
  local before after
  before=$(nsd_counts)
  dig_mx "$1" seq 0 validation
  after=$(nsd_counts)
  count_queries "$1,dig" "$before" "$after"
}

variants=(d)
((shared)) && variants+=(s)
echo "$n domains per variant, median of $runs runs, $(nproc) cores, open-file limit $(ulimit -n)," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ), NSD on $server" >&2
for v in "${variants[@]}"; do
  validate_plan "$v"
  validate_dig "$v"
done

# --- timed runs --------------------------------------------------------------
declare -A samples # variant,tool -> seconds...
configs=(seq)
for p in "${parallel[@]}"; do for b in "${batches[@]}"; do configs+=("$p/$b"); done; done
for ((r = 1; r <= runs; r++)); do
  printf '\rrun %d/%d' "$r" "$runs" >&2
  for v in "${variants[@]}"; do
    plan_mx "$v"
    samples[$v,smtp-plan]+="$elapsed "
    for c in "${configs[@]}"; do
      # The shared variant runs dig only sequentially and at the best setting found
      # for the other (decided after the first round of it).
      [[ $v == s && $c != seq && $c != "${best_config:-}" ]] && continue
      dig_mx "$v" "${c%/*}" "${c#*/}"
      samples[$v,$c]+="$elapsed "
    done
    kill -0 "$nsd_pid" 2>/dev/null || { echo "NSD died:" >&2; cat "$work/nsd.log" >&2; exit 1; }
  done
  if [[ -z ${best_config:-} && ${#configs[@]} -gt 1 ]]; then
    best_config=$(for c in "${configs[@]:1}"; do echo "${samples[d,$c]} $c"; done | sort -g | head -n 1 | awk '{ print $NF }')
    # The shared variant's first round missed the best xargs setting: run it now.
    if ((shared)); then
      dig_mx s "${best_config%/*}" "${best_config#*/}"
      samples[s,$best_config]+="$elapsed "
    fi
  fi
done
printf '\r%20s\r' '' >&2

# --- report ------------------------------------------------------------------
median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
rate() { awk -v n="$n" -v t="$1" 'BEGIN { printf "%.0f", n / t }'; }
label() { # config
  case $1 in
    smtp-plan) echo "smtp-plan mx --json" ;;
    seq) echo "dig -f, sequential (1 process per phase)" ;;
    *) echo "xargs -P ${1%/*} -L ${1#*/} dig" ;;
  esac
}
echo "MX resolution of $n domains (median of $runs runs; $(nproc) cores; NSD on loopback; load average now $(cut -d' ' -f1-3 /proc/loadavg))"
for v in "${variants[@]}"; do
  echo
  if [[ $v == d ]]; then
    echo "== $n domains, 2 MX hosts of their own each (d0.test .. d$((n - 1)).test)"
  else
    echo "== $n domains sharing 2 MX hosts (s0.test .. s$((n - 1)).test)"
  fi
  printf '%-44s %9s %11s\n' tool seconds domains/s
  best_rate=0 best_label=
  for c in smtp-plan "${configs[@]}"; do
    [[ -n ${samples[$v,$c]:-} ]] || continue
    t=$(median <<<"${samples[$v,$c]}")
    rt=$(rate "$t")
    note=
    [[ $c != smtp-plan && ${dig_notes[$v,$c]:-0} != 0 ]] && note="  ($((dig_notes[$v,$c])) dig timeouts/warnings in $runs runs)"
    printf '%-44s %9.3f %11s%s\n' "$(label "$c")" "$t" "$rt" "$note"
    if [[ $c != smtp-plan ]] && ((rt > best_rate)); then best_rate=$rt best_label=$(label "$c"); fi
    [[ $c == smtp-plan ]] && plan_rate=$rt
  done
  echo "ratio smtp-plan / best dig ($best_label): $(awk -v a="$plan_rate" -v b="$best_rate" 'BEGIN { printf "%.2f", a / b }')"
  echo "queries seen by NSD, smtp-plan: ${queries[$v,smtp-plan]}"
  echo "queries seen by NSD, dig:       ${queries[$v,dig]}"
done
echo
echo "wall seconds of each run:"
for v in "${variants[@]}"; do
  for c in smtp-plan "${configs[@]}"; do
    [[ -n ${samples[$v,$c]:-} ]] && printf '  %s %-12s %s\n' "$v" "$c" "${samples[$v,$c]}"
  done
done
exit 0
