"""Check a Ray cluster config (`ray up` YAML) before it costs a cluster launch.

Two layers. First Ray's own checks, run the way `ray up` runs them: the file is filled out
with the provider's defaults (`prepare_config`) and validated against Ray's JSON schema
(`ray/autoscaler/ray-schema.json`, via `validate_config`). Then what Ray does not check but a
mixtune cluster needs:

- resources are whole numbers: Ray's schema says "integer", but JSON Schema draft 7 counts
  4.0 as one, and the `--num-cpus`/`--num-gpus`/`--resources` flags of `ray start` commands
  are not checked at all;
- the head and every worker type install mixtune at a fixed version: from a folder synced by
  `file_mounts` (the checkout `ray up` runs from), `mixtune==X`, or a git URL with `@ref`;
- the MLflow server, if the head starts one, is not bound to every interface and its port is
  not opened to 0.0.0.0/0 (or ::/0) by the AWS security group;
- the values a shipped config leaves for the user to fill in (the S3 bucket's name, the SSH
  range, which is a documentation range) are filled in: a valid file that still holds them
  is "not ready" (exit 1), not "ok".

Every problem is one line that names the field or command at fault.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import ipaddress
import json
import logging
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner import compat
from tuner.errors import UserError

MLFLOW_DEFAULT_PORT = 5000
WORLD = ("0.0.0.0/0", "::/0")
ANY_HOST = ("0.0.0.0", "::", "[::]", "*")
# every list of shell commands a config may hold, global or per node type
COMMAND_LISTS = ("initialization_commands", "setup_commands", "head_setup_commands",
                 "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")


class ClusterConfigError(UserError):
    """A cluster config that `ray up` would reject or that breaks a mixtune invariant; one line."""


@dataclass
class ClusterReport:
    """What a valid config describes, for the one-line summary of `mixtune cluster-check`."""

    path: str
    provider: str
    node_types: list[str]
    mlflow_port: int | None  # None: the head starts no MLflow server
    placeholders: tuple[str, ...] = ()  # values still to fill in (placeholders()): not ready to launch

    @property
    def ready(self) -> bool:
        return not self.placeholders

    def line(self) -> str:
        mlflow = f"MLflow on port {self.mlflow_port}, private" if self.mlflow_port else "no MLflow server"
        if self.placeholders:
            return (f"{self.path}: not ready: valid for Ray, but it still holds placeholders to replace: "
                    f"{'; '.join(self.placeholders)}")
        return f"{self.path}: ok ({self.provider} provider; node types {', '.join(self.node_types)}; {mlflow})"


# ----------------------------------------------------------------------------- loading
def load_cluster_file(path: str | Path) -> dict[str, Any]:
    from trainables.core.files import read_yaml

    p = Path(path)
    config = read_yaml(p, ClusterConfigError, "cluster config")
    if not isinstance(config, dict):
        raise ClusterConfigError(f"{p}: a cluster config is a mapping (cluster_name, provider, ...), "
                                 f"not {type(config).__name__}")
    return config


# ----------------------------------------------------------------------------- Ray's own checks
def _field(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _schema_error(error) -> ClusterConfigError:
    message = " ".join(error.message.split())  # the message quotes the offending value: keep it short
    message = message if len(message) <= 240 else message[:237] + "..."
    return ClusterConfigError(f"{_field(error.absolute_path)}: {message} (Ray's cluster schema)")


def ray_validate(config: dict[str, Any]) -> dict[str, Any]:
    """Ray's schema and cross-field checks, as `ray up` runs them; returns the filled-out config.

    The raw file is checked against the schema first, so a mistake is reported at the path the
    user wrote; then the provider's defaults are merged in and Ray's full validation runs.
    """
    import jsonschema
    prepare_config, validate_config = compat.cluster_config_checks()

    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    raw = dict(config)
    if (raw.get("provider") or {}).get("type") == "local":
        raw.pop("min_workers", None)  # the local provider's own field: prepare_config moves it
    error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema).iter_errors(raw))
    if error is not None:
        raise _schema_error(error)
    # Ray's helpers print through its CLI logger and abort with a click exception: keep the
    # printing out of our output and turn any failure into one line
    out = io.StringIO()
    quiet = logging.getLogger("ray.autoscaler")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # "setting max workers for head node type to 0" and the like
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            prepared = prepare_config(copy.deepcopy(config))
            validate_config(prepared)
    except jsonschema.ValidationError as e:
        raise _schema_error(e) from None
    except Exception as e:  # ValueError, RuntimeError, NotImplementedError, click's abort
        msg = str(getattr(e, "message", "") or e).strip() or out.getvalue().strip()
        raise ClusterConfigError(f"rejected by Ray: {msg.splitlines()[0] if msg else type(e).__name__}") from None
    finally:
        quiet.setLevel(level)
    return prepared


# ----------------------------------------------------------------------------- mixtune's invariants
def _commands(config: dict[str, Any], *keys: str) -> list[str]:
    out: list[str] = []
    for key in keys:
        value = config.get(key) or []
        out.extend(str(c) for c in (value if isinstance(value, list) else [value]))
    return out


def shell_commands(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, command) for every shell command in the config."""
    found = [(key, c) for key in COMMAND_LISTS for c in _commands(config, key)]
    for name, node in (config.get("available_node_types") or {}).items():
        for key in ("initialization_commands", "worker_setup_commands"):
            found += [(f"available_node_types.{name}.{key}", c) for c in _commands(node or {}, key)]
    return found


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_integers(config: dict[str, Any]) -> list[str]:
    """Worker counts and resources must be whole numbers (Ray's schema lets 4.0 through)."""
    problems = []
    if "max_workers" in config and not _is_int(config["max_workers"]):
        problems.append(f"max_workers: {config['max_workers']!r} is not an integer")
    for name, node in (config.get("available_node_types") or {}).items():
        for key in ("min_workers", "max_workers"):
            if key in node and not _is_int(node[key]):
                problems.append(f"available_node_types.{name}.{key}: {node[key]!r} is not an integer")
        for res, amount in (node.get("resources") or {}).items():
            if not _is_int(amount):  # a node offers whole units; a trial may ask for a fraction
                problems.append(f"available_node_types.{name}.resources.{res}: {amount!r} is not an integer")
        mins, maxs = node.get("min_workers", 0), node.get("max_workers")
        if _is_int(mins) and _is_int(maxs) and mins > maxs:
            problems.append(f"available_node_types.{name}: min_workers {mins} > max_workers {maxs}")
    for where, cmd in shell_commands(config):
        if "ray start" in cmd:
            problems += [f"{where}: `{cmd.strip()[:80]}`: {p}" for p in _start_flag_problems(cmd)]
    return problems


_FLAG = re.compile(r"--(num-cpus|num-gpus)(?:=|\s+)([^\s;&|]+)")
_RESOURCES = re.compile(r"""--resources(?:=|\s+)('[^']*'|"(?:[^"\\]|\\.)*"|\S+)""")


def _start_flag_problems(cmd: str) -> list[str]:
    problems = []
    for flag, value in _FLAG.findall(cmd):
        if not re.fullmatch(r"\d+", value) and not value.startswith("$"):
            problems.append(f"--{flag}={value} is not an integer")
    for raw in _RESOURCES.findall(cmd):
        try:
            text = shlex.split(raw)[0]
        except (ValueError, IndexError):
            text = raw
        if "$" in text:
            continue  # filled in by the shell at start time
        try:
            resources = json.loads(text)
        except json.JSONDecodeError:
            problems.append(f"--resources {raw} is not a JSON object")
            continue
        if not isinstance(resources, dict):
            problems.append(f"--resources {raw} is not a JSON object")
            continue
        problems += [f"--resources {name}={v!r} is not an integer"
                     for name, v in resources.items() if not _is_int(v)]
    return problems


# `pip install` / `uv pip install` / `python -m pip install`, and what they install
_PIP = re.compile(r"(?:\bpip3?|\buv\s+pip|-m\s+pip)\s+install\b(.*)")


def _install_targets(cmd: str) -> list[str]:
    targets = []
    for part in re.split(r"&&|\|\||;", cmd):
        m = _PIP.search(part)
        if not m:
            continue
        try:
            words = shlex.split(m.group(1), comments=True)
        except ValueError:
            words = m.group(1).split()
        targets += [w for w in words if not w.startswith("-")]
    return targets


def _installs_mixtune(cmd: str, mounts: list[str]) -> str | None:
    """'pinned' / 'unpinned' for a command that installs mixtune, None if it does not."""
    result = None
    for target in _install_targets(cmd):
        path = re.sub(r"\[[^\]]*\]$", "", target).rstrip("/")  # drop extras: ~/mixtune[test]
        if path in mounts:
            return "pinned"  # the synced checkout: the cluster's code is the launcher's code
        name = target.lower()
        if "mixtune" not in name:
            continue
        if re.match(r"mixtune(\[[^\]]*\])?==\S+", name) or ("git+" in name and re.search(r"\.git@|mixtune@\w", name)):
            return "pinned"
        result = "unpinned"
    return result


def check_install(config: dict[str, Any]) -> list[str]:
    """The head and each worker type must install mixtune at a fixed version in their setup."""
    mounts = [str(k).rstrip("/") for k in (config.get("file_mounts") or {})]
    common = _commands(config, "initialization_commands", "setup_commands")
    plans = {"the head": common + _commands(config, "head_setup_commands")}
    head_type = config.get("head_node_type")
    for name, node in (config.get("available_node_types") or {}).items():
        if name == head_type:
            continue
        own = node.get("worker_setup_commands")  # a node type's own list replaces the global ones
        worker = _commands(node, "worker_setup_commands") if own is not None else \
            common + _commands(config, "worker_setup_commands")
        plans[f"worker type {name}"] = _commands(node, "initialization_commands") + worker
    if config.get("provider", {}).get("type") == "local" and "available_node_types" not in config:
        plans["the workers"] = common + _commands(config, "worker_setup_commands")
    problems = []
    for who, cmds in plans.items():
        kinds = {_installs_mixtune(c, mounts) for c in cmds} - {None}
        if "pinned" in kinds:
            continue
        if "unpinned" in kinds:
            problems.append(f"setup of {who} installs mixtune unpinned: install a synced checkout "
                            f"(file_mounts), mixtune==<version> or git+...@<tag>")
        else:
            problems.append(f"setup of {who} does not install mixtune (pip install <file_mounts folder "
                            f"of the checkout>, mixtune==<version> or git+...@<tag>)")
    return problems


_PORT = re.compile(r"(?:--port|-p)(?:=|\s+)(\d+)")
_HOST = re.compile(r"(?:--host|-h)(?:=|\s+)(\S+)")


def mlflow_server_commands(config: dict[str, Any]) -> list[tuple[str, str]]:
    return [(w, c) for w, c in shell_commands(config) if re.search(r"\bmlflow\s+server\b", c)]


def check_mlflow_exposure(config: dict[str, Any]) -> tuple[list[str], int | None]:
    """The MLflow server listens privately and no security-group rule opens it to the world."""
    problems = []
    servers = mlflow_server_commands(config)
    ports = set()
    for where, cmd in servers:
        tail = cmd[re.search(r"\bmlflow\s+server\b", cmd).end():]
        port = _PORT.search(tail)
        ports.add(int(port.group(1)) if port else MLFLOW_DEFAULT_PORT)
        host = _HOST.search(tail)
        if host and host.group(1).strip("'\"") in ANY_HOST:
            problems.append(f"{where}: `mlflow server --host {host.group(1)}` listens on every interface; "
                            f"bind it to the head's private IP")
    checked = ports or {MLFLOW_DEFAULT_PORT}
    group = (config.get("provider") or {}).get("security_group") or {}
    for i, rule in enumerate(group.get("IpPermissions") or []):
        if not isinstance(rule, dict):
            continue
        proto = str(rule.get("IpProtocol", "tcp"))
        low, high = rule.get("FromPort", -1), rule.get("ToPort", -1)
        every_port = proto == "-1" or (low in (-1, None) and high in (-1, None))
        cidrs = [r.get("CidrIp") for r in rule.get("IpRanges") or [] if isinstance(r, dict)]
        cidrs += [r.get("CidrIpv6") for r in rule.get("Ipv6Ranges") or [] if isinstance(r, dict)]
        world = [c for c in cidrs if c in WORLD]
        if not world or proto not in ("-1", "tcp", "6"):
            continue
        for port in sorted(checked):
            if every_port or (_is_int(low) and _is_int(high) and low <= port <= high):
                problems.append(f"provider.security_group.IpPermissions[{i}] opens the MLflow port {port} "
                                f"to {world[0]}: let only the cluster (and SSH tunnels) reach it")
    return problems, (min(ports) if ports else None)


# ----------------------------------------------------------------------------- placeholders
# the S3 bucket names the shipped configs and the README use as examples
PLACEHOLDER_BUCKETS = ("my-mixtune-bucket", "your-bucket", "my-bucket", "example-bucket")
# the address ranges reserved for documentation (RFC 5737, RFC 3849): never a real network
DOC_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
                                                        "2001:db8::/32"))
_BUCKET = re.compile(r"\bs3a?://([A-Za-z0-9.<>_-]+)")


def _strings(value: Any, where: str = ""):
    """(field path, string) for every string in a parsed YAML value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{i}]")
    elif isinstance(value, str):
        yield where, value


def _doc_network(text: str) -> bool:
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return False
    return any(net.version == d.version and net.subnet_of(d) for d in DOC_NETWORKS)


def placeholders(config: dict[str, Any]) -> list[str]:
    """The example values of a shipped config still in it, each with the field that holds it."""
    found = []
    for where, text in _strings(config):
        for bucket in _BUCKET.findall(text):
            if bucket in PLACEHOLDER_BUCKETS or bucket.startswith("<"):
                found.append(f"S3 bucket s3://{bucket} ({where}): your bucket")
        if _doc_network(text):
            found.append(f"address range {text.strip()} ({where}): a documentation range, "
                         "use your own network's (e.g. your IP/32)")
    return found


# ----------------------------------------------------------------------------- entry points
def check_cluster_config(config: dict[str, Any], path: str = "cluster config") -> ClusterReport:
    """Ray's validation, then mixtune's invariants; raises ClusterConfigError on the first problem."""
    try:
        prepared = ray_validate(config)
    except ClusterConfigError as e:
        raise ClusterConfigError(f"{path}: {e}") from None
    exposure, port = check_mlflow_exposure(config)
    problems = check_integers(config) + check_install(config) + exposure
    if problems:
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise ClusterConfigError(f"{path}: {problems[0]}{more}")
    return ClusterReport(path=path, provider=str(config["provider"]["type"]),
                         node_types=list(prepared.get("available_node_types") or {}), mlflow_port=port,
                         placeholders=tuple(placeholders(config)))


def check_cluster_file(path: str | Path) -> ClusterReport:
    return check_cluster_config(load_cluster_file(path), str(path))


def all_problems(config: dict[str, Any]) -> list[str]:
    """Every invariant problem (Ray's validation aside), for tests and for a full listing."""
    return check_integers(config) + check_install(config) + check_mlflow_exposure(config)[0]


def cmd_cluster_check(args: argparse.Namespace) -> int:
    """One line per file: ok, or not ready (placeholders left: exit 1); a broken file raises (exit 2)."""
    ready = True
    for path in args.files:
        report = check_cluster_file(path)
        print(report.line())
        ready = ready and report.ready
    return 0 if ready else 1


def add_cluster_commands(sub) -> None:
    c = sub.add_parser("cluster-check",
                       help="validate a `ray up` cluster YAML: Ray's schema plus mixtune's invariants; exit 1 "
                            "when it still holds the shipped placeholders (S3 bucket name, SSH range)")
    c.add_argument("files", nargs="+", metavar="cluster.yaml")
    c.set_defaults(func=cmd_cluster_check)
