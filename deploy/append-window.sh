#!/bin/sh
# Append the last whole time window to a workflow's store (its sink has `mode: append`):
#
#   deltaflow-append-window WORKFLOW --set 'KEY=...{start_s}...' [more `deltaflow run` options]
#
# runs `deltaflow run WORKFLOW ...` with these placeholders replaced in every option:
#   {start} {end}        the window's bounds, UTC, 2026-01-01T10:00:00 (end excluded)
#   {start_s} {end_s}    the same as Unix seconds
#   {date}               the start's UTC date, 2026-01-01 (for daily file names)
#   {window_s}           the window length in seconds
# e.g. `--set 'source.time_range=[{start_s},{end_s}]'` (a source whose time is in Unix
# seconds, like the sensors of workflows/sensor_append.yaml), `--set
# 'source.time_range=[{start},{end}]'` (a source with datetimes), or
# `--set source.path=/data/incoming/{date}.nc` (a file per day, DELTAFLOW_WINDOW=86400).
# time_range is half-open, so consecutive windows neither repeat nor drop a sample.
# Windows are aligned to multiples of their length in UTC, so a retried or late run asks
# for the same window again, which the store refuses (exit 2) instead of writing it twice.
#
#   DELTAFLOW_WINDOW  window length in seconds (default 3600: the previous whole hour)
#   DELTAFLOW_LAG     seconds to wait for late data before a window counts (default 0)
#   DELTAFLOW_NOW     "now" in Unix seconds (default: the clock), for backfills and tests
#
# Installed in the image as /usr/local/bin/deltaflow-append-window; needs GNU date.
set -eu
workflow=${1:?usage: deltaflow-append-window WORKFLOW --set KEY=VALUE [deltaflow run options]}
shift
window=${DELTAFLOW_WINDOW:-3600}
lag=${DELTAFLOW_LAG:-0}
now=${DELTAFLOW_NOW:-$(date -u +%s)}
end_s=$(( (now - lag) / window * window ))
start_s=$(( end_s - window ))
start=$(date -u -d "@$start_s" +%Y-%m-%dT%H:%M:%S)
end=$(date -u -d "@$end_s" +%Y-%m-%dT%H:%M:%S)
day=$(date -u -d "@$start_s" +%Y-%m-%d)
case "$*" in
    *"{start"* | *"{end"* | *"{date}"*) ;;
    *)
        echo "deltaflow-append-window: no option names the window; give e.g." \
            "--set 'source.time_range=[{start_s},{end_s}]'" >&2
        exit 2
        ;;
esac
n=$#
while [ "$n" -gt 0 ]; do
    arg=$(printf '%s\n' "$1" | sed -e "s/{start_s}/$start_s/g" -e "s/{end_s}/$end_s/g" \
        -e "s/{start}/$start/g" -e "s/{end}/$end/g" -e "s/{date}/$day/g" \
        -e "s/{window_s}/$window/g")
    shift
    set -- "$@" "$arg"
    n=$(( n - 1 ))
done
echo "deltaflow: appending [$start, $end) from $workflow" >&2
exec deltaflow run "$workflow" "$@"
