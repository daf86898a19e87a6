"""The real node: pods run in containers from the project's images, under the
restricted Pod Security Standard, on a network with no way off the machine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from kubernetes import client

from tests.polling import wait_for

from .controlplane import ControlPlane
from .fixtures import Kubectl
from .helpers import (
    GPU_TOLERATION,
    RESTRICTED_CONTAINER_SECURITY,
    RESTRICTED_POD_SECURITY,
    Json,
    pod_manifest,
    wait_pod_phase,
)
from .images import ProjectImages
from .node import GPU_RESOURCE, LOOPBACK_REGISTRY, MIRRORED_REGISTRIES, Node
from .nodenet import KUBERNETES_SERVICE_IP, OWNERS, SERVICE_CIDR, NodeNetwork, iptables_rules, remove_orphans

pytestmark = pytest.mark.cluster

# Runs in the controller image as the pod's user: what the container sees of
# itself, its network and the API, printed as one JSON line.
PROBE = """
import json, os
from kubernetes import client, config
def writable(path):
    try:
        with open(os.path.join(path, "probe"), "w") as f:
            f.write("x")
        return True
    except OSError:
        return False
routes = [line.split()[1:3] for line in open("/proc/net/route").read().splitlines()[1:]]
cap_eff = next(l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff"))
config.load_incluster_config()
review = client.AuthenticationV1Api().create_self_subject_review({"apiVersion": "authentication.k8s.io/v1",
    "kind": "SelfSubjectReview"})
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "root_writable": writable("/opt"),
    "tmp_writable": writable("/tmp"), "routes": routes, "cap_eff": cap_eff,
    "host": config.kube_config.Configuration.get_default_copy().host,
    "user": review.status.user_info.username}))
"""


def restricted_pod(
    name: str, image: str, command: list[str], *, memory: str = "256Mi", **spec: object
) -> client.V1Pod:
    container = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "resources": {"limits": {"memory": memory}, "requests": {"cpu": "50m", "memory": memory}},
        "securityContext": {**RESTRICTED_CONTAINER_SECURITY, "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pod_spec = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 2,
        "securityContext": {**RESTRICTED_POD_SECURITY, "runAsUser": 65532, "runAsGroup": 65532},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "tolerations": [GPU_TOLERATION],  # the node's GPU taint
        **spec,
    }
    return pod_manifest(name, pod_spec)


def container_state(core: client.CoreV1Api, namespace: str, name: str) -> Json:
    """The first container's state, as JSON ({} before the kubelet reports one)."""
    pod = core.read_namespaced_pod_status(name, namespace).to_dict(serialize=True)
    statuses = pod["status"].get("containerStatuses", [])
    return dict(statuses[0]["state"]) if statuses else {}


def test_node_is_ready_with_gpus_and_containerd(
    control_plane: ControlPlane, node: Node, node_network: NodeNetwork
) -> None:
    got = client.CoreV1Api(control_plane.api_client).read_node(node.name).to_dict(serialize=True)
    assert got["status"]["allocatable"][GPU_RESOURCE] == "1"
    assert got["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert {"type": "InternalIP", "address": node_network.gateway} in got["status"]["addresses"]
    taints = {(t["key"], t["effect"]) for t in got["spec"].get("taints", [])}
    assert taints == {(GPU_RESOURCE, "NoSchedule")}  # node-lifecycle lifted not-ready


def test_pod_runs_restricted_and_reaches_the_api_through_the_service(
    control_plane: ControlPlane, node: Node, project_images: ProjectImages, namespace: str, kubectl: Kubectl
) -> None:
    core = client.CoreV1Api(control_plane.api_client)
    core.create_namespaced_pod(
        namespace, restricted_pod("probe", project_images.controller, ["python3", "-c", PROBE])
    )
    assert wait_pod_phase(core, namespace, "probe", ("Succeeded", "Failed"), timeout_s=120) == "Succeeded", (
        kubectl("logs", "-n", namespace, "probe", check=False).stderr
    )
    # `kubectl logs` goes apiserver -> kubelet: the real node's endpoint.
    seen = json.loads(kubectl("logs", "-n", namespace, "probe").stdout.strip().splitlines()[-1])
    assert (seen["uid"], seen["gid"]) == (65532, 65532)
    assert seen["cap_eff"] == "0000000000000000"
    assert not seen["root_writable"] and seen["tmp_writable"]
    assert seen["host"] == f"https://{KUBERNETES_SERVICE_IP}:443"
    assert seen["user"] == f"system:serviceaccount:{namespace}:default"
    # Routes: the bridge's subnet and the Service CIDR, never a default route.
    destinations = {dest for dest, _gateway in seen["routes"]}
    assert "00000000" not in destinations
    assert "0000000A" in destinations  # 10.0.0.0 (little-endian hex): the Service CIDR


def test_pod_without_token_has_none(
    control_plane: ControlPlane, node: Node, project_images: ProjectImages, namespace: str
) -> None:
    core = client.CoreV1Api(control_plane.api_client)
    script = "import os; raise SystemExit(os.path.exists('/var/run/secrets/kubernetes.io/serviceaccount'))"
    pod = restricted_pod("notoken", project_images.controller, ["python3", "-c", script],
                         automountServiceAccountToken=False)  # fmt: skip
    core.create_namespaced_pod(namespace, pod)
    assert wait_pod_phase(core, namespace, "notoken", ("Succeeded", "Failed"), timeout_s=120) == "Succeeded"


def test_memory_limit_is_enforced_by_the_kernel(
    control_plane: ControlPlane, node: Node, project_images: ProjectImages, namespace: str
) -> None:
    core = client.CoreV1Api(control_plane.api_client)
    hog = "blocks = []\nwhile True: blocks.append(bytearray(16 << 20))"
    core.create_namespaced_pod(
        namespace, restricted_pod("hog", project_images.controller, ["python3", "-c", hog], memory="64Mi")
    )
    state = wait_for("the hog to end", lambda: container_state(core, namespace, "hog").get("terminated"), 120)
    assert (state["reason"], state["exitCode"]) == ("OOMKilled", 137)


def test_missing_image_fails_the_pull_on_loopback(
    control_plane: ControlPlane, node: Node, namespace: str
) -> None:
    core = client.CoreV1Api(control_plane.api_client)
    core.create_namespaced_pod(
        namespace, restricted_pod("ghost", "ghcr.io/kubetune/no-such-image:0", ["true"])
    )

    def pull_error() -> Json | None:
        waiting = container_state(core, namespace, "ghost").get("waiting")
        return waiting if waiting and waiting["reason"] in ("ErrImagePull", "ImagePullBackOff") else None

    waiting = wait_for("a pull error", pull_error, 60)
    assert "127.0.0.1:5" in waiting.get("message", "")


def test_nothing_routes_off_the_machine(node: Node, node_network: NodeNetwork) -> None:
    """Inspects the rules (sends nothing): CNI routes, FORWARD drop, the Service DNAT, registry hosts."""
    conflist = json.loads(next((node.work_dir / "cni").glob("*.conflist")).read_text())
    bridge = conflist["plugins"][0]
    assert not bridge.get("isDefaultGateway") and not bridge.get("ipMasq")
    assert bridge["ipam"]["routes"] == [{"dst": SERVICE_CIDR}]
    chain = node_network.chain
    filter_rules = iptables_rules().splitlines()
    assert f"-A FORWARD -i {node_network.bridge} -j {chain}" in filter_rules
    assert filter_rules.index(f"-A {chain} -o {node_network.bridge} -j RETURN") < filter_rules.index(
        f"-A {chain} -j DROP"
    )
    service = f"-d {KUBERNETES_SERVICE_IP}/32 -p tcp -m tcp --dport 443"
    assert f"{service} -j DNAT --to-destination {node_network.gateway}:" in iptables_rules("nat")
    # The kubelet's host-wide chains (KUBE-FIREWALL, its canaries) are off: only ours exist.
    for table in ("filter", "nat", "mangle"):
        assert "KUBE-" not in iptables_rules(table), table
    for registry in MIRRORED_REGISTRIES:
        hosts = (node.work_dir / "registry-hosts" / registry / "hosts.toml").read_text()
        assert f'server = "{LOOPBACK_REGISTRY}"' in hosts


def test_a_stopped_node_leaves_nothing_behind(
    control_plane: ControlPlane, node_network: NodeNetwork, node: Node, namespace: str, tmp_path: Path
) -> None:
    """A second node on its own network runs a pod and stops: no bridge, rules,
    network namespace, mounts, cgroups or containerd state remain."""
    core = client.CoreV1Api(control_plane.api_client)
    with (
        NodeNetwork(session_id="ffee") as network,
        Node(control_plane, network, tmp_path, node.pause_image, name="gpu-node-teardown") as second,
    ):
        # The pause image is all this node holds; nodeName bypasses the scheduler.
        pod = restricted_pod("parked", second.pause_image, ["/pause"], nodeName=second.name)
        core.create_namespaced_pod(namespace, pod)
        wait_pod_phase(core, namespace, "parked", ("Running",), timeout_s=90)
        netns = second.pod_network_namespaces()
        assert netns
        cgroups = [Path("/sys/fs/cgroup", h, second.cgroup_root.lstrip("/")) for h in ("memory", "unified")]
        assert cgroups[0].is_dir()
    assert network.bridge not in links()
    assert network.chain not in iptables_rules() + iptables_rules("nat")
    assert not any(path.exists() for path in netns)
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()
    assert not any(cgroup.exists() for cgroup in cgroups)
    assert not (tmp_path / "containerd").exists()
    with pytest.raises(client.ApiException):
        core.read_node(second.name)


def links() -> str:
    return subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout


def test_the_network_of_a_session_that_died_is_removed_by_the_next_one() -> None:
    # A session killed before its teardown leaves its bridge and rules; its process is gone.
    ended = subprocess.Popen(["true"])
    ended.wait()
    orphan = NodeNetwork(session_id="fffd")
    orphan.start()
    try:
        (OWNERS / orphan.bridge).write_text(f"{ended.pid} 0")
        with NodeNetwork(session_id="fffc") as live:
            assert orphan.bridge not in links()
            assert orphan.chain not in iptables_rules() + iptables_rules("nat")
            assert not (OWNERS / orphan.bridge).exists()
            assert remove_orphans() == [] and live.bridge in links()  # a live session's stays
        assert not (OWNERS / live.bridge).exists()
    finally:
        orphan.stop()
