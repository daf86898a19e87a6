"""The test node's network: a bridge that pods hang off, and nothing else.

No packet leaves the machine, by construction:
- the CNI config (cni_conflist) gives pods an address on the bridge, a route to
  the bridge's subnet and one to the Service CIDR, and no default route;
- the host drops anything forwarded from the bridge to another interface;
- the `kubernetes` Service is one DNAT rule: ClusterIP:443 arriving on the
  bridge goes to the apiserver, which listens on the bridge's own address (so
  do the GCS emulator and anything else pods must reach). That is what
  kube-proxy would write for this one Service, scoped to this bridge, so two
  test sessions on one machine cannot rewrite each other's rules.

Each session gets its own bridge name, subnet and iptables chains (named after
the bridge); stop() removes all of them. A session killed before its teardown
(SIGKILL, a timeout's SIGTERM) leaves them: every bridge is registered under
OWNERS with its session's process, and start() first removes the networks of
sessions that no longer run, never a live one's.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .proc import Service

log = logging.getLogger(__name__)

SERVICE_CIDR = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"
# Pod subnets are /24s of this range: far from the Service CIDR and from the
# 10.88/16 and 172.16/12 defaults of podman and docker.
POD_SUPERNET = ipaddress.IPv4Network("10.233.0.0/16")
# One file per bridge, naming the process (pid and start time) that owns it;
# on tmpfs, gone at reboot with the bridges themselves.
OWNERS = Path("/run/kubetune-test-networks")


class NodeNetworkError(RuntimeError):
    """The bridge or its rules could not be set up."""


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise NodeNetworkError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _used_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = run("ip", "-4", "-json", "addr", "show").stdout
    return [
        ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network
        for link in json.loads(out)
        for a in link.get("addr_info", [])
    ]


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 of POD_SUPERNET that no interface of this machine uses."""
    used = _used_networks()
    for subnet in POD_SUPERNET.subnets(new_prefix=24):
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise NodeNetworkError(f"no free /24 left in {POD_SUPERNET}")


@dataclass
class NodeNetwork(Service):
    """A bridge for one test node's pods, with its firewall and Service rules.

    start() creates the bridge (up, with the gateway address) before the
    control plane starts, since the apiserver binds to that address; the DNAT
    rule to the apiserver is added by route_kubernetes_service() once its port
    is known.
    """

    session_id: str = field(default_factory=lambda: f"{os.getpid() % 0xFFFF:04x}")
    subnet: ipaddress.IPv4Network = field(default_factory=free_subnet)

    @property
    def bridge(self) -> str:
        return f"kt{self.session_id}"  # <= 15 characters, Linux's limit

    @property
    def gateway(self) -> str:
        """The bridge's address: what pods reach the host's test services by."""
        return str(next(self.subnet.hosts()))

    @property
    def chain(self) -> str:
        return _chain(self.bridge)

    def start(self) -> None:
        with _registry_lock():
            self._start()

    def _start(self) -> None:
        _remove_orphans()
        _remove(self.bridge)  # a killed session with the same id may have left its rules
        if any(self.subnet.overlaps(u) for u in _used_networks()):
            self.subnet = free_subnet()  # taken by a session that started since this one chose
        (OWNERS / self.bridge).write_text(_process_id(os.getpid()) or "")
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        # IPv4 only: no IPv6 link-local chatter from the host side of the bridge.
        Path(f"/proc/sys/net/ipv6/conf/{self.bridge}/disable_ipv6").write_text("1\n")
        run("ip", "link", "set", self.bridge, "up")
        # FORWARD: our chain first, jumped to for anything entering from the bridge.
        run("iptables", "-N", self.chain)
        run("iptables", "-A", self.chain, "-o", self.bridge, "-j", "RETURN")
        run("iptables", "-A", self.chain, "-j", "DROP")
        run("iptables", "-I", "FORWARD", "1", "-i", self.bridge, "-j", self.chain)
        run("iptables", "-t", "nat", "-N", self.chain)
        run("iptables", "-t", "nat", "-I", "PREROUTING", "1", "-i", self.bridge, "-j", self.chain)
        log.info("node network %s: bridge %s, gateway %s", self.subnet, self.bridge, self.gateway)

    def route_kubernetes_service(self, apiserver_port: int) -> None:
        """ClusterIP 10.0.0.1:443, from the bridge, goes to the apiserver on the gateway."""
        run(
            "iptables", "-t", "nat", "-A", self.chain,
            "-d", f"{KUBERNETES_SERVICE_IP}/32", "-p", "tcp", "--dport", "443",
            "-j", "DNAT", "--to-destination", f"{self.gateway}:{apiserver_port}",
        )  # fmt: skip

    def stop(self) -> None:
        """Remove the rules and the bridge; anything already gone is fine. Safe twice."""
        with _registry_lock():
            _remove(self.bridge)

    def cni_conflist(self, ipam_dir: Path) -> str:
        """The CNI network for containerd: the bridge plugin, host-local addresses."""
        doc = {
            "cniVersion": "0.4.0",
            "name": self.bridge,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    # The bridge already holds the gateway (start()). isGateway would
                    # also turn on the host's ip_forward, which nothing here needs:
                    # pods only talk to each other and to the gateway itself.
                    "isGateway": False,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": str(self.subnet), "gateway": self.gateway}]],
                        "routes": [{"dst": SERVICE_CIDR}],
                        "dataDir": str(ipam_dir),
                    },
                }
            ],
        }
        return json.dumps(doc, indent=2)


@contextmanager
def _registry_lock() -> Iterator[None]:
    """One session at a time chooses a subnet, reads the owners and changes bridges: pytest-xdist's
    workers start their networks together, and a half-written owner record reads as a dead one."""
    OWNERS.mkdir(parents=True, exist_ok=True)
    with open(OWNERS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _chain(bridge: str) -> str:
    return f"KUBETUNE-{bridge.upper()}"


def _remove(bridge: str) -> None:
    chain = _chain(bridge)
    for table, parent in (("filter", "FORWARD"), ("nat", "PREROUTING")):
        while (
            run("iptables", "-t", table, "-D", parent, "-i", bridge, "-j", chain, check=False).returncode == 0
        ):
            pass
        run("iptables", "-t", table, "-F", chain, check=False)
        run("iptables", "-t", table, "-X", chain, check=False)
    run("ip", "link", "del", bridge, check=False)
    (OWNERS / bridge).unlink(missing_ok=True)


def _process_id(pid: int) -> str | None:
    """The process's pid and start time while it runs (a reused pid starts later), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{pid} {stat.rsplit(')', 1)[1].split()[19]}"


def remove_orphans() -> list[str]:
    """Remove the networks whose session no longer runs; returns their bridges."""
    with _registry_lock():
        return _remove_orphans()


def _remove_orphans() -> list[str]:
    removed = []
    for record in sorted(OWNERS.glob("kt*")) if OWNERS.is_dir() else []:
        owner = record.read_text().strip()
        pid = owner.split()[0] if owner else ""
        if pid.isdigit() and _process_id(int(pid)) == owner:
            continue
        _remove(record.name)
        log.info("removed the network of a session that died: bridge %s", record.name)
        removed.append(record.name)
    return removed


def iptables_rules(table: str = "filter") -> str:
    """`iptables -S` of a table, for tests that inspect the rules."""
    return run("iptables", "-t", table, "-S").stdout
