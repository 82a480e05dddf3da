#!/bin/sh
# monitor-profile.sh TASKWATCH SPAWNS OUT [monitor args]: callgrind instruction profile of the
# monitor over a fixed workload only (counters zeroed after start, dumped after). Root; needs valgrind.
set -eu
tw=$1; n=$2; out=$3; shift 3
rm -f $out.*
valgrind --tool=callgrind --callgrind-out-file=$out.%p "$tw" monitor -e fork,exec,exit "$@" > $out.stdout 2>$out.stderr &
vp=$!
while ! grep -q -e watching -e '"type":"start"' $out.stderr $out.stdout 2>/dev/null; do
  # A monitor that could not start never prints its first line.
  if ! kill -0 $vp 2>/dev/null; then
    echo "the monitor did not start:" >&2; cat $out.stderr >&2; exit 1
  fi
  sleep 0.5
done
sleep 1
callgrind_control -z $vp >/dev/null
loop() { i=0; while [ $i -lt $1 ]; do /bin/true; i=$((i + 1)); done; }
loop $n
sleep 3
callgrind_control -d $vp >/dev/null
kill -INT $vp; wait $vp || true
echo "exec lines: $(grep -c -e ' exec ' -e '"event":"exec"' $out.stdout)"
ls $out.*
