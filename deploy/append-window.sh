#!/bin/sh
# Append the last whole time window to a workflow's store (the workflow's sink has
# `mode: append`): `deltaflow run WORKFLOW --set source.time_range=[start,end] ...`.
# Windows are aligned to multiples of their length in UTC, so a retried or late run asks for
# the same window again (which the store refuses instead of writing it twice).
#
#   deltaflow-append-window WORKFLOW [more `deltaflow run` options]
#   DELTAFLOW_WINDOW  window length in seconds (default 3600: the previous whole hour)
#   DELTAFLOW_LAG     seconds to wait for late data before a window counts (default 0)
#
# Installed in the image as /usr/local/bin/deltaflow-append-window; needs GNU date.
set -eu
workflow=${1:?usage: deltaflow-append-window WORKFLOW [deltaflow run options]}
shift
window=${DELTAFLOW_WINDOW:-3600}
lag=${DELTAFLOW_LAG:-0}
now=${DELTAFLOW_NOW:-$(date -u +%s)}   # DELTAFLOW_NOW (epoch seconds): for tests and backfills
end=$(( (now - lag) / window * window ))
start=$(( end - window ))
stamp() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%S; }
echo "deltaflow: appending [$(stamp "$start"), $(stamp "$end")) from $workflow" >&2
exec deltaflow run "$workflow" --set "source.time_range=[$(stamp "$start"),$(stamp "$end")]" "$@"
