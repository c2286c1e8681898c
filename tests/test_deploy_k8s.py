"""Kubernetes files checked against the schemas the cluster and the operator enforce.

No cluster runs here, so every manifest is validated offline: built-in kinds against the
Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields are errors), the
DaskJob and the DaskCluster that a kubernetes profile builds against the dask-kubernetes
operator's own CRDs (shipped in its wheel), made strict the same way (the API server would
silently prune an unknown field, which is how a misspelt key gets lost), and the Helm values
against the chart's values file.
"""

from __future__ import annotations

import copy
import functools
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from deltaflow import cluster as dc

kv = pytest.importorskip("kubernetes_validate")
jsonschema = pytest.importorskip("jsonschema")
operator = pytest.importorskip("dask_kubernetes.operator")

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
# the oldest Kubernetes release these manifests are meant for (CronJob timeZone, PodSecurity)
KUBERNETES = "1.27.0"
CHART = Path(operator.__file__).parent / "deployment" / "helm" / "dask-kubernetes-operator"
NOT_MANIFESTS = {"operator-values.yaml", "profile.yaml"}  # Helm values, a deltaflow profile


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name in NOT_MANIFESTS:
            continue
        out += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def _strict(schema: Any) -> Any:
    """The schema with every declared object closed to undeclared keys."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def _crd_validator(name: str) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are ~9,000 lines
    crd = yaml.load((CHART / "crds" / f"{name}.yaml").read_text(), Loader=loader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


def _errors(validator: Any, doc: dict[str, Any]) -> list[str]:
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)
    ]


BUILTIN = [(f, d) for f, d in _manifests() if d["kind"] != "DaskJob"]


@pytest.mark.parametrize(
    ("file", "doc"), BUILTIN, ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in BUILTIN]
)
def test_builtin_manifests_match_the_kubernetes_schema(file: str, doc: dict[str, Any]) -> None:
    kv.validate(doc, KUBERNETES, strict=True)


def test_daskjob_matches_the_operator_crd_and_its_pods_the_pod_schema() -> None:
    (job,) = [d for _, d in _manifests() if d["kind"] == "DaskJob"]
    assert job["apiVersion"] == "kubernetes.dask.org/v1"
    assert _errors(_crd_validator("daskjob"), job) == []
    cluster = job["spec"]["cluster"]["spec"]
    pods = [job["spec"]["job"], cluster["scheduler"], cluster["worker"]]
    for i, pod in enumerate(pods):
        kv.validate(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}"}, "spec": pod["spec"]},
            KUBERNETES,
            strict=True,
        )


def test_strict_crd_check_catches_a_misspelt_key() -> None:
    (job,) = [d for _, d in _manifests() if d["kind"] == "DaskJob"]
    bad = copy.deepcopy(job)
    worker = bad["spec"]["cluster"]["spec"]["worker"]
    worker["replica"] = worker.pop("replicas")
    errors = _errors(_crd_validator("daskjob"), bad)
    assert any("replica" in e for e in errors), errors


@pytest.mark.parametrize("profile", ["kubernetes", str(K8S / "profile.yaml")])
def test_profiles_build_a_valid_daskcluster(profile: str) -> None:
    """What ``deltaflow run --cluster kubernetes`` hands the operator, checked offline."""
    prof = dc.resolve_profile(profile)
    kw = dc.kubernetes_cluster_kwargs(prof)
    accepted = inspect.signature(operator.KubeCluster).parameters
    assert set(kw) <= set(accepted), set(kw) - set(accepted)
    spec_kw = {
        k: v for k, v in kw.items() if k in inspect.signature(operator.make_cluster_spec).parameters
    }
    spec = dc.add_volumes(operator.make_cluster_spec(**spec_kw), prof)
    assert spec["kind"] == "DaskCluster"
    assert _errors(_crd_validator("daskcluster"), spec) == []
    for part in ("scheduler", "worker"):
        (container,) = spec["spec"][part]["spec"]["containers"]
        assert container["image"] == prof.image
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        # the shipped dask settings reach every pod (memory thresholds, allocator padding)
        assert env.get("DASK_DISTRIBUTED__WORKER__MEMORY__TARGET") == "0.6"
        assert env.get("MALLOC_TOP_PAD_") == "67108864"


def _keys(d: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict) and v:
            out |= _keys(v, f"{prefix}{k}.")
    return out


def test_operator_values_use_keys_the_chart_has() -> None:
    ours = yaml.safe_load((K8S / "operator-values.yaml").read_text())
    chart = yaml.safe_load((CHART / "values.yaml").read_text())
    known = _keys(chart)
    # free-form blocks in the chart (empty there: any pod-spec content is passed through)
    free = {k for k, v in chart.items() if v == {} or v == []}
    unknown = {k for k in _keys(ours) if k not in known and k.split(".")[0] not in free}
    assert unknown == set()
