"""`mixtune cluster-check`: the shipped cluster configs pass, broken variants fail in one line."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tuner.cli import main
from tuner.cluster.config_check import ClusterConfigError, all_problems, check_cluster_config, check_cluster_file

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["cluster.yaml", "cluster-local.yaml"]


@pytest.fixture(scope="module")
def aws() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


@pytest.fixture(scope="module")
def local() -> dict:
    return yaml.safe_load((ROOT / "cluster-local.yaml").read_text())


def rejected(config: dict) -> str:
    with pytest.raises(ClusterConfigError) as e:
        check_cluster_config(config, "test.yaml")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("test.yaml: ")
    return msg


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_pass(name):
    report = check_cluster_file(ROOT / name)
    assert report.mlflow_port == 5000
    assert all_problems(yaml.safe_load((ROOT / name).read_text())) == []


def test_shipped_aws_config_shape(aws):
    """CPU head, autoscaling GPU workers, MLflow on the private IP, URI handed to the nodes."""
    report = check_cluster_file(ROOT / "cluster.yaml")
    assert report.provider == "aws" and report.node_types == ["head", "gpu_worker"]
    head, gpu = aws["available_node_types"]["head"], aws["available_node_types"]["gpu_worker"]
    assert "GPU" not in head["resources"] and gpu["resources"]["GPU"] == 1
    assert gpu["min_workers"] < gpu["max_workers"] <= aws["max_workers"]
    server = " ".join(c for c in aws["head_start_ray_commands"] if "mlflow server" in c)
    assert "--host $MLFLOW_HOST" in server and "0.0.0.0" not in server
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert any("MLFLOW_TRACKING_URI" in c for c in aws[key])


def test_cli_prints_one_line_per_file(capsys):
    """The on-premises file is ready as shipped; the AWS one still holds its bucket and SSH range (issue 21)."""
    assert main(["cluster-check", str(ROOT / "cluster-local.yaml")]) == 0
    assert capsys.readouterr().out.strip().endswith("cluster-local.yaml: ok (local provider; node types "
                                                    "local.cluster.node; MLflow on port 5000, private)")
    assert main(["cluster-check", *(str(ROOT / n) for n in SHIPPED)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and ": ok (" not in lines[0] and ": ok (" in lines[1]
    assert lines[0].endswith("cluster.yaml: not ready: valid for Ray, but it still holds placeholders to replace: "
                             "address range 203.0.113.0/24 (provider.security_group.IpPermissions[0].IpRanges[0]"
                             ".CidrIp): a documentation range, use your own network's (e.g. your IP/32); S3 bucket "
                             "s3://my-mixtune-bucket (head_start_ray_commands[1]): your bucket")


def test_filled_in_placeholders_are_ok(tmp_path, capsys, aws):
    mine = copy.deepcopy(aws)
    mine["provider"]["security_group"]["IpPermissions"][0]["IpRanges"][0]["CidrIp"] = "198.18.7.4/32"
    mine["head_start_ray_commands"] = [c.replace("my-mixtune-bucket", "acme-ml-artifacts")
                                       for c in mine["head_start_ray_commands"]]
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(mine))
    assert main(["cluster-check", str(path)]) == 0
    assert ": ok (aws provider" in capsys.readouterr().out
    v6 = copy.deepcopy(mine)
    v6["provider"]["security_group"]["IpPermissions"][0]["IpRanges"][0]["CidrIp"] = "2001:db8:1::/48"
    assert check_cluster_config(v6, "v6.yaml").placeholders[0].startswith("address range 2001:db8:1::/48")


def test_cli_reports_a_broken_file_in_one_line(tmp_path, capsys, aws):
    bad = copy.deepcopy(aws)
    bad["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["cluster-check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("mixtune: error: ") and "resources.GPU" in err


# ----------------------------------------------------------------------------- Ray's schema
def test_schema_violation_names_the_field(aws):
    bad = copy.deepcopy(aws)
    bad["available_node_types"]["gpu_worker"]["max_wokers"] = 4  # a typo
    msg = rejected(bad)
    assert "available_node_types.gpu_worker" in msg and "max_wokers" in msg and "schema" in msg


def test_missing_provider_is_a_schema_error(aws):
    bad = {k: v for k, v in aws.items() if k != "provider"}
    assert "'provider' is a required property" in rejected(bad)


def test_ray_cross_field_check_runs(aws):
    bad = copy.deepcopy(aws)
    bad["head_node_type"] = "cpu_head"  # not one of available_node_types
    assert "head_node_type" in rejected(bad)


def test_local_provider_needs_its_ips(local):
    bad = copy.deepcopy(local)
    del bad["provider"]["worker_ips"]
    assert "worker_ips" in rejected(bad)


# ----------------------------------------------------------------------------- integers
def test_fractional_resources_fail_in_ray_schema(aws):
    bad = copy.deepcopy(aws)
    bad["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5
    assert "resources.GPU" in rejected(bad)


def test_float_whole_resources_fail_although_ray_accepts_them(aws):
    bad = copy.deepcopy(aws)
    bad["available_node_types"]["gpu_worker"]["resources"]["CPU"] = 8.0  # draft-7 "integer" lets it pass
    msg = rejected(bad)
    assert "available_node_types.gpu_worker.resources.CPU: 8.0 is not an integer" in msg


def test_float_worker_count_fails(aws):
    bad = copy.deepcopy(aws)
    bad["available_node_types"]["gpu_worker"]["max_workers"] = 4.0
    assert "gpu_worker.max_workers: 4.0 is not an integer" in rejected(bad)


def test_ray_start_flags_must_be_integers(aws):
    bad = copy.deepcopy(aws)
    bad["worker_start_ray_commands"] = ["ray stop", "ray start --address=$RAY_HEAD_IP:6379 --num-gpus=0.5"]
    assert "--num-gpus=0.5 is not an integer" in rejected(bad)
    bad["worker_start_ray_commands"] = ["ray start --address=$RAY_HEAD_IP:6379 --resources='{\"tpu\": 1.5}'"]
    assert "--resources tpu=1.5 is not an integer" in rejected(bad)


# ----------------------------------------------------------------------------- install
def test_missing_install_fails(aws):
    bad = copy.deepcopy(aws)
    bad["setup_commands"] = [c for c in bad["setup_commands"] if "pip install" not in c]
    assert "does not install mixtune" in rejected(bad)


def test_unpinned_install_fails(aws):
    bad = copy.deepcopy(aws)
    bad["setup_commands"] = ["pip install mixtune"]
    assert "installs mixtune unpinned" in rejected(bad)


def test_node_type_setup_replaces_the_global_one(aws):
    bad = copy.deepcopy(aws)
    bad["available_node_types"]["gpu_worker"]["worker_setup_commands"] = ["nvidia-smi"]
    msg = rejected(bad)
    assert "worker type gpu_worker does not install mixtune" in msg


@pytest.mark.parametrize("cmd", [
    "pip install 'mixtune==0.1.0'",
    "python -m pip install 'mixtune @ git+https://github.com/example/mixtune.git@v0.1.0'",
    "uv pip install -e ~/mixtune[test]",
])
def test_pinned_installs_pass(aws, cmd):
    good = copy.deepcopy(aws)
    good["setup_commands"] = [cmd]
    assert all_problems(good) == []


# ----------------------------------------------------------------------------- MLflow exposure
def test_mlflow_port_open_to_the_world_fails(aws):
    bad = copy.deepcopy(aws)
    bad["provider"]["security_group"]["IpPermissions"].append(
        {"IpProtocol": "tcp", "FromPort": 5000, "ToPort": 5000, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]})
    assert "opens the MLflow port 5000 to 0.0.0.0/0" in rejected(bad)


def test_all_ports_open_to_the_world_fails(aws):
    bad = copy.deepcopy(aws)
    bad["provider"]["security_group"]["IpPermissions"] = [
        {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]
    assert "opens the MLflow port 5000 to ::/0" in rejected(bad)


def test_mlflow_port_open_to_the_vpc_passes(aws):
    good = copy.deepcopy(aws)
    good["provider"]["security_group"]["IpPermissions"].append(
        {"IpProtocol": "tcp", "FromPort": 5000, "ToPort": 5000, "IpRanges": [{"CidrIp": "10.0.0.0/16"}]})
    assert all_problems(good) == []


def test_mlflow_bound_to_every_interface_fails(local):
    bad = copy.deepcopy(local)
    bad["head_start_ray_commands"] = [c.replace("--host 10.0.0.10", "--host 0.0.0.0")
                                      for c in bad["head_start_ray_commands"]]
    assert "listens on every interface" in rejected(bad)


# ----------------------------------------------------------------------------- files
def test_malformed_yaml_fails_with_its_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("cluster_name: x\nprovider:\n  type: aws\n   region: us-west-2\n")
    with pytest.raises(ClusterConfigError) as e:
        check_cluster_file(path)
    assert str(e.value).startswith(f"{path}: malformed YAML at line 4") and "\n" not in str(e.value)


def test_not_a_mapping_and_missing_file_fail(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ClusterConfigError, match="is a mapping"):
        check_cluster_file(path)
    with pytest.raises(ClusterConfigError, match="cannot read"):
        check_cluster_file(tmp_path / "absent.yaml")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_commands_are_valid_bash(name):
    import subprocess

    from tuner.cluster.config_check import shell_commands

    config = yaml.safe_load((ROOT / name).read_text())
    for where, cmd in shell_commands(config):
        check = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True)
        assert check.returncode == 0, f"{name} {where}: {check.stderr.strip()}"


def test_tracking_uri_defaults_to_the_environment(monkeypatch, tmp_path):
    """The cluster's nodes export MLFLOW_TRACKING_URI; `mixtune search` uses it unless told otherwise."""
    from tuner.settings import default_tracking_uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://10.0.0.10:5000")
    assert default_tracking_uri() == "http://10.0.0.10:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
