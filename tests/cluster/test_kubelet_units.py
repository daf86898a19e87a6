"""Pure helpers of the local kubelet (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

from ._podrunner import _rewrite, exit_code_of, expand_refs
from ._volumes import field_value

POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"trial": "7", "app": "x"}},
    "spec": {"nodeName": "gpu-node-0", "serviceAccountName": "sa"},
    "status": {},
}


def test_expand_refs_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B": "two"}
    assert expand_refs("$(A)-$(B)", env) == "1-two"
    assert expand_refs("$(MISSING)", env) == "$(MISSING)"
    assert expand_refs("$$(A)", env) == "$(A)"
    assert expand_refs("$A", env) == "$A"


def test_rewrite_replaces_longest_mount_prefix_only_at_path_boundaries() -> None:
    mounts = [("/etc/kubetune", Path("/tmp/v1"), False), ("/etc/kubetune/extra", Path("/tmp/v2"), True)]
    assert _rewrite("--spec=/etc/kubetune/spec.yaml", mounts) == "--spec=/tmp/v1/spec.yaml"
    assert _rewrite("/etc/kubetune/extra/a", mounts) == "/tmp/v2/a"
    assert _rewrite("/etc/kubetune", mounts) == "/tmp/v1"
    assert _rewrite("/etc/kubetune2/x", mounts) == "/etc/kubetune2/x"


def test_field_refs() -> None:
    assert field_value(POD, "metadata.name") == "p"
    assert field_value(POD, "metadata.labels['trial']") == "7"
    assert field_value(POD, "metadata.labels") == 'app="x"\ntrial="7"'
    assert field_value(POD, "spec.nodeName") == "gpu-node-0"
    assert field_value(POD, "status.podIP") == "127.0.0.1"


def test_exit_codes_of_signalled_processes_match_runtimes() -> None:
    assert exit_code_of(3) == 3
    assert exit_code_of(-9) == 137
    assert exit_code_of(-15) == 143
