"""Workflow files: safe YAML loading, overrides, validation into pydantic models, errors.

A workflow is a mapping with ``name``, ``source``, ``steps``, ``sink`` and optionally
``cluster``, ``description`` and ``plot``. It is loaded with ``yaml.SafeLoader`` only (no
tag can import or run code), overridden, validated in full, and every problem is reported
as ``FILE:LINE: key.path[0].sub: message``.

Overrides, applied in this order (later wins):

1. environment variables ``DELTAFLOW__KEY__PATH=value``: the name after the prefix,
   split on double underscores and lower-cased, is the key path; a part made of digits is
   a list index. ``DELTAFLOW__STEPS__0__DIFFERENTIATE__WINDOW=31`` sets
   ``steps[0].differentiate.window``; ``DELTAFLOW__SINK__PATH=out/today.zarr`` sets
   ``sink.path``. (Single-underscore ``DELTAFLOW_*`` variables are not overrides.)
2. ``--set key.path=value`` strings: ``steps[0].differentiate.window=31``.

Values are parsed as YAML scalars/flow collections (``31`` is an int, ``true`` a bool,
``[1, 2]`` a list, ``{a: 1}`` a mapping, ``"31"`` a string).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    create_model,
    field_validator,
)

from .._device import Device

ENV_PREFIX = "DELTAFLOW__"

KeyPath = tuple[str | int, ...]


# --------------------------------------------------------------------------- errors


@dataclass
class Problem:
    """One validation problem: where (key path) and what."""

    path: KeyPath
    message: str


class ConfigError(ValueError):
    """An invalid workflow: one or more problems, each with its key path and YAML line."""

    def __init__(
        self,
        problems: Iterable[Problem] | str,
        *,
        file: str | os.PathLike[str] | None = None,
        lines: Mapping[KeyPath, int] | None = None,
    ):
        if isinstance(problems, str):
            problems = [Problem((), problems)]
        self.problems = list(problems)
        self.file = None if file is None else str(file)
        self.lines = dict(lines or {})
        super().__init__(self.render())

    def with_source(self, file: str | None, lines: Mapping[KeyPath, int]) -> ConfigError:
        """The same problems, located in ``file`` with its YAML line marks."""
        return ConfigError(self.problems, file=file, lines=lines)

    def line_of(self, path: KeyPath) -> int | None:
        """The YAML line of ``path`` or of its nearest ancestor that has one."""
        for k in range(len(path), -1, -1):
            if path[:k] in self.lines:
                return self.lines[path[:k]]
        return None

    def render(self) -> str:
        """One line per problem: ``file:line: key.path: message``."""
        out = []
        for p in self.problems:
            where = ""
            if self.file:
                line = self.line_of(p.path)
                where = f"{self.file}:{line}: " if line else f"{self.file}: "
            key = format_path(p.path)
            out.append(f"{where}{key}: {p.message}" if key else f"{where}{p.message}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


def format_path(path: KeyPath) -> str:
    """``('steps', 1, 'differentiate', 'window')`` -> ``steps[1].differentiate.window``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def parse_path(text: str) -> KeyPath:
    """``steps[1].differentiate.window`` -> ``('steps', 1, 'differentiate', 'window')``."""
    if not re.fullmatch(r"[A-Za-z_][\w-]*(\[\d+\])*(\.[A-Za-z_][\w-]*(\[\d+\])*)*", text):
        raise ConfigError(
            f"override key {text!r} is not a key path like steps[0].differentiate.window"
        )
    parts: list[str | int] = []
    for piece in text.split("."):
        name, *idx = re.split(r"\[", piece)
        parts.append(name)
        parts.extend(int(i.rstrip("]")) for i in idx)
    return tuple(parts)


def _drop_tags(loc: list[Any], data: Any) -> list[Any]:
    """Remove union tags from an error location by walking the data it refers to."""
    out: list[Any] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part not in cur and cur.get("kind") == part:
            continue  # a `kind`-discriminated union adds its tag to the location
        out.append(part)
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        else:
            cur = None
    return out


def problems_from_validation(
    err: ValidationError, prefix: KeyPath = (), data: Any = None
) -> list[Problem]:
    """Turn pydantic errors into problems with clean key paths and messages."""
    out = []
    for e in err.errors():
        loc = _drop_tags(list(e["loc"]), data)
        # tagged unions repeat the tag: steps.1.differentiate.differentiate.window
        i = 0
        while i + 1 < len(loc):
            if loc[i] == loc[i + 1] and isinstance(loc[i], str):
                del loc[i]
            else:
                i += 1
        loc = [p for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
        msg = str(e["msg"])
        for pre in ("Value error, ", "Assertion failed, "):
            if msg.startswith(pre):
                msg = msg[len(pre) :]
        kind = e["type"]
        if kind == "extra_forbidden":
            msg = "unknown key"
        elif kind == "missing":
            msg = "missing required key"
        elif "input" in e and "got " not in msg and kind not in ("union_tag_invalid", "step"):
            shown = e["input"]
            if isinstance(shown, dict | list):
                shown = type(shown).__name__
            msg = f"{msg}, got {shown!r}"
        out.append(Problem(prefix + tuple(loc), msg))
    return out


# --------------------------------------------------------------------------- YAML


def load_yaml(text: str, file: str | None = None) -> tuple[Any, dict[KeyPath, int]]:
    """Parse YAML safely; return the data and a map from key path to 1-based line number."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{file or '<yaml>'}{line}: invalid YAML: {problem}") from None
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _marks(node, (), lines)
    return data, lines


def _marks(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                sub = (*path, k.value)
                lines[sub] = k.start_mark.line + 1
                _marks(v, sub, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            lines[(*path, i)] = v.start_mark.line + 1
            _marks(v, (*path, i), lines)


def parse_value(text: str) -> Any:
    """An override value: YAML scalar or flow collection, safely parsed."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def set_path(data: Any, path: KeyPath, value: Any, *, origin: str) -> None:
    """Set ``value`` at ``path`` inside nested dicts/lists, creating mappings as needed."""
    cur = data
    for depth, part in enumerate(path[:-1]):
        nxt = path[depth + 1]
        if isinstance(part, int):
            if not isinstance(cur, list) or not -len(cur) <= part < len(cur):
                size = len(cur) if isinstance(cur, list) else 0
                raise ConfigError(
                    f"{origin}: {format_path(path[: depth + 1])}: no list item {part} "
                    f"(the list has {size})"
                )
            cur = cur[part]
        else:
            if not isinstance(cur, dict):
                raise ConfigError(f"{origin}: {format_path(path[:depth])} is not a mapping")
            if part not in cur or cur[part] is None:
                cur[part] = [] if isinstance(nxt, int) else {}
            cur = cur[part]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(cur, list) or not -len(cur) <= last < len(cur):
            raise ConfigError(f"{origin}: {format_path(path)}: no such list item")
        cur[last] = value
    else:
        if not isinstance(cur, dict):
            raise ConfigError(f"{origin}: {format_path(path[:-1])} is not a mapping")
        cur[last] = value


def env_overrides(environ: Mapping[str, str]) -> list[tuple[KeyPath, Any, str]]:
    """``DELTAFLOW__A__B__0__C=v`` environment variables as (path, value, origin)."""
    out = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].split("__")
        path: KeyPath = tuple(int(p) if p.isdigit() else p.lower() for p in parts)
        if any(p == "" for p in path):
            raise ConfigError(f"environment variable {name}: empty key in the path")
        out.append((path, parse_value(environ[name]), f"environment {name}"))
    return out


def cli_overrides(overrides: Iterable[str]) -> list[tuple[KeyPath, Any, str]]:
    """``key.path=value`` strings as (path, value, origin)."""
    out = []
    for text in overrides:
        if "=" not in text:
            raise ConfigError(f"--set {text!r}: expected key.path=value")
        key, value = text.split("=", 1)
        out.append((parse_path(key.strip()), parse_value(value), f"--set {text}"))
    return out


# --------------------------------------------------------------------------- models


class StrictModel(BaseModel):
    """Base of every workflow model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_ADDRESS = re.compile(r"^((tcp|tls|inproc|ucx|ws|wss)://\S+|[\w.-]+:\d{2,5})$")
_PROFILE = re.compile(r"^[A-Za-z][\w-]*$")


def check_cluster(value: Any) -> Any:
    """Accept 'local', a profile name, a profile file (.yaml/.yml), a scheduler address, or
    an inline profile mapping (checked in full by ``deltaflow.cluster`` before the run)."""
    if value is None or value == "local" or isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    if _ADDRESS.match(value) or value.endswith((".yaml", ".yml")) or _PROFILE.match(value):
        return value
    raise ValueError(
        "expected 'local', a profile name (e.g. slurm), a profile file (configs/x.yaml) or a "
        f"scheduler address (tcp://host:8786), got {value!r}"
    )


def cluster_kind(value: Any) -> Literal["threads", "local", "address", "file", "profile"]:
    """Which of the accepted shapes a cluster value has (None: in-process threads)."""
    if value is None:
        return "threads"
    if value == "local":
        return "local"
    if isinstance(value, dict):
        return "profile"
    if _ADDRESS.match(value):
        return "address"
    if value.endswith((".yaml", ".yml")):
        return "file"
    return "profile"


class PlotConfig(StrictModel):
    """A figure drawn after the run: a signal and its derivatives along one dim."""

    var: str = Field(description="variable in the store to plot with its derivatives")
    out: str = Field(description="PNG path (relative paths are relative to the working dir)")
    sel: dict[str, Any] = Field(
        default_factory=dict, description="label selection of one series, e.g. {sensor: 0}"
    )
    max_points: int = Field(5000, ge=10, description="points drawn at most (decimated)")


def _step_discriminator(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value))
    if isinstance(value, BaseModel) and len(type(value).model_fields) == 1:
        return next(iter(type(value).model_fields))
    return None


_MODEL_CACHE: dict[tuple[Any, ...], type[BaseModel]] = {}


def workflow_model() -> type[BaseModel]:
    """The pydantic model of a workflow, built from the registered sources and steps."""
    from ..io import SinkConfig
    from .sources import SOURCES
    from .steps import STEPS

    key = (tuple(SOURCES.items()), tuple(STEPS.items()))
    if key in _MODEL_CACHE:
        return _MODEL_CACHE[key]

    items = []
    for name, cls in STEPS.items():
        wrapper = create_model(
            f"{cls.__name__}Item",
            __config__=ConfigDict(extra="forbid", frozen=True),
            **{name: (cls, Field(description=(cls.__doc__ or "").strip().splitlines()[0]))},
        )
        items.append(Annotated[wrapper, Tag(name)])
    step_item = Annotated[
        Union[tuple(items)],  # noqa: UP007
        Discriminator(
            _step_discriminator,
            custom_error_type="step",
            custom_error_message="each step is a mapping with exactly one key, one of: "
            + ", ".join(STEPS),
            custom_error_context={"steps": ", ".join(STEPS)},
        ),
    ]
    source_union = Annotated[
        Union[tuple(SOURCES.values())],  # noqa: UP007
        Field(discriminator="kind"),
    ]

    class _Workflow(StrictModel):
        name: str = Field(
            pattern=r"^[A-Za-z0-9][\w.-]*$", description="workflow name (letters, digits, ._-)"
        )
        description: str = Field("", description="free text")
        source: source_union = Field(description="where the data comes from")  # type: ignore[valid-type]
        steps: list[step_item] = Field(  # type: ignore[valid-type]
            default_factory=list, description="steps applied in order"
        )
        sink: SinkConfig = Field(description="where the results are written")
        cluster: str | dict[str, Any] | None = Field(
            None,
            description="where to run: omitted/null = threads in this process; 'local' (a "
            "LocalCluster), a profile name (configs/<name>.yaml) or file, an inline profile "
            "mapping, or a scheduler address (tcp://host:8786)",
        )
        plot: PlotConfig | None = Field(None, description="a figure drawn after the run")
        device: Device = Field(
            "cpu",
            description="where the steps compute: 'cpu', or 'gpu' (the source's numeric "
            "variables move to the CUDA device through CuPy chunk by chunk and the results "
            "come back to host memory at the sink; methods without a GPU path are refused "
            "unless allow_host)",
        )
        allow_host: bool = Field(
            False,
            description="with device 'gpu': let differentiate and smooth steps whose method "
            "has no GPU path run on host copies of each block (results go back to the GPU)",
        )

        _check_cluster = field_validator("cluster")(classmethod(lambda cls, v: check_cluster(v)))

        def step_list(self) -> list[Any]:
            """The step models in order (each with ``kind`` and ``run``)."""
            return [getattr(item, next(iter(type(item).model_fields))) for item in self.steps]

    _Workflow.__name__ = "Workflow"
    _Workflow.__qualname__ = "Workflow"
    _MODEL_CACHE[key] = _Workflow
    return _Workflow


def json_schema() -> dict[str, Any]:
    """The JSON Schema of workflow files (what ``deltaflow schema`` prints)."""
    schema = workflow_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "deltaflow workflow"
    return schema


# --------------------------------------------------------------------------- loading


@dataclass
class LoadedWorkflow:
    """A validated workflow with where it came from."""

    config: Any
    raw: dict[str, Any]
    file: str | None
    lines: dict[KeyPath, int] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        """Hash of the resolved workflow, ignoring sink.mode, cluster, device and allow_host
        (how it is run)."""
        return digest(self.config, ignore_mode=True)

    @property
    def pipeline_sha256(self) -> str:
        """Hash of what shapes the output (steps and sink layout), ignoring the source window."""
        d = self.config.model_dump(mode="json")
        d = {"steps": d["steps"], "sink": {k: v for k, v in d["sink"].items() if k != "mode"}}
        d["source_kind"] = self.config.source.kind
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def error(self, problems: Iterable[Problem] | str) -> ConfigError:
        """A ConfigError located in this workflow's file."""
        return ConfigError(problems, file=self.file, lines=self.lines)


def digest(config: BaseModel, *, ignore_mode: bool = True) -> str:
    """sha256 of the canonical JSON of a validated workflow."""
    d = config.model_dump(mode="json")
    d.pop("cluster", None)
    d.pop("device", None)  # where it runs, like cluster: results agree to rounding
    d.pop("allow_host", None)
    if ignore_mode:
        d["sink"] = {k: v for k, v in d["sink"].items() if k != "mode"}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def load_workflow(
    config_or_path: str | os.PathLike[str] | Mapping[str, Any],
    *,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> LoadedWorkflow:
    """Load, override and validate a workflow (path, YAML text path, or mapping).

    Raises ConfigError listing every problem with its file, line and key path.
    """
    file: str | None = None
    if isinstance(config_or_path, Mapping):
        data: Any = json.loads(json.dumps(config_or_path, default=str))
        lines: dict[KeyPath, int] = {}
    else:
        path = Path(config_or_path)
        file = str(config_or_path)
        if not path.is_file():
            raise ConfigError(f"workflow file {file} does not exist")
        data, lines = load_yaml(path.read_text(), file)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem((), "a workflow must be a mapping")], file=file, lines=lines)
    env = os.environ if environ is None else environ
    for key, value, origin in [*env_overrides(env), *cli_overrides(overrides)]:
        set_path(data, key, value, origin=origin)
    model = workflow_model()
    try:
        config = model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(
            problems_from_validation(err, data=data), file=file, lines=lines
        ) from None
    return LoadedWorkflow(config=config, raw=data, file=file, lines=lines)
