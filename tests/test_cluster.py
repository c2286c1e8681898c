"""Cluster profiles: validation with file/key-path errors, resolution, sizing, live clients."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dask
import distributed  # noqa: F401  (loads the distributed config defaults)
import pytest

from deltaflow import cluster as dc

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PROFILES = sorted(p for p in CONFIGS.glob("*.yaml") if p.stem != "dask")
GiB = 2**30


def test_one_shipped_profile_per_kind() -> None:
    kinds = {dc.resolve_profile(str(p)).kind for p in PROFILES}
    assert kinds == set(dc.KINDS)


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_shipped_profile_validates_and_reads_dask_settings(path: Path) -> None:
    prof = dc.load_profile(path)
    assert prof.kind == path.stem
    # every shipped profile carries configs/dask.yaml's memory thresholds
    assert prof.dask["distributed"]["worker"]["memory"]["target"] == pytest.approx(0.6)


def test_profile_by_name_and_by_address() -> None:
    assert isinstance(dc.resolve_profile("slurm"), dc.SLURMProfile)
    assert isinstance(dc.resolve_profile(None), dc.LocalProfile)
    addr = dc.resolve_profile("tcp://10.0.0.5:8786")
    assert isinstance(addr, dc.AddressProfile) and addr.address == "tcp://10.0.0.5:8786"
    assert dc.resolve_profile("scheduler.internal:8786").address == "scheduler.internal:8786"
    inline = dc.resolve_profile({"kind": "local", "n_workers": 2, "processes": False})
    assert inline.n_workers == 2 and not inline.processes


def test_profile_search_path_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine.yaml").write_text("kind: address\naddress: tcp://h:1234\n")
    monkeypatch.setenv("DELTAFLOW_PROFILE_PATH", str(tmp_path))
    assert dc.resolve_profile("mine").address == "tcp://h:1234"


def test_unknown_name_lists_known_profiles() -> None:
    with pytest.raises(dc.ProfileError, match=r"unknown cluster 'nonesuch'.*slurm"):
        dc.resolve_profile("nonesuch")
    with pytest.raises(dc.ProfileError, match=r"no profile file 'missing\.yaml'"):
        dc.resolve_profile("missing.yaml")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"kind": "slurm", "cores": 4, "memory": "8GiB", "bogus": 1},
            r"cluster\.bogus: unknown key",
        ),
        (
            {"kind": "slurm", "cores": 0, "memory": "8GiB"},
            r"cluster\.cores: .*greater than or equal to 1",
        ),
        ({"kind": "slurm", "cores": 4}, r"cluster\.memory: required key missing"),
        (
            {"kind": "pbs", "cores": 4, "memory": "lots"},
            r"cluster\.memory: must be a size .*'lots'",
        ),
        (
            {"kind": "slurm", "cores": 4, "memory": "8GiB", "walltime": "2h"},
            r"cluster\.walltime: must be HH:MM:SS or D-HH:MM:SS, got '2h'",
        ),
        (
            {"kind": "pbs", "cores": 4, "memory": "8GiB", "walltime": "1-00:00:00"},
            r"cluster: walltime: PBS takes HH:MM:SS",
        ),
        (
            {"kind": "slurm", "cores": 4, "memory": "8GiB", "processes": 8},
            r"processes \(8\) must be <= cores \(4\)",
        ),
        (
            {"kind": "gateway", "adaptive": {"minimum": 3, "maximum": 1}},
            r"cluster\.adaptive: minimum \(3\) must be <= maximum \(1\)",
        ),
        (
            {"kind": "kubernetes", "image": "x", "n_workers": 2, "adaptive": {"maximum": 4}},
            r"either n_workers or adaptive, not both",
        ),
        (
            {"kind": "kubernetes", "image": "x", "resources": {"requests": {"gpu": 1}}},
            r"cluster\.resources\.requests\.gpu: unknown key",
        ),
        (
            {"kind": "local", "memory_limit": "-1"},
            r"cluster\.memory_limit: must be a positive size",
        ),
        ({"kind": "address"}, r"exactly one of address or scheduler_file"),
        ({"kind": "address", "address": "not an address"}, r"cluster\.address: must look like"),
        ({"kind": "yarn"}, r"cluster: kind must be one of local, address, slurm.*got 'yarn'"),
        ({"n_workers": 2}, r"cluster: missing key 'kind'"),
    ],
)
def test_invalid_profile_names_source_and_key_path(data: dict, message: str) -> None:
    with pytest.raises(dc.ProfileError, match=message) as info:
        dc.resolve_profile(data, source="workflow.yaml")
    assert str(info.value).startswith("workflow.yaml: cluster")


def test_profile_file_errors_name_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("kind: local\nn_workers: -2\n")
    with pytest.raises(
        dc.ProfileError, match=r"bad\.yaml: n_workers: .*greater than or equal to 1"
    ):
        dc.resolve_profile(str(p))
    p.write_text("kind: [local\n")
    with pytest.raises(dc.ProfileError, match=r"bad\.yaml: not valid YAML"):
        dc.load_profile(p)
    p.write_text("- local\n")
    with pytest.raises(dc.ProfileError, match=r"bad\.yaml: a cluster profile must be a mapping"):
        dc.load_profile(p)
    p.write_text("kind: local\ndask: nowhere.yaml\n")
    with pytest.raises(dc.ProfileError, match=r"bad\.yaml: dask: cannot read .*nowhere\.yaml"):
        dc.load_profile(p)


@pytest.mark.parametrize(
    ("cores", "kwargs", "expect"),
    [
        (2, {}, (2, 1, 4 * GiB)),
        (4, {}, (4, 1, 2 * GiB)),
        (16, {}, (4, 4, 2 * GiB)),
        (12, {}, (4, 3, 2 * GiB)),
        (9, {}, (3, 3, 8 * GiB // 3)),
        (8, {"processes": False}, (1, 8, 8 * GiB)),
        (8, {"n_workers": 2}, (2, 4, 4 * GiB)),
        (8, {"threads_per_worker": 4}, (2, 4, 4 * GiB)),
        (8, {"n_workers": 2, "memory_limit": "1GiB"}, (2, 4, "1GiB")),
        (8, {"n_workers": 2, "memory_limit": None}, (2, 4, 0)),
    ],
)
def test_local_cluster_sized_to_the_machine(cores: int, kwargs: dict, expect: tuple) -> None:
    prof = dc.LocalProfile(**kwargs)
    kw = dc.local_cluster_kwargs(prof, cores=cores, memory=8 * GiB)
    assert (kw["n_workers"], kw["threads_per_worker"], kw["memory_limit"]) == expect
    assert kw["n_workers"] * kw["threads_per_worker"] <= max(cores, kw["n_workers"])


def test_dask_settings_become_worker_environment() -> None:
    env = dc.dask_env({"distributed": {"worker": {"memory": {"target": 0.6}}}, "a.b-c": "1s"})
    assert env == {"DASK_DISTRIBUTED__WORKER__MEMORY__TARGET": "0.6", "DASK_A__B_C": "1s"}
    # dask reads them back to the same settings
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        collected = dask.config.collect_env()
    assert collected["distributed"]["worker"]["memory"]["target"] == 0.6


def test_kubernetes_kwargs_carry_image_resources_and_dask_env() -> None:
    prof = dc.resolve_profile("kubernetes")
    kw = dc.kubernetes_cluster_kwargs(prof)
    assert kw["image"] == prof.image
    assert kw["resources"] == {
        "requests": {"cpu": "2", "memory": "8Gi"},
        "limits": {"cpu": "2", "memory": "8Gi"},
    }
    assert kw["n_workers"] == prof.adaptive.minimum
    assert kw["env"]["DASK_DISTRIBUTED__WORKER__MEMORY__TARGET"] == "0.6"
    assert kw["env"]["DELTAFLOW_LOG"] == "info"


@pytest.mark.parametrize(("kind", "extra"), [("kubernetes", "k8s"), ("gateway", "gateway")])
def test_missing_optional_backend_names_the_extra(
    kind: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = dc.EXTRAS[kind][0]
    monkeypatch.setitem(sys.modules, module, None)  # import of it raises ImportError
    with pytest.raises(ImportError, match=rf"pip install 'deltaflow\[{extra}\]'"):
        with dc.make_cluster(kind):
            pass


def test_local_client_runs_applies_dask_settings_and_closes() -> None:
    lines: list[str] = []
    spec = {
        "kind": "local",
        "processes": False,
        "n_workers": 1,
        "threads_per_worker": 2,
        "dashboard_address": ":0",
        "dask": {"distributed": {"scheduler": {"worker-saturation": 1.25}}},
    }
    before = dask.config.get("distributed.scheduler.worker-saturation")
    with dc.get_client(spec, echo=lines.append) as client:
        assert dask.config.get("distributed.scheduler.worker-saturation") == 1.25
        assert client.submit(sum, [1, 2, 3]).result() == 6
        info = client.scheduler_info()
        assert len(info["workers"]) == 1
        (worker,) = info["workers"].values()
        assert worker["nthreads"] == 2
    assert client.status == "closed"
    assert dask.config.get("distributed.scheduler.worker-saturation") == before
    assert len(lines) == 1 and "dask dashboard: http" in lines[0]


def test_address_client_leaves_the_scheduler_running() -> None:
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster:
        with dc.get_client(cluster.scheduler_address, echo=None) as client:
            assert client.submit(lambda: 41 + 1).result() == 42
        assert client.status == "closed"
        with Client(cluster) as again:  # the scheduler still serves
            assert again.submit(lambda: 1).result() == 1


def test_local_process_cluster_applies_memory_limit_and_host() -> None:
    spec = {
        "kind": "local",
        "n_workers": 1,
        "threads_per_worker": 1,
        "memory_limit": "1GiB",
        "dashboard_address": ":0",
        "dask": str(CONFIGS / "dask.yaml"),
    }
    with dc.get_client(spec, echo=None) as client:
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        (worker,) = client.scheduler_info()["workers"].values()
        assert worker["memory_limit"] == GiB
        assert client.submit(pow, 2, 10).result() == 1024
        # the shipped dask.yaml's allocator setting reaches the worker process (it keeps
        # large temporaries from faulting in afresh on every allocation)
        env = client.run(lambda: {k: os.environ.get(k) for k in ("MALLOC_TOP_PAD_",)})
        assert list(env.values()) == [{"MALLOC_TOP_PAD_": "67108864"}]


def test_worker_environment_settings_keep_their_exact_names() -> None:
    env = dc.dask_env(
        {"distributed": {"nanny": {"pre-spawn-environ": {"MALLOC_TOP_PAD_": 67108864}}}}
    )
    assert env == {"MALLOC_TOP_PAD_": "67108864"}
