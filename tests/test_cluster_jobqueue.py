"""dask-jobqueue renders the SLURM and PBS job scripts of the shipped profiles."""

from __future__ import annotations

import re

import pytest

from deltaflow import cluster as dc

pytest.importorskip("dask_jobqueue")


def _script(name: str) -> tuple[dc.SLURMProfile | dc.PBSProfile, str]:
    prof = dc.resolve_profile(name)
    with dc.make_cluster(prof) as cluster:  # starts a scheduler here, submits nothing
        assert len(cluster.workers) == 0
        return prof, cluster.job_script()


def _worker_line(script: str) -> str:
    (line,) = [ln for ln in script.splitlines() if "distributed.cli.dask_worker" in ln]
    return line


def test_slurm_job_script_requests_the_profile_resources() -> None:
    prof, script = _script("slurm")
    header = [ln for ln in script.splitlines() if ln.startswith("#SBATCH")]
    assert f"#SBATCH -p {prof.queue}" in header
    assert f"#SBATCH -A {prof.account}" in header
    assert f"#SBATCH --cpus-per-task={prof.cores}" in header
    assert "#SBATCH --mem=64G" in header  # 64GiB per job
    assert f"#SBATCH -t {prof.walltime}" in header
    assert f"#SBATCH -J {prof.job_name}" in header
    for extra in prof.job_extra_directives:
        assert f"#SBATCH {extra}" in header
    worker = _worker_line(script)
    assert worker.startswith("python3 -m distributed.cli.dask_worker")
    assert f"--nworkers {prof.processes}" in worker
    assert f"--nthreads {prof.cores // prof.processes}" in worker
    assert "--memory-limit 16.00GiB" in worker  # 64 GiB over 4 workers
    assert "--local-directory $TMPDIR" in worker
    # prologue: dask settings exported before the user's lines, both before the worker
    lines = script.splitlines()
    export = lines.index("export DASK_DISTRIBUTED__WORKER__MEMORY__TARGET=0.6")
    activate = lines.index(prof.job_script_prologue[0])
    assert export < activate < lines.index(worker)


def test_pbs_job_script_requests_the_profile_resources() -> None:
    prof, script = _script("pbs")
    header = [ln for ln in script.splitlines() if ln.startswith("#PBS")]
    assert f"#PBS -q {prof.queue}" in header
    assert f"#PBS -A {prof.account}" in header
    assert f"#PBS -l {prof.resource_spec}" in header
    assert f"#PBS -l walltime={prof.walltime}" in header
    assert "#PBS -j oe" in header
    worker = _worker_line(script)
    assert f"--nworkers {prof.processes}" in worker
    assert f"--nthreads {prof.cores // prof.processes}" in worker
    assert "--memory-limit 24.00GiB" in worker  # 96 GiB over 4 workers
    assert 'cd "$PBS_O_WORKDIR"' in script


def test_pbs_default_select_line_from_cores_and_memory() -> None:
    prof = dc.resolve_profile(
        {"kind": "pbs", "cores": 8, "memory": "16GiB", "walltime": "00:30:00", "queue": "short"}
    )
    with dc.make_cluster(prof) as cluster:
        script = cluster.job_script()
    assert re.search(r"^#PBS -l select=1:ncpus=8:mem=1[67]GB$", script, re.M), script
    assert "#PBS -l walltime=00:30:00" in script
