#!/bin/sh
# Container entry point: `deltaflow` by default. Dask's own commands (the scheduler and
# worker pods the Kubernetes operator starts with this image), Python and a shell run as given.
set -eu
case "${1:-}" in
    dask-scheduler | dask-worker)
        # the operator's default pod commands; distributed now ships only `dask <role>`
        role="${1#dask-}"
        shift
        exec dask "$role" "$@"
        ;;
    dask | python | python3 | sh | bash)
        exec "$@"
        ;;
esac
exec deltaflow "$@"
