"""Dask clients from cluster profiles: local, address, slurm, pbs, kubernetes, gateway.

A profile is a small YAML mapping with a ``kind`` key, validated in full (unknown keys are
errors, every error names the file and the key path) before anything starts. The shipped
ones live in ``configs/``; a workflow's ``cluster:`` key or the CLI's ``--cluster`` names one
of them by name, by path, inline as a mapping, or gives a scheduler address directly.

``get_client(spec)`` is the one entry point: a context manager that starts (or connects to)
the cluster, prints the dashboard link, yields a :class:`distributed.Client` and tears
everything it started down on exit. Optional back ends (dask-jobqueue, dask-kubernetes,
dask-gateway) are imported only when a profile of that kind is used.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "AddressProfile",
    "dask_env",
    "ClusterProfile",
    "GatewayProfile",
    "KubernetesProfile",
    "LocalProfile",
    "PBSProfile",
    "ProfileError",
    "SLURMProfile",
    "get_client",
    "load_profile",
    "local_cluster_kwargs",
    "make_cluster",
    "profile_paths",
    "resolve_profile",
]

#: Which optional dependency (and pip extra) each non-core kind needs.
EXTRAS: dict[str, tuple[str, str, str]] = {
    # kind: (module to import, distribution, extra)
    "slurm": ("dask_jobqueue", "dask-jobqueue", "hpc"),
    "pbs": ("dask_jobqueue", "dask-jobqueue", "hpc"),
    "kubernetes": ("dask_kubernetes.operator", "dask-kubernetes", "k8s"),
    "gateway": ("dask_gateway", "dask-gateway", "gateway"),
}

_ADDRESS_RE = re.compile(r"^(tcp|tls|inproc|ucx|ws|wss)://\S+$|^[\w.\-]+:\d{1,5}$")
_WALLTIME_RE = re.compile(r"^(\d+-)?\d{1,4}:\d{2}:\d{2}$")


class ProfileError(ValueError):
    """A cluster profile that cannot be used: names the source, the key path and the problem."""


# --------------------------------------------------------------------------------------------
# Profile models
# --------------------------------------------------------------------------------------------


def _check_bytes(value: str | int) -> str | int:
    """Accept ``"4GiB"``/``"512MB"``/an int of bytes; reject anything dask cannot parse."""
    from dask.utils import parse_bytes

    try:
        n = parse_bytes(value) if isinstance(value, str) else int(value)
    except (ValueError, TypeError):
        raise ValueError(f"must be a size such as '4GiB' or '512MB', got {value!r}") from None
    if n <= 0:
        raise ValueError(f"must be a positive size, got {value!r}")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Adaptive(_Model):
    """Adaptive scaling bounds, in workers."""

    minimum: int = Field(0, ge=0, description="fewest workers kept")
    maximum: int = Field(..., ge=1, description="most workers requested")

    @model_validator(mode="after")
    def _ordered(self) -> Adaptive:
        if self.minimum > self.maximum:
            raise ValueError(f"minimum ({self.minimum}) must be <= maximum ({self.maximum})")
        return self


class _Base(_Model):
    dask: dict[str, Any] = Field(
        default_factory=dict,
        description="dask config set while the cluster runs (dotted or nested keys), "
        "or a path to a dask YAML file relative to the profile",
    )

    @field_validator("dask", mode="before")
    @classmethod
    def _dask_mapping(cls, v: Any) -> Any:
        return {} if v is None else v


class _Scaled(_Base):
    """Shared by kinds that request workers: a fixed count or adaptive bounds, not both."""

    n_workers: int | None = Field(None, ge=0, description="fixed number of workers")
    adaptive: Adaptive | None = None
    wait_for_workers: int = Field(
        0, ge=0, description="block until this many workers joined (0: do not wait)"
    )
    wait_timeout: float = Field(600.0, gt=0, description="seconds to wait for workers")

    @model_validator(mode="after")
    def _one_scaling(self) -> _Scaled:
        if self.n_workers is not None and self.adaptive is not None:
            raise ValueError("give either n_workers or adaptive, not both")
        return self


class LocalProfile(_Base):
    """A LocalCluster on this machine, sized to its cores and memory unless told otherwise."""

    kind: Literal["local"] = "local"
    processes: bool = Field(True, description="worker processes (True) or threads in one")
    n_workers: int | None = Field(None, ge=1)
    threads_per_worker: int | None = Field(None, ge=1)
    memory_limit: str | int | None = Field(
        "auto", description="per worker: a size, 'auto' (machine memory / workers) or null"
    )
    host: str | None = "127.0.0.1"
    dashboard_address: str | None = ":8787"
    local_directory: str | None = None

    @field_validator("memory_limit")
    @classmethod
    def _mem(cls, v: str | int | None) -> str | int | None:
        if v is None or v == "auto":
            return v
        return _check_bytes(v)


class AddressProfile(_Base):
    """An already running scheduler, by address or by scheduler file."""

    kind: Literal["address"] = "address"
    address: str | None = None
    scheduler_file: str | None = None
    timeout: float = Field(30.0, gt=0, description="seconds to wait for the scheduler")

    @field_validator("address")
    @classmethod
    def _addr(cls, v: str | None) -> str | None:
        if v is not None and not _ADDRESS_RE.match(v):
            raise ValueError(f"must look like 'tcp://host:port' or 'host:port', got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_target(self) -> AddressProfile:
        if (self.address is None) == (self.scheduler_file is None):
            raise ValueError("give exactly one of address or scheduler_file")
        return self


class _JobQueue(_Scaled):
    cores: int = Field(..., ge=1, description="cores per job")
    memory: str = Field(..., description="memory per job, e.g. '32GiB'")
    processes: int | None = Field(None, ge=1, description="worker processes per job")
    walltime: str = Field("01:00:00", description="HH:MM:SS (SLURM also D-HH:MM:SS)")
    queue: str | None = None
    account: str | None = None
    job_name: str = "deltaflow"
    job_extra_directives: list[str] = Field(default_factory=list)
    job_directives_skip: list[str] = Field(default_factory=list)
    job_script_prologue: list[str] = Field(default_factory=list)
    worker_extra_args: list[str] = Field(default_factory=list)
    local_directory: str | None = None
    log_directory: str | None = None
    interface: str | None = None
    python: str | None = None
    death_timeout: float | None = Field(None, gt=0)
    scheduler_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("memory")
    @classmethod
    def _mem(cls, v: str) -> str:
        return str(_check_bytes(v))

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, v: str) -> str:
        if not _WALLTIME_RE.match(v):
            raise ValueError(f"must be HH:MM:SS or D-HH:MM:SS, got {v!r}")
        return v

    @model_validator(mode="after")
    def _procs(self) -> _JobQueue:
        if self.processes is not None and self.processes > self.cores:
            raise ValueError(f"processes ({self.processes}) must be <= cores ({self.cores})")
        return self


class SLURMProfile(_JobQueue):
    """Workers as SLURM jobs through dask-jobqueue (``pip install deltaflow[hpc]``)."""

    kind: Literal["slurm"] = "slurm"


class PBSProfile(_JobQueue):
    """Workers as PBS/Torque jobs through dask-jobqueue (``pip install deltaflow[hpc]``)."""

    kind: Literal["pbs"] = "pbs"
    resource_spec: str | None = Field(
        None, description="the '-l' select line; default: select=1:ncpus=<cores>:mem=<memory>"
    )

    @model_validator(mode="after")
    def _pbs_walltime(self) -> PBSProfile:
        if "-" in self.walltime:
            raise ValueError(f"walltime: PBS takes HH:MM:SS, got {self.walltime!r}")
        return self


class Resources(_Model):
    """Kubernetes container resources (quantities like '2', '500m', '4Gi')."""

    cpu: str | int | float | None = None
    memory: str | None = None


class ResourceSpec(_Model):
    requests: Resources = Field(default_factory=Resources)
    limits: Resources = Field(default_factory=Resources)

    def as_dict(self) -> dict[str, dict[str, str]]:
        """Resources as the pod spec wants them, empty entries left out."""
        out: dict[str, dict[str, str]] = {}
        for part in ("requests", "limits"):
            vals = {k: str(v) for k, v in getattr(self, part).model_dump().items() if v is not None}
            if vals:
                out[part] = vals
        return out


class KubernetesProfile(_Scaled):
    """A DaskCluster through the dask-kubernetes operator (``pip install deltaflow[k8s]``)."""

    kind: Literal["kubernetes"] = "kubernetes"
    name: str = Field("deltaflow", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    namespace: str | None = None
    image: str = Field(..., min_length=1)
    resources: ResourceSpec = Field(default_factory=ResourceSpec)
    env: dict[str, str] = Field(default_factory=dict)
    worker_command: str = "dask worker"
    scheduler_service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    shutdown_on_close: bool = True
    idle_timeout: int | None = Field(None, ge=0, description="seconds before an idle cluster goes")
    volumes: list[dict[str, Any]] = Field(
        default_factory=list, description="pod volumes (Kubernetes syntax), e.g. a shared PVC"
    )
    volume_mounts: list[dict[str, Any]] = Field(
        default_factory=list, description="where scheduler and worker containers mount them"
    )

    @model_validator(mode="after")
    def _mounts_match(self) -> KubernetesProfile:
        names = {v.get("name") for v in self.volumes}
        for i, m in enumerate(self.volume_mounts):
            if "mountPath" not in m or "name" not in m:
                raise ValueError(f"volume_mounts[{i}]: needs 'name' and 'mountPath'")
            if m["name"] not in names:
                raise ValueError(
                    f"volume_mounts[{i}]: no volume named {m['name']!r} in volumes "
                    f"(have: {', '.join(sorted(map(str, names))) or 'none'})"
                )
        return self


class GatewayProfile(_Scaled):
    """A cluster from a dask-gateway server (``pip install deltaflow[gateway]``)."""

    kind: Literal["gateway"] = "gateway"
    address: str | None = Field(
        None, description="gateway URL; default: dask config gateway.address"
    )
    proxy_address: str | None = None
    public_address: str | None = None
    auth: Literal["kerberos", "jupyterhub", "basic"] | None = None
    cluster_options: dict[str, Any] = Field(default_factory=dict)
    shutdown_on_close: bool = True


ClusterProfile = Annotated[
    LocalProfile | AddressProfile | SLURMProfile | PBSProfile | KubernetesProfile | GatewayProfile,
    Field(discriminator="kind"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(ClusterProfile)
KINDS = ("local", "address", "slurm", "pbs", "kubernetes", "gateway")


# --------------------------------------------------------------------------------------------
# Loading and resolving
# --------------------------------------------------------------------------------------------


def _format_errors(source: str, prefix: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        # the discriminated union puts the kind name first in the path: drop it
        if loc and loc[0] in KINDS:
            loc = loc[1:]
        path = ".".join(([prefix] if prefix else []) + loc) or (prefix or "<profile>")
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "union_tag_invalid":
            msg = f"kind must be one of {', '.join(KINDS)}, got {e['input'].get('kind')!r}"
        elif e["type"] == "union_tag_not_found":
            msg = f"missing key 'kind' (one of {', '.join(KINDS)})"
        elif e["type"] == "missing":
            msg = "required key missing"
        elif "input" in e and not isinstance(e["input"], dict) and "got" not in msg:
            msg = f"{msg}, got {e['input']!r}"
        lines.append(f"{source}: {path}: {msg}")
    return "\n".join(lines)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dask settings into dotted keys, so ``dask.config.set`` merges, not replaces."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def dask_env(settings: Mapping[str, Any]) -> dict[str, str]:
    """Dask settings as ``DASK_*`` environment variables, for workers started elsewhere.

    ``{"distributed": {"worker": {"memory": {"target": 0.6}}}}`` ->
    ``{"DASK_DISTRIBUTED__WORKER__MEMORY__TARGET": "0.6"}`` (dask reads these back with
    ``ast.literal_eval``, so numbers, booleans and lists keep their type).

    Entries of ``distributed.nanny.pre-spawn-environ`` (e.g. ``MALLOC_TOP_PAD_``) are
    exported under their own names instead: dask lowercases the keys it reads from ``DASK_*``
    variables, and the C library reads only the exact upper-case names.
    """
    env = {}
    spawn = "distributed.nanny.pre-spawn-environ."
    for key, value in _flatten(settings).items():
        if key.startswith(spawn):
            env[key[len(spawn) :]] = str(value)
            continue
        name = "DASK_" + key.upper().replace(".", "__").replace("-", "_")
        env[name] = value if isinstance(value, str) else repr(value)
    return env


def load_profile(
    data: Mapping[str, Any] | str | Path,
    *,
    source: str | None = None,
    prefix: str = "",
    base_dir: Path | None = None,
) -> LocalProfile | AddressProfile | SLURMProfile | PBSProfile | KubernetesProfile | GatewayProfile:
    """Validate a profile given as a mapping or a YAML file path.

    ``source`` (the file name) and ``prefix`` (the key path above the profile, e.g.
    ``"cluster"`` inside a workflow) only shape error messages. A ``dask:`` value that is a
    string is read as a dask YAML file relative to ``base_dir`` (the profile's folder).
    Raises :class:`ProfileError` naming the source, key path and problem.
    """
    if isinstance(data, str | Path):
        path = Path(data)
        source = source or str(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise ProfileError(f"{source}: cannot read cluster profile: {err.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ProfileError(f"{source}: not valid YAML: {err}") from None
        base_dir = path.parent
    source = source or "<cluster profile>"
    if not isinstance(data, Mapping):
        where = f"{prefix}: " if prefix else ""
        raise ProfileError(
            f"{source}: {where}a cluster profile must be a mapping with a 'kind' key, "
            f"got {type(data).__name__}"
        )
    data = dict(data)
    dask_cfg = data.get("dask")
    if isinstance(dask_cfg, str):
        cfg_path = Path(dask_cfg)
        if not cfg_path.is_absolute() and base_dir is not None:
            cfg_path = base_dir / cfg_path
        key = f"{prefix}.dask" if prefix else "dask"
        try:
            loaded = yaml.safe_load(cfg_path.read_text()) or {}
        except OSError as err:
            raise ProfileError(f"{source}: {key}: cannot read {cfg_path}: {err.strerror}") from None
        if not isinstance(loaded, Mapping):
            raise ProfileError(f"{source}: {key}: {cfg_path} must hold a mapping")
        data["dask"] = loaded
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as err:
        raise ProfileError(_format_errors(source, prefix, err)) from None


def profile_paths() -> list[Path]:
    """Folders searched for a profile given by name, first match wins.

    ``$DELTAFLOW_PROFILE_PATH`` (os.pathsep-separated), ``./configs``, then the profiles
    shipped with deltaflow.
    """
    dirs = [Path(p) for p in os.environ.get("DELTAFLOW_PROFILE_PATH", "").split(os.pathsep) if p]
    dirs.append(Path.cwd() / "configs")
    here = Path(__file__).resolve().parent
    dirs += [here.parent / "configs", here / "_configs"]
    seen: list[Path] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


def _find_named(name: str) -> Path | None:
    for d in profile_paths():
        for suffix in (".yaml", ".yml"):
            p = d / f"{name}{suffix}"
            if p.is_file():
                return p
    return None


def resolve_profile(
    spec: Any = None, *, source: str | None = None, prefix: str = "cluster"
) -> LocalProfile | AddressProfile | SLURMProfile | PBSProfile | KubernetesProfile | GatewayProfile:
    """Turn whatever names a cluster into a validated profile.

    ``None`` or ``"local"`` (without a ``local.yaml`` on the search path): a LocalCluster
    sized to the machine. A scheduler address (``tcp://host:8786``, ``host:8786``): an
    :class:`AddressProfile`. A path to a YAML file, or a name found on
    :func:`profile_paths` (``"slurm"`` -> ``configs/slurm.yaml``). A mapping: validated
    inline (``source``/``prefix`` name it in errors). A profile model: returned as is.
    """
    if isinstance(spec, _Base):
        return spec  # type: ignore[return-value]
    if spec is None:
        spec = "local"
    if isinstance(spec, Mapping):
        return load_profile(spec, source=source or "<cluster>", prefix=prefix)
    if isinstance(spec, Path):
        return load_profile(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ProfileError(
            f"{source or '<cluster>'}: {prefix}: expected a profile name, a profile file, "
            f"a scheduler address or a mapping, got {spec!r}"
        )
    spec = spec.strip()
    if _ADDRESS_RE.match(spec) and not spec.endswith((".yaml", ".yml")):
        return AddressProfile(address=spec)
    path = Path(spec).expanduser()
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ProfileError(f"{source or '<cluster>'}: {prefix}: no profile file {spec!r}")
        return load_profile(path)
    found = _find_named(spec)
    if found is not None:
        return load_profile(found)
    if spec == "local":
        return LocalProfile()
    known = sorted(
        {
            p.stem
            for d in profile_paths()
            if d.is_dir()
            for p in d.glob("*.y*ml")
            if p.stem != "dask"
        }
    )
    raise ProfileError(
        f"{source or '<cluster>'}: {prefix}: unknown cluster {spec!r}; give 'local', a "
        f"scheduler address (tcp://host:port), a profile file, or one of: "
        f"{', '.join(known) or '(no profiles found)'}"
    )


# --------------------------------------------------------------------------------------------
# Building clusters
# --------------------------------------------------------------------------------------------


def _require(kind: str) -> Any:
    module, dist, extra = EXTRAS[kind]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"cluster kind {kind!r} needs {dist}, which is not installed "
            f"({err}); install it with: pip install 'deltaflow[{extra}]'"
        ) from None


def _split_cores(cores: int) -> tuple[int, int]:
    """(workers, threads per worker) for a process-based local cluster on ``cores`` cores.

    Up to 4 cores: one single-threaded worker per core. Beyond: the fewest workers that is
    a divisor of ``cores`` and at least its square root, so no worker gets more threads
    than there are workers (GIL-bound steps such as Zarr encoding scale over processes;
    nogil kernels over threads).
    """
    if cores <= 4:
        return cores, 1
    root = math.isqrt(cores - 1) + 1  # ceil(sqrt(cores))
    workers = next(d for d in range(root, cores + 1) if cores % d == 0)
    return workers, cores // workers


def local_cluster_kwargs(
    profile: LocalProfile, *, cores: int | None = None, memory: int | None = None
) -> dict[str, Any]:
    """The LocalCluster keyword arguments for a local profile on a machine of this size.

    ``cores`` and ``memory`` (bytes) default to what dask sees (cgroup limits included).
    """
    from dask.system import CPU_COUNT
    from distributed.system import MEMORY_LIMIT

    cores = cores or CPU_COUNT
    memory = memory or MEMORY_LIMIT
    if not profile.processes:
        n_workers = profile.n_workers or 1
        threads = profile.threads_per_worker or max(1, cores // n_workers)
    elif profile.n_workers and profile.threads_per_worker:
        n_workers, threads = profile.n_workers, profile.threads_per_worker
    elif profile.n_workers:
        n_workers, threads = profile.n_workers, max(1, cores // profile.n_workers)
    elif profile.threads_per_worker:
        threads = profile.threads_per_worker
        n_workers = max(1, cores // threads)
    else:
        n_workers, threads = _split_cores(cores)
    if profile.memory_limit == "auto":
        mem_limit: int | str | None = memory // n_workers
    else:
        mem_limit = profile.memory_limit
    kwargs: dict[str, Any] = {
        "n_workers": n_workers,
        "threads_per_worker": threads,
        "processes": profile.processes,
        "memory_limit": mem_limit if mem_limit is not None else 0,
        "dashboard_address": profile.dashboard_address,
    }
    if profile.processes:  # threads-only clusters talk in-process: no host to bind
        kwargs["host"] = profile.host
    if profile.local_directory:
        kwargs["local_directory"] = profile.local_directory
    return kwargs


def _jobqueue_kwargs(profile: SLURMProfile | PBSProfile) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "cores": profile.cores,
        "memory": profile.memory,
        "walltime": profile.walltime,
        "queue": profile.queue,
        "account": profile.account,
        "job_name": profile.job_name,
        "job_extra_directives": list(profile.job_extra_directives),
        "job_directives_skip": list(profile.job_directives_skip),
        "job_script_prologue": [
            f"export {k}={shlex.quote(v)}" for k, v in dask_env(profile.dask).items()
        ]
        + list(profile.job_script_prologue),
        "worker_extra_args": list(profile.worker_extra_args),
        "scheduler_options": dict(profile.scheduler_options),
    }
    for key in (
        "processes",
        "local_directory",
        "log_directory",
        "interface",
        "python",
        "death_timeout",
    ):
        value = getattr(profile, key)
        if value is not None:
            kw[key] = value
    if isinstance(profile, PBSProfile) and profile.resource_spec:
        kw["resource_spec"] = profile.resource_spec
    return kw


def kubernetes_cluster_kwargs(profile: KubernetesProfile) -> dict[str, Any]:
    """The ``KubeCluster`` keyword arguments for a kubernetes profile."""
    kw: dict[str, Any] = {
        "name": profile.name,
        "image": profile.image,
        "n_workers": profile.n_workers if profile.n_workers is not None else 0,
        "resources": profile.resources.as_dict(),
        "env": {**dask_env(profile.dask), **profile.env},
        "worker_command": profile.worker_command,
        "scheduler_service_type": profile.scheduler_service_type,
        "shutdown_on_close": profile.shutdown_on_close,
    }
    if profile.adaptive is not None:
        kw["n_workers"] = profile.adaptive.minimum
    if profile.namespace:
        kw["namespace"] = profile.namespace
    if profile.idle_timeout is not None:
        kw["idle_timeout"] = profile.idle_timeout
    return kw


def add_volumes(spec: dict[str, Any], profile: KubernetesProfile) -> dict[str, Any]:
    """Put the profile's volumes into the scheduler and worker pods of an operator spec.

    ``spec`` is a DaskCluster resource as ``make_cluster_spec`` builds it; returned changed.
    """
    if not profile.volumes:
        return spec
    for part in ("scheduler", "worker"):
        pod = spec["spec"][part]["spec"]
        pod.setdefault("volumes", []).extend(dict(v) for v in profile.volumes)
        for container in pod["containers"]:
            container.setdefault("volumeMounts", []).extend(dict(m) for m in profile.volume_mounts)
    return spec


def _kube_cluster(op: Any, profile: KubernetesProfile) -> Any:
    kw = kubernetes_cluster_kwargs(profile)
    if not profile.volumes:
        return op.KubeCluster(**kw)
    # the operator's kwargs have no volumes: build the resource and add them
    spec = op.make_cluster_spec(
        name=kw["name"],
        image=kw["image"],
        n_workers=kw["n_workers"],
        resources=kw["resources"],
        env=kw["env"],
        worker_command=kw["worker_command"],
        scheduler_service_type=kw["scheduler_service_type"],
        idle_timeout=kw.get("idle_timeout", 0),
    )
    return op.KubeCluster(
        custom_cluster_spec=add_volumes(spec, profile),
        namespace=kw.get("namespace"),
        shutdown_on_close=kw["shutdown_on_close"],
    )


def _scale(cluster: Any, profile: _Scaled) -> None:
    if profile.adaptive is not None:
        cluster.adapt(minimum=profile.adaptive.minimum, maximum=profile.adaptive.maximum)
    elif profile.n_workers:
        cluster.scale(profile.n_workers)


@contextmanager
def make_cluster(profile: Any) -> Iterator[Any]:
    """Start the cluster object a profile describes (not for ``address``), closed on exit.

    For ``slurm``/``pbs`` this starts the scheduler here and submits no job until scaled,
    so ``cluster.job_script()`` shows exactly what would be submitted.
    """
    profile = resolve_profile(profile)
    if isinstance(profile, LocalProfile):
        from distributed import LocalCluster

        cluster = LocalCluster(**local_cluster_kwargs(profile))
    elif isinstance(profile, SLURMProfile | PBSProfile):
        jq = _require(profile.kind)
        cls = jq.SLURMCluster if isinstance(profile, SLURMProfile) else jq.PBSCluster
        cluster = cls(**_jobqueue_kwargs(profile))
    elif isinstance(profile, KubernetesProfile):
        op = _require("kubernetes")
        cluster = _kube_cluster(op, profile)
    elif isinstance(profile, GatewayProfile):
        gw = _require("gateway")
        gateway = gw.Gateway(
            address=profile.address,
            proxy_address=profile.proxy_address,
            public_address=profile.public_address,
            auth=profile.auth,
        )
        try:
            cluster = gateway.new_cluster(
                shutdown_on_close=profile.shutdown_on_close, **profile.cluster_options
            )
        except BaseException:
            gateway.close()
            raise
        try:
            yield cluster
        finally:
            try:
                if profile.shutdown_on_close:
                    cluster.shutdown()
                else:
                    cluster.close()
            finally:
                gateway.close()
        return
    else:
        raise ProfileError(f"cluster kind {profile.kind!r} has no cluster object to start")
    try:
        yield cluster
    finally:
        cluster.close()


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def get_client(spec: Any = None, *, echo: Callable[[str], None] | None = _stderr) -> Iterator[Any]:
    """A :class:`distributed.Client` on the cluster ``spec`` names, torn down on exit.

    ``spec``: ``None``/``"local"``, a scheduler address, a profile name or file, a mapping or
    a profile model (see :func:`resolve_profile`). The profile's ``dask:`` settings hold for
    the life of the cluster. ``echo`` receives one line with the dashboard link (None: quiet).
    Clusters this function started are closed on exit; an ``address`` scheduler is left running.
    """
    import dask
    from distributed import Client

    profile = resolve_profile(spec)
    with ExitStack() as stack:
        stack.enter_context(dask.config.set(_flatten(profile.dask)))
        if isinstance(profile, AddressProfile):
            if profile.scheduler_file:
                client = Client(scheduler_file=profile.scheduler_file, timeout=profile.timeout)
            else:
                client = Client(profile.address, timeout=profile.timeout)
            stack.callback(client.close)
            where = f"scheduler {client.scheduler.address}"
        else:
            cluster = stack.enter_context(make_cluster(profile))
            if isinstance(profile, _Scaled):
                _scale(cluster, profile)
            client = cluster.get_client() if profile.kind == "gateway" else Client(cluster)
            stack.callback(client.close)
            if isinstance(profile, _Scaled) and profile.wait_for_workers:
                client.wait_for_workers(profile.wait_for_workers, timeout=profile.wait_timeout)
            where = f"{profile.kind} cluster"
        if echo is not None:
            link = client.dashboard_link or "(no dashboard)"
            echo(f"deltaflow: {where}, dask dashboard: {link}")
        yield client
