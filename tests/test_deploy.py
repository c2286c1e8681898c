"""Deployment files: they parse, agree with each other, and name only CLI flags that exist.

Docker and Kubernetes are not available here, so the image and manifests are checked by
their content; the shell entry points are run for real with stub commands on PATH.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from deltaflow import cluster as dc

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
NAMESPACE = "deltaflow"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _k8s() -> dict[str, list[dict[str, Any]]]:
    return {p.name: _docs(p) for p in sorted(K8S.glob("*.yaml"))}


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for docs in _k8s().values() for d in docs if d.get("kind") == kind]


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pod spec inside a workload manifest."""
    if doc["kind"] == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    if doc["kind"] == "DaskJob":
        c = doc["spec"]["cluster"]["spec"]
        return [doc["spec"]["job"]["spec"], c["scheduler"]["spec"], c["worker"]["spec"]]
    return []


def _workloads() -> list[dict[str, Any]]:
    return _by_kind("CronJob") + _by_kind("DaskJob")


@pytest.mark.parametrize(
    "path",
    sorted([*DEPLOY.rglob("*.yaml"), *(ROOT / "configs").glob("*.yaml")]),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_yaml_file_parses(path: Path) -> None:
    docs = _docs(path)
    assert docs and all(isinstance(d, dict) for d in docs)


def test_manifests_are_namespaced_and_labelled() -> None:
    for name, docs in _k8s().items():
        for d in docs:
            if name == "profile.yaml" or name == "operator-values.yaml":
                continue  # a deltaflow profile and Helm values, not manifests
            assert {"apiVersion", "kind", "metadata"} <= d.keys(), name
            assert d["metadata"].get("name"), name
            if d["kind"] != "Namespace":
                assert d["metadata"].get("namespace") == NAMESPACE, (name, d["kind"])


def test_workloads_run_as_non_root_from_one_image() -> None:
    profile = dc.load_profile(K8S / "profile.yaml")
    images = set()
    for doc in _workloads():
        for pod in _pod_specs(doc):
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
            images |= {c["image"] for c in pod["containers"]}
    assert images == {profile.image} == {dc.load_profile(ROOT / "configs/kubernetes.yaml").image}


def test_service_accounts_volumes_and_config_maps_exist() -> None:
    accounts = {d["metadata"]["name"] for d in _by_kind("ServiceAccount")}
    claims = {d["metadata"]["name"] for d in _by_kind("PersistentVolumeClaim")}
    assert claims
    for doc in _workloads():
        runner = _pod_specs(doc)[0]
        assert runner["serviceAccountName"] in accounts
        assert runner["restartPolicy"] == "Never"
        for pod in _pod_specs(doc):
            vols = {v["name"]: v for v in pod.get("volumes", [])}
            for c in pod["containers"]:
                for m in c.get("volumeMounts", []):
                    assert m["name"] in vols, (doc["kind"], m)
            for v in vols.values():
                if "persistentVolumeClaim" in v:
                    assert v["persistentVolumeClaim"]["claimName"] in claims
    # the profile's workers mount the same claim
    profile = dc.load_profile(K8S / "profile.yaml")
    assert {v["persistentVolumeClaim"]["claimName"] for v in profile.volumes} <= claims


def test_role_lets_the_runner_manage_dask_clusters() -> None:
    (role,) = _by_kind("Role")
    (binding,) = _by_kind("RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert {s["name"] for s in binding["subjects"]} == {
        d["metadata"]["name"] for d in _by_kind("ServiceAccount")
    }
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                granted.setdefault((group, res), set()).update(rule["verbs"])
    for res in ("daskclusters", "daskworkergroups", "daskautoscalers"):
        assert {"create", "get", "list", "watch", "patch", "delete"} <= granted[
            ("kubernetes.dask.org", res)
        ]
    assert {"get", "list", "watch"} <= granted[("", "pods")] & granted[("", "services")]


def test_daskjob_wires_the_runner_to_its_scheduler_and_dask_settings() -> None:
    (job,) = _by_kind("DaskJob")
    runner = job["spec"]["job"]["spec"]["containers"][0]
    args = runner["args"]
    assert args[args.index("--cluster") + 1] == "$(DASK_SCHEDULER_ADDRESS)"
    cluster = job["spec"]["cluster"]["spec"]
    (worker,) = cluster["worker"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in worker["env"]}
    shipped = dc.load_profile(ROOT / "configs/local.yaml").dask["distributed"]
    memory, nanny = shipped["worker"]["memory"], shipped["nanny"]
    expected = dc.dask_env({"distributed": {"worker": {"memory": memory}, "nanny": nanny}})
    assert env == expected  # the same thresholds and allocator setting as configs/dask.yaml
    limit = worker["args"][worker["args"].index("--memory-limit") + 1]
    assert limit == "8GiB" and worker["resources"]["limits"]["memory"] == "8Gi"
    sched = cluster["scheduler"]
    ports = {p["name"] for p in sched["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in sched["service"]["ports"]} <= ports
    assert sched["service"]["selector"]["dask.org/cluster-name"] == job["metadata"]["name"]


def test_cronjob_never_overlaps_and_appends_a_window() -> None:
    (cron,) = _by_kind("CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(cron["spec"]["schedule"].split()) == 5
    (container,) = _pod_specs(cron)[0]["containers"]
    assert container["command"] == ["deltaflow-append-window"]


def test_operator_values_use_the_chart_keys() -> None:
    values = yaml.safe_load((K8S / "operator-values.yaml").read_text())
    assert values["rbac"]["create"] is True
    assert "--all-namespaces" in values["kopfArgs"]
    assert values["securityContext"]["runAsNonRoot"] is True


def test_kubernetes_profile_volumes_reach_scheduler_and_workers() -> None:
    profile = dc.load_profile(K8S / "profile.yaml")
    # the shape of the operator's make_cluster_spec output
    spec = {
        "spec": {
            part: {"spec": {"containers": [{"name": part, "args": []}]}}
            for part in ("scheduler", "worker")
        }
    }
    out = dc.add_volumes(spec, profile)
    for part in ("scheduler", "worker"):
        pod = out["spec"][part]["spec"]
        assert pod["volumes"] == profile.volumes
        assert pod["containers"][0]["volumeMounts"] == profile.volume_mounts
    with pytest.raises(dc.ProfileError, match=r"volume_mounts\[0\]: no volume named 'nope'"):
        dc.resolve_profile(
            {
                "kind": "kubernetes",
                "image": "x",
                "volume_mounts": [{"name": "nope", "mountPath": "/d"}],
            }
        )


# ------------------------------------------------------------------ Dockerfile


def _stages(text: str) -> list[list[str]]:
    """Dockerfile instructions (continuations joined), split into build stages."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [
        ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")
    ]
    stages: list[list[str]] = []
    for ln in lines:
        if ln.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(ln)
    return stages


def test_dockerfile_slim_non_root_with_deltaflow_entry_point() -> None:
    stages = _stages((DEPLOY / "Dockerfile").read_text())
    assert len(stages) == 2
    for st in stages:
        assert re.match(r"FROM python:\$\{PYTHON_VERSION\}-slim", st[0])
    final = stages[-1]
    users = [ln.split()[1] for ln in final if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert final[-2:] == ['ENTRYPOINT ["docker-entrypoint"]', 'CMD ["--help"]']
    assert any(
        ln.startswith("COPY deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint")
        for ln in final
    )
    # the extras it installs exist in pyproject.toml
    build = " ".join(stages[0])
    (extras,) = re.findall(r'pip install "\.\[([a-z0-9,]+)\]"', build)
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(extras.split(",")) <= set(meta["optional-dependencies"])
    # everything it copies survives the build context filter
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    for ln in stages[0] + final:
        if ln.startswith("COPY ") and "--from" not in ln:
            for src in ln.split()[1:-1]:
                assert f"!{src}" in ignore or f"!{src}/**" in ignore, src


def _stub_path(tmp_path: Path, names: list[str]) -> dict[str, str]:
    """A PATH whose commands print their name and arguments, one per line."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in names:
        stub = bindir / name
        stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "{name}" "$@"\n')
        stub.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}:/usr/bin:/bin"}


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["run", "wf.yaml", "--resume"], ["deltaflow", "run", "wf.yaml", "--resume"]),
        ([], ["deltaflow"]),
        (["dask-scheduler", "--host", "0.0.0.0"], ["dask", "scheduler", "--host", "0.0.0.0"]),
        (["dask-worker", "tcp://s:8786"], ["dask", "worker", "tcp://s:8786"]),
        (["dask", "worker", "--nthreads", "2"], ["dask", "worker", "--nthreads", "2"]),
        (["python", "-V"], ["python", "-V"]),
    ],
)
def test_entrypoint_dispatch(tmp_path: Path, argv: list[str], expect: list[str]) -> None:
    env = _stub_path(tmp_path, ["deltaflow", "dask", "python"])
    out = subprocess.run(
        ["sh", str(DEPLOY / "docker-entrypoint.sh"), *argv],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    assert out.stdout.splitlines() == expect


def _append_window(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(DEPLOY / "append-window.sh"), *args],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_append_window_fills_in_the_previous_aligned_window(tmp_path: Path) -> None:
    env = _stub_path(tmp_path, ["deltaflow"])
    now = str(1767265200 + 1234)  # 2026-01-01T11:00:00Z + 20 min 34 s
    run = _append_window(
        env,
        "wf.yaml",
        "--set",
        "source.time_range=[{start_s},{end_s}]",
        "--set",
        "source.path=/in/{date} {start}..{end}.nc",
        "--cluster",
        "local",
        DELTAFLOW_NOW=now,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "deltaflow",
        "run",
        "wf.yaml",
        "--set",
        "source.time_range=[1767261600,1767265200]",
        "--set",
        "source.path=/in/2026-01-01 2026-01-01T10:00:00..2026-01-01T11:00:00.nc",
        "--cluster",
        "local",
    ]
    # 30 min of lag: the last complete hour is one earlier; daily windows align to midnight
    lagged = _append_window(
        env, "wf.yaml", "--set", "a={start}", DELTAFLOW_NOW=now, DELTAFLOW_LAG="1800"
    )
    assert "a=2026-01-01T09:00:00" in lagged.stdout
    daily = _append_window(
        env, "wf.yaml", "--set", "a={start},{window_s}", DELTAFLOW_NOW=now, DELTAFLOW_WINDOW="86400"
    )
    assert "a=2025-12-31T00:00:00,86400" in daily.stdout
    # a run that does not name the window would append nothing new: refused
    bare = _append_window(env, "wf.yaml", "--cluster", "local", DELTAFLOW_NOW=now)
    assert bare.returncode == 2 and "no option names the window" in bare.stderr
    assert bare.stdout == ""


def test_scheduled_appends_end_to_end(tmp_path: Path) -> None:
    """append-window.sh -> `deltaflow run --set` appends a window; the same window again is
    refused (ConfigError, exit 2 on the command line; store unchanged); the seam equals one
    run over both windows."""
    import numpy as np

    from deltaflow.io import open_store
    from deltaflow.workflow import ConfigError
    from deltaflow.workflow.runner import run_workflow

    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "deltaflow"  # the console script, for this interpreter and checkout
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m deltaflow.cli "$@"\n')
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bindir}:/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "DELTAFLOW_WINDOW": "64",
    }
    window = 64
    t0 = 1767265200 // 64 * 64  # a window boundary; the sensors source at 1 Hz
    cfg = {
        "name": "scheduled",
        "source": {
            "kind": "sensors",
            "n_series": 4,
            "time_range": [t0, t0 + window],
            "dt": 1.0,
            "chunks": {"sensor": 4, "time": 32},
        },
        "steps": [
            {
                "differentiate": {
                    "var": "temperature",
                    "dim": "time",
                    "method": "finite_difference",
                    "order": 1,
                    "accuracy": 4,
                    "out": "dT_dt",
                }
            }
        ],
        "sink": {
            "path": str(tmp_path / "out.zarr"),
            "mode": "append",
            "append_dim": "time",
            "chunks": {"time": 32},
        },
    }
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(cfg, sort_keys=False))
    first = run_workflow(wf, overrides=["sink.mode=create"], environ={})  # the first window
    assert first.complete
    args = ("--set", "source.time_range=[{start_s},{end_s}]")
    now = str(t0 + 2 * window + 5)  # the window [t0 + 64, t0 + 128) has just closed
    second = _append_window(env, str(wf), *args, DELTAFLOW_NOW=now)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "wrote" in second.stdout
    stored = open_store(str(tmp_path / "out.zarr")).load()
    assert stored.sizes["time"] == 2 * window
    # a retry of that window (what the script would run again) is refused, store untouched
    retry = [f"source.time_range=[{t0 + window}, {t0 + 2 * window}]"]
    with pytest.raises(ConfigError, match=r"re-running the same window\) are refused"):
        run_workflow(wf, overrides=retry, environ={})
    assert open_store(str(tmp_path / "out.zarr")).load().identical(stored)
    full = {**cfg, "source": {**cfg["source"], "time_range": [t0, t0 + 2 * window]}}
    full["sink"] = {**cfg["sink"], "path": str(tmp_path / "full.zarr"), "mode": "create"}
    run_workflow(full, environ={})
    recomputed = open_store(str(tmp_path / "full.zarr")).load()
    np.testing.assert_array_equal(stored["dT_dt"].values, recomputed["dT_dt"].values)
    np.testing.assert_array_equal(stored["time"].values, recomputed["time"].values)


@pytest.mark.parametrize("script", ["slurm/run.sbatch", "pbs/run.pbs", "append-window.sh"])
def test_shell_scripts_are_valid(script: str) -> None:
    shell = "sh" if script.endswith(".sh") else "bash"
    subprocess.run([shell, "-n", str(DEPLOY / script)], check=True, timeout=10)


def test_batch_scripts_use_the_shipped_profiles() -> None:
    sbatch = (DEPLOY / "slurm/run.sbatch").read_text()
    pbs = (DEPLOY / "pbs/run.pbs").read_text()
    assert re.search(r"^#SBATCH --time=\d+:\d{2}:\d{2}$", sbatch, re.M)
    assert re.search(r"^#PBS -l walltime=\d+:\d{2}:\d{2}$", pbs, re.M)
    for text, kind in ((sbatch, "slurm"), (pbs, "pbs")):
        (default,) = re.findall(r"\$\{\w+:-(configs/\w+\.yaml)\}", text)
        assert dc.resolve_profile(str(ROOT / default)).kind == kind


def _unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text())
    return cp


def test_systemd_service_and_timer_pair() -> None:
    service = _unit(DEPLOY / "systemd/deltaflow@.service")
    timer = _unit(DEPLOY / "systemd/deltaflow@.timer")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["User"] not in ("root", "0")
    exec_start = service["Service"]["ExecStart"].split()
    assert exec_start == [
        "/usr/local/bin/deltaflow-append-window",
        "/etc/deltaflow/%i.yaml",
        "$DELTAFLOW_RUN_ARGS",
    ]
    assert timer["Timer"]["Unit"] == "deltaflow@%i.service"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


# ------------------------------------------------------------------ CLI flags


def _invocations() -> list[tuple[str, list[str]]]:
    """Every `deltaflow ...` command line the deploy files run, as argument lists."""
    found: list[tuple[str, list[str]]] = []
    window = (DEPLOY / "append-window.sh").read_text()
    (line,) = [ln for ln in window.splitlines() if ln.startswith("exec deltaflow ")]
    window_args = [a for a in shlex.split(line)[2:] if a != "$@"]
    for doc in _workloads():
        for pod in _pod_specs(doc)[:1]:
            for c in pod["containers"]:
                cmd = c.get("command")
                if cmd == ["deltaflow-append-window"]:
                    found.append((doc["kind"], [*window_args, *c["args"][1:]]))
                elif cmd is None and c["args"][0] not in ("dask", "sh", "python"):
                    found.append((doc["kind"], list(c["args"])))
    for script in ("slurm/run.sbatch", "pbs/run.pbs"):
        text = (DEPLOY / script).read_text()
        arrays = {m[0]: shlex.split(m[1]) for m in re.findall(r"(\w+)=\(([^)]+)\)", text)}
        for ln in text.splitlines():
            if ln.startswith("deltaflow "):
                argv = []
                for a in shlex.split(ln)[1:]:
                    m = re.fullmatch(r"\$\{(\w+)\[@\]\}", a)
                    argv += arrays.get(m[1], []) if m else [a]  # [] : options given by hand
                found.append((script, argv))
    service = (DEPLOY / "systemd/deltaflow@.service").read_text()
    (run_args,) = re.findall(r'^Environment="DELTAFLOW_RUN_ARGS=(.*)"$', service, re.M)
    found.append(("systemd", [*window_args, *run_args.split()]))
    return found


def _fill_window(arg: str) -> str:
    """An option with append-window.sh's placeholders filled for one hour."""
    values = {
        "{start_s}": "1767261600",
        "{end_s}": "1767265200",
        "{start}": "2026-01-01T10:00:00",
        "{end}": "2026-01-01T11:00:00",
        "{date}": "2026-01-01",
        "{window_s}": "3600",
    }
    for k, v in values.items():
        arg = arg.replace(k, v)
    return arg


def test_deploy_overrides_name_keys_of_the_scheduled_workflow() -> None:
    """Every `--set` of the scheduled runs (CronJob, systemd) is a valid override of the
    workflow they ship with (workflows/sensor_append.yaml), and it moves the window."""
    from deltaflow.workflow import load_workflow
    from deltaflow.workflow.runner import validate_workflow

    scheduled = [(w, a) for w, a in _invocations() if w in ("CronJob", "systemd")]
    assert len(scheduled) == 2
    for where, argv in scheduled:
        sets = [_fill_window(argv[i + 1]) for i, a in enumerate(argv) if a == "--set"]
        assert sets, f"{where}: no --set moves the window"
        wf = load_workflow(ROOT / "workflows/sensor_append.yaml", overrides=sets, environ={})
        assert list(wf.config.source.time_range) == [1767261600.0, 1767265200.0], where
        built = validate_workflow(
            ROOT / "workflows/sensor_append.yaml",
            overrides=[*sets, "sink.mode=create", "source.n_series=1"],
            environ={},
        )
        assert built.source.sizes["time"] == 3600, where


@pytest.mark.parametrize("script", ["slurm/run.sbatch", "pbs/run.pbs"])
def test_batch_scripts_append_the_previous_window(tmp_path: Path, script: str) -> None:
    """With DELTAFLOW_WINDOW set, the batch job appends the window of the time it was
    submitted (DELTAFLOW_NOW) through append-window.sh; without, it runs the workflow."""
    env = _stub_path(tmp_path, ["deltaflow"])
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/activate").write_text("")
    opt = "source.time_range=[{start_s},{end_s}]"
    env = {
        **env,
        "DELTAFLOW_VENV": str(venv),
        "DELTAFLOW_APPEND_WINDOW": str(DEPLOY / "append-window.sh"),
        "DELTAFLOW_NOW": str(1767265200 + 1234),
        "DELTAFLOW_WINDOW": "3600",
        "PBS_O_WORKDIR": str(tmp_path),
        "WORKFLOW": "wf.yaml",
        "DELTAFLOW_RUN_ARGS": f"--set {opt}",
    }
    argv = ["wf.yaml", "prof.yaml", "--set", opt] if script.startswith("slurm") else []
    if script.startswith("pbs"):
        env["PROFILE"] = "prof.yaml"

    def run(**extra: str) -> list[str]:
        done = subprocess.run(
            ["bash", str(DEPLOY / script), *argv],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    window = ["--set", "source.time_range=[1767261600,1767265200]"]
    assert run() == ["deltaflow", "run", "wf.yaml", "--cluster", "prof.yaml", *window]
    plain = run(DELTAFLOW_WINDOW="")
    assert plain == ["deltaflow", "run", "wf.yaml", "--cluster", "prof.yaml", "--set", opt]


def test_deploy_files_name_only_existing_cli_flags() -> None:
    import typer

    from deltaflow.cli import app

    root = typer.main.get_command(app)
    invocations = _invocations()
    assert len(invocations) >= 5
    for where, argv in invocations:
        name, *rest = argv
        assert name in root.commands, f"{where}: no `deltaflow {name}` command"
        cmd = root.commands[name]
        opts = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        for arg in rest:
            if arg.startswith("-"):
                assert arg.split("=")[0] in opts, f"{where}: `deltaflow {name}` has no {arg}"
