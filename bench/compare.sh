#!/usr/bin/env bash
# compare.sh: side-by-side server CPU per connect and RSS per held session,
# measured with the same third-party client against every server, in one
# run, interleaved over several rounds (medians reported).
#
# It builds and vendors nothing: the third-party programs are named by path.
#
#   bench/compare.sh -t /path/to/tcconn [options] NAME='COMMAND' ...
#
# Each COMMAND starts one server in the foreground on UDP 127.0.0.1:{PORT}
# ({PORT} is replaced) and must exec it, so that the process started is the
# server whose CPU and memory are read from /proc. For example:
#
#   S='stratus server --listen 127.0.0.1:{PORT} --open --data {DIR} --admin off --http off'
#   S="$S --max-sessions-per-ip -1 --handshake-rate -1 --hello-rate-per-prefix -1"
#   bench/compare.sh -t /work/interop/bin/tcconn -f -n 300 -c 4 -s 256 \
#     stratus="$S" tcserver='/work/interop/bin/run-tcserver {PORT}' \
#     monatiny='/work/interop/bin/run-monatiny {PORT} 0'
#
# Options:
#   -t PATH   rtmfp-cpp's tcconn (required)
#   -f        Flash-like client: RTMFP_INTEROP_DH_GROUPS=2 and tcconn -H -S
#             (without it tcconn runs with its defaults: groups 16/14/2,
#             HMAC and sequence numbers required)
#   -n N      connects per server and round (default 200; 0 skips them)
#   -c C      connects at a time (default 4)
#   -s S      sessions to hold with tcconn processes per server and round
#             (default 0: skip); RSS per held session
#   -b PATH   a stratus binary: also hold -B sessions with
#             "stratus bench hold" per server and round
#   -B N      sessions for -b (default 10000)
#   -C C      concurrency for -b (default 64)
#   -k KEY    the URL's path (application, developer key) (default bench)
#   -r R      rounds (default 3)
#   -p PORT   first UDP port (default 24000; one port per server)
#
# {DIR} in a command is replaced with a fresh temporary directory.
# Server CPU is utime+stime from /proc/PID/stat, read before and after the
# connects (after one warm-up connect); RSS is VmRSS from /proc/PID/status
# before and after the sessions are up. The machine's load average is
# printed with every round: on a shared machine compare ratios, not
# absolute figures.
set -euo pipefail

TCCONN="" FLASH=0 N=200 C=4 S=0 STRATUS="" HB=10000 HC=64 KEY=bench ROUNDS=3 PORT=24000
while getopts "t:fn:c:s:b:B:C:k:r:p:h" o; do
	case $o in
	t) TCCONN=$OPTARG ;;
	f) FLASH=1 ;;
	n) N=$OPTARG ;;
	c) C=$OPTARG ;;
	s) S=$OPTARG ;;
	b) STRATUS=$OPTARG ;;
	B) HB=$OPTARG ;;
	C) HC=$OPTARG ;;
	k) KEY=$OPTARG ;;
	r) ROUNDS=$OPTARG ;;
	p) PORT=$OPTARG ;;
	*) sed -n '2,/^set -e/p' "$0" | sed '$d' >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ -n "$TCCONN" ] && [ -x "$TCCONN" ] || { echo "compare.sh: -t TCCONN (an executable) is required" >&2; exit 2; }
[ $# -ge 1 ] || { echo "compare.sh: name at least one server as NAME='COMMAND'" >&2; exit 2; }

TICK=$(getconf CLK_TCK)
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
	[ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null || true
	[ -f "$WORK/hold.pids" ] && xargs -r kill -TERM <"$WORK/hold.pids" 2>/dev/null || true
	wait 2>/dev/null || true # everything left is ours
	rm -rf "$WORK"
}
trap cleanup EXIT

tcconn_args=(-4)
tcconn_env=()
if [ $FLASH = 1 ]; then
	tcconn_args+=(-H -S)
	tcconn_env=(RTMFP_INTEROP_DH_GROUPS=2)
fi

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

# one_connect URL: a tcconn connects, and once it reports success it is
# told to shut down (SIGTERM: it closes its session in an orderly way).
# Succeeds iff it connected.
one_connect() {
	local pidf
	pidf=$(mktemp -p "$WORK")
	sh -c 'echo $$ >"$1"; shift; exec env "$@"' _ "$pidf" "${tcconn_env[@]}" timeout 30 stdbuf -oL "$TCCONN" "${tcconn_args[@]}" "$1#nostream" 2>&1 |
		{
			local line ok=1
			while IFS= read -r line; do
				if [ $ok = 1 ] && [[ $line == *"onConnect success"* ]]; then
					kill -TERM "$(cat "$pidf")" 2>/dev/null || true
					ok=0
				fi
			done
			exit $ok
		}
}

# connects URL N C: N connects, C at a time; prints how many failed.
connects() {
	local url=$1 n=$2 c=$3 i fails=0
	for ((i = 0; i < n; i += c)); do
		local j pids=()
		for ((j = 0; j < c && i + j < n; j++)); do
			one_connect "$url" &
			pids+=($!)
		done
		for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
	done
	echo $fails
}

# hold_start URL S: S tcconn processes connect and stay; waits until all
# are up (or 60 s) and sets HELD to how many are.
HOLD_JOBS=()
hold_start() {
	local url=$1 s=$2 i
	HOLD_JOBS=()
	: >"$WORK/hold.out"
	: >"$WORK/hold.pids"
	for ((i = 0; i < s; i++)); do
		sh -c 'echo $$ >>"$1"; shift; exec env "$@"' _ "$WORK/hold.pids" "${tcconn_env[@]}" timeout 600 stdbuf -oL "$TCCONN" "${tcconn_args[@]}" "$url#nostream" 2>/dev/null |
			{ grep --line-buffered 'onConnect success' >>"$WORK/hold.out" || true; } &
		HOLD_JOBS+=($!)
		[ $((i % 16)) = 15 ] && sleep 0.2 # not all handshakes at once
	done
	for ((i = 0; i < 600; i++)); do
		[ "$(wc -l <"$WORK/hold.out")" -ge "$s" ] && break
		sleep 0.1
	done
	HELD=$(wc -l <"$WORK/hold.out")
}

# hold_stop ends the holding clients (by their process IDs) and waits.
hold_stop() {
	xargs -r kill -TERM <"$WORK/hold.pids" 2>/dev/null || true
	for p in "${HOLD_JOBS[@]}"; do wait "$p" 2>/dev/null || true; done
	HOLD_JOBS=()
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

declare -A CPU RSS BRSS
names=()
for spec in "$@"; do names+=("${spec%%=*}"); done

echo "# compare.sh: tcconn $( [ $FLASH = 1 ] && echo 'Flash-like (groups 2, -H -S)' || echo 'default profile') n=$N c=$C s=$S rounds=$ROUNDS; $(nproc) cores"
for ((round = 1; round <= ROUNDS; round++)); do
	k=0
	for spec in "$@"; do
		name=${spec%%=*}
		cmd=${spec#*=}
		port=$((PORT + k))
		k=$((k + 1))
		dir=$(mktemp -d -p "$WORK")
		cmd=${cmd//\{PORT\}/$port}
		cmd=${cmd//\{DIR\}/$dir}
		url="rtmfp://127.0.0.1:$port/$KEY"
		sh -c "exec $cmd" >"$dir/server.log" 2>&1 &
		SERVER_PID=$!
		ok=0
		for ((w = 0; w < 50; w++)); do
			kill -0 $SERVER_PID 2>/dev/null || break
			if one_connect "$url"; then ok=1; break; fi
			sleep 0.2
		done
		if [ $ok = 0 ]; then
			echo "$name: no connect succeeded; server log:" >&2
			tail -20 "$dir/server.log" >&2
			exit 1
		fi
		line="round $round $name:"
		if [ "$N" -gt 0 ]; then
			before=$(cpu_ticks $SERVER_PID)
			fails=$(connects "$url" "$N" "$C")
			after=$(cpu_ticks $SERVER_PID)
			ms=$(awk -v d=$((after - before)) -v t="$TICK" -v n="$N" 'BEGIN { printf "%.3f", d * 1000 / t / n }')
			CPU[$name]+="$ms "
			line+=" cpu/connect ${ms} ms ($fails failed)"
		fi
		if [ "$S" -gt 0 ]; then
			r0=$(rss_kib $SERVER_PID)
			hold_start "$url" "$S"
			up=$HELD
			r1=$(rss_kib $SERVER_PID)
			kib=$(awk -v a="$r0" -v b="$r1" -v s="$up" 'BEGIN { printf "%.1f", s ? (b - a) / s : 0 }')
			RSS[$name]+="$kib "
			line+="; tcconn hold $up/$S: rss $r0 -> $r1 KiB, ${kib} KiB/session"
			hold_stop
		fi
		if [ -n "$STRATUS" ]; then
			r0=$(rss_kib $SERVER_PID)
			mkfifo "$dir/hold.fifo"
			"$STRATUS" bench hold --url "$url" --sessions "$HB" --concurrency "$HC" --hold 10m >"$dir/hold.fifo" 2>&1 &
			hp=$!
			if grep -m1 'held' <"$dir/hold.fifo" >"$dir/hold.line"; then
				r1=$(rss_kib $SERVER_PID)
				kib=$(awk -v a="$r0" -v b="$r1" -v s="$HB" 'BEGIN { printf "%.2f", (b - a) / s }')
				BRSS[$name]+="$kib "
				line+="; bench hold $HB: rss $r0 -> $r1 KiB, ${kib} KiB/session ($(cat "$dir/hold.line"))"
			else
				line+="; bench hold failed"
			fi
			kill -INT $hp 2>/dev/null || true
			cat "$dir/hold.fifo" >/dev/null || true
			wait $hp 2>/dev/null || true
		fi
		kill -TERM $SERVER_PID 2>/dev/null || true
		wait $SERVER_PID 2>/dev/null || true
		SERVER_PID=""
		echo "$line; load $(load)"
	done
done

echo "# medians over $ROUNDS rounds"
for name in "${names[@]}"; do
	line="$name:"
	[ "$N" -gt 0 ] && line+=" cpu/connect $(echo "${CPU[$name]}" | tr ' ' '\n' | grep . | median) ms"
	[ "$S" -gt 0 ] && line+=", tcconn-held rss $(echo "${RSS[$name]}" | tr ' ' '\n' | grep . | median) KiB/session"
	[ -n "$STRATUS" ] && line+=", bench-held rss $(echo "${BRSS[$name]:-}" | tr ' ' '\n' | grep . | median) KiB/session"
	echo "$line"
done
