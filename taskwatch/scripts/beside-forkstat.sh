#!/bin/sh
# beside-forkstat.sh TASKWATCH SPAWNS ROUNDS [extra monitor args]: forkstat and taskwatch monitor
# side by side on the same workload; CPU ticks (user+system) each spent during it. Root; needs forkstat.
set -eu
tw=$1; n=$2; rounds=$3; shift 3
dir=$(mktemp -d)
cpu() { awk '{ sub(/.*\) /, ""); print $12, $13 }' /proc/$1/stat; }
loop() { i=0; while [ $i -lt $1 ]; do /bin/true; i=$((i + 1)); done; }
r=1
while [ $r -le $rounds ]; do
  if [ $((r % 2)) -eq 1 ]; then order="f t"; else order="t f"; fi
  for who in $order; do
    case $who in
      f) forkstat -e fork,exec,exit > $dir/f.out 2>/dev/null & fpid=$! ;;
      t) "$tw" monitor -e fork,exec,exit "$@" > $dir/t.out 2>$dir/t.err & tpid=$! ;;
    esac
  done
  sleep 2
  f0=$(cpu $fpid); t0=$(cpu $tpid)
  loop $((n / 2)) & a=$!; loop $((n / 2)) & b=$!
  wait $a $b
  sleep 1
  f1=$(cpu $fpid); t1=$(cpu $tpid)
  kill -INT $fpid $tpid; wait $fpid $tpid || true
  fe=$(grep -c ' exec ' $dir/f.out || true)
  te=$(grep -c -e ' exec ' -e '"event":"exec"' $dir/t.out || true)
  echo "$f0 $f1 $t0 $t1" | awk -v r=$r -v o="$order" -v fe=$fe -v te=$te '{
    fu=$3-$1; fs=$4-$2; tu=$7-$5; ts=$8-$6;
    printf "round %d [%s] forkstat %d ticks (user %d sys %d, %d exec) taskwatch %d ticks (user %d sys %d, %d exec) ratio %.2f\n",
      r, o, fu+fs, fu, fs, fe, tu+ts, tu, ts, te, (tu+ts)/(fu+fs) }'
  r=$((r + 1))
done
rm -rf $dir
