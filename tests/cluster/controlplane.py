"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) on loopback, for tests.

Flags follow controller-runtime's envtest (pkg/internal/testing/controlplane),
with three differences that the kubetune tests need:
- the ServiceAccount admission plugin stays on (envtest disables it), so pods
  get the projected `kube-api-access-*` token volume a real cluster gives them;
- authorization is Node,RBAC (envtest: RBAC) as on a real cluster;
- a controller manager and a scheduler run, so Jobs, garbage collection and
  GPU bin-packing are the real controllers' behaviour.

A node is started separately (node.py). The apiserver listens on the node
network's gateway (bind_address), the one address the tests, the pods and the
kubelet all reach; the kubelet serves there too.
"""

from __future__ import annotations

import logging
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kubernetes import client, config

from tests.polling import wait_for

from .proc import Service, free_port, free_ports, spawn, stop_group, tail

log = logging.getLogger(__name__)

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROLLERS = (
    # Canonical 1.36 names (the old short names such as "job" are aliases).
    "job-controller",
    "garbage-collector-controller",
    "ttl-after-finished-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    # Publishes kube-root-ca.crt into every namespace: the projected token
    # volume that ServiceAccount admission adds to pods reads it.
    "root-ca-certificate-publisher-controller",
    # Fills the aggregated admin/edit/view ClusterRoles.
    "clusterrole-aggregation-controller",
    # Fails and removes a deleted pod that was never scheduled, as on a real
    # cluster: without it, such a pod of a Job with a podFailurePolicy (the
    # chart's controller) keeps its Job-tracking finalizer, and its namespace.
    "pod-garbage-collector-controller",
    # Lifts the not-ready taint a new node registers with, and marks a node
    # whose kubelet stopped reporting NotReady, as on a real cluster.
    "node-lifecycle-controller",
)
START_TIMEOUT_S = 180.0  # apiserver cold start on a loaded 2-core machine
STOP_GRACE_S = 10.0
PORT_ATTEMPTS = 3


class ControlPlaneError(RuntimeError):
    """A component failed to start or become ready."""


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Pki:
    """Files of the test PKI (all PEM)."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path

    def client_cert(self, name: str, cn: str, org: str | None) -> tuple[Path, Path]:
        """Issue a client certificate signed by the CA; returns (cert, key)."""
        folder = self.ca_cert.parent
        key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
        subject = f"/CN={cn}" + (f"/O={org}" if org else "")
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
        _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
        ext = folder / f"{name}.ext"
        ext.write_text("extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(self.ca_cert),
            "-CAkey",
            str(self.ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            str(ext),
            "-out",
            str(cert),
        )
        return cert, key


def make_pki(folder: Path, extra_ips: tuple[str, ...] = ()) -> Pki:
    """CA, apiserver serving cert (loopback, the Service IP, extra_ips and the
    in-cluster names) and SA signing key."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = folder / "ca.key", folder / "ca.crt"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(ca_key))
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(ca_key),
        "-subj",
        "/CN=kubetune-test-ca",
        "-days",
        "2",
        "-sha256",
        "-out",
        str(ca_cert),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )
    serving_key, serving_cert = folder / "apiserver.key", folder / "apiserver.crt"
    csr = folder / "apiserver.csr"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(serving_key))
    _openssl("req", "-new", "-key", str(serving_key), "-subj", "/CN=kube-apiserver", "-out", str(csr))
    ext = folder / "apiserver.ext"
    sans = [
        "IP:127.0.0.1",
        "IP:10.0.0.1",
        *(f"IP:{ip}" for ip in extra_ips),
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]
    ext.write_text(
        "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"subjectAltName={','.join(sans)}\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_cert),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-sha256",
        "-extfile",
        str(ext),
        "-out",
        str(serving_cert),
    )
    # RSA: the one key type every token consumer supports.
    sa_key, sa_pub = folder / "sa.key", folder / "sa.pub"
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(sa_key))
    _openssl("pkey", "-in", str(sa_key), "-pubout", "-out", str(sa_pub))
    return Pki(ca_cert, ca_key, serving_cert, serving_key, sa_key, sa_pub)


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> Path:
    """A kubeconfig with one cluster/user/context, files referenced by path."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "kubetune-test", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "kubetune-test", "context": {"cluster": "kubetune-test", "user": user}}],
        "current-context": "kubetune-test",
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@dataclass
class _Component:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class ControlPlane(Service):
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler on 127.0.0.1.

    Use as a context manager. After __enter__:
      kubeconfig  admin kubeconfig (client cert in group system:masters)
      server      https://127.0.0.1:<port>
      ca_file     CA bundle that signed the serving cert
      api_client  admin kubernetes.client.ApiClient
    """

    assets: Path
    work_dir: Path
    bind_address: str = "127.0.0.1"
    extra_apiserver_args: tuple[str, ...] = ()
    extra_controller_manager_args: tuple[str, ...] = ()
    start_timeout_s: float = START_TIMEOUT_S
    _components: list[_Component] = field(default_factory=list, init=False, repr=False)
    _api_client: client.ApiClient | None = field(default=None, init=False, repr=False)
    port: int = field(default=0, init=False)
    pki: Pki | None = field(default=None, init=False, repr=False)

    # ---- public surface -------------------------------------------------

    @property
    def host(self) -> str:
        return self.bind_address

    @property
    def server(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.work_dir / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.work_dir / "pki" / "ca.crt"

    @property
    def logs_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def api_client(self) -> client.ApiClient:
        if self._api_client is None:
            raise ControlPlaneError("control plane is not started")
        return self._api_client

    def new_api_client(self, pool_maxsize: int = 8) -> client.ApiClient:
        """A fresh admin ApiClient (own connection pool), e.g. for a background thread."""
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        cfg.connection_pool_maxsize = pool_maxsize
        return client.ApiClient(cfg)

    # ---- lifecycle ------------------------------------------------------

    def start(self) -> None:
        for binary in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            if not (self.assets / binary).is_file():
                raise ControlPlaneError(f"{binary} missing from {self.assets}")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.pki = make_pki(self.work_dir / "pki", extra_ips=(self.bind_address,))
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self._start_components()
                return
            except ControlPlaneError as exc:
                # Ports are picked free but bound later: another process may win
                # the race. Only that failure is retried, on fresh ports.
                if "address already in use" not in str(exc) or attempt == PORT_ATTEMPTS:
                    raise
                log.warning("control plane port clash (attempt %d): retrying", attempt)
                self.stop()

    def _start_components(self) -> None:
        etcd_url = self._start_etcd()
        self._start_apiserver(etcd_url)
        self._api_client = self.new_api_client()
        # With --use-service-account-credentials=false every controller acts as
        # the manager's own identity, which the bootstrap role
        # system:kube-controller-manager does not cover (it expects per-controller
        # service accounts): the manager's cert is put in system:masters instead.
        kcm_kubeconfig = self._component_kubeconfig(
            "kube-controller-manager", "system:kube-controller-manager", "system:masters"
        )
        sched_kubeconfig = self._component_kubeconfig("kube-scheduler", "system:kube-scheduler")
        self._start_controller_manager(kcm_kubeconfig)
        self._start_scheduler(sched_kubeconfig)
        self._wait_cluster_usable()

    def stop(self) -> None:
        """Stop components newest first (etcd last); safe to call twice."""
        while self._components:
            comp = self._components.pop()
            code = stop_group(comp.proc, STOP_GRACE_S)
            log.debug("%s exited with %s", comp.name, code)
        if self._api_client is not None:
            self._api_client.close()
            self._api_client = None

    # ---- components -----------------------------------------------------

    def _run(self, name: str, args: list[str]) -> _Component:
        path = self.logs_dir / f"{name}.log"
        proc = spawn([str(self.assets / name), *args], path, cwd=self.work_dir)
        comp = _Component(name, proc, path)
        self._components.append(comp)
        return comp

    def _check_alive(self, comp: _Component) -> None:
        if comp.proc.poll() is not None:
            raise ControlPlaneError(f"{comp.name} exited with {comp.proc.returncode}\n{tail(comp.log)}")

    def _start_etcd(self) -> str:
        client_port, peer_port = free_ports(2)
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        data_dir = self.work_dir / "etcd"
        shutil.rmtree(data_dir, ignore_errors=True)
        comp = self._run(
            "etcd",
            [
                f"--data-dir={data_dir}",
                "--name=default",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync",  # test data: durability is not wanted, speed is
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            self._check_alive(comp)
            with urllib.request.urlopen(f"{client_url}/health", timeout=5) as resp:
                return b'"health":"true"' in resp.read()

        wait_for("etcd /health", healthy, self.start_timeout_s, on_timeout=lambda: tail(comp.log))
        return client_url

    def _start_apiserver(self, etcd_url: str) -> None:
        assert self.pki is not None
        pki = self.pki
        self.port = free_port()
        admin_cert, admin_key = pki.client_cert("admin", "kubetune-admin", "system:masters")
        # What the apiserver shows kubelets (logs, exec): the kubelet authorizes it by webhook.
        kubelet_client = pki.client_cert("apiserver-kubelet-client", "kube-apiserver", "system:masters")
        write_kubeconfig(self.kubeconfig, self.server, pki.ca_cert, admin_cert, admin_key, "admin")
        comp = self._run(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                f"--bind-address={self.host}",
                f"--advertise-address={self.host}",
                f"--secure-port={self.port}",
                f"--cert-dir={self.work_dir / 'pki'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--kubelet-client-certificate={kubelet_client[0]}",
                f"--kubelet-client-key={kubelet_client[1]}",
                # The node's IP, never its name: a name would go to DNS, off the machine.
                "--kubelet-preferred-address-types=InternalIP",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                # The 'kubernetes' Service endpoint would be 127.0.0.1, which
                # Endpoints validation rejects (loopback): skip the reconciler.
                # With a node, NodeNetwork routes the Service to the apiserver.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                *self.extra_apiserver_args,
            ],
        )
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.load_cert_chain(str(admin_cert), str(admin_key))

        def ready() -> bool:
            self._check_alive(comp)
            req = urllib.request.Request(f"{self.server}/readyz")
            with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
                return bool(resp.status == 200)

        wait_for(
            "kube-apiserver /readyz",
            ready,
            self.start_timeout_s,
            interval_s=0.5,
            on_timeout=lambda: tail(comp.log),
        )

    def _component_kubeconfig(self, name: str, user: str, group: str | None = None) -> Path:
        """Client cert with the user name the bootstrap RBAC roles are bound to."""
        assert self.pki is not None
        cert, key = self.pki.client_cert(name, user, group)
        return write_kubeconfig(
            self.work_dir / f"{name}.kubeconfig", self.server, self.pki.ca_cert, cert, key, name
        )

    def _start_controller_manager(self, kubeconfig: Path) -> None:
        assert self.pki is not None
        self._run(
            "kube-controller-manager",
            [
                f"--kubeconfig={kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--service-account-private-key-file={self.pki.sa_key}",
                f"--root-ca-file={self.pki.ca_cert}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--secure-port=0",  # no health endpoint: readiness is judged by its effects
                *self.extra_controller_manager_args,
            ],
        )

    def _start_scheduler(self, kubeconfig: Path) -> None:
        self._run(
            "kube-scheduler",
            [
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
            ],
        )

    def _wait_cluster_usable(self) -> None:
        """Ready once the controllers have acted: default SA and root CA exist."""
        core = client.CoreV1Api(self.api_client)

        def usable() -> bool:
            for comp in self._components:
                self._check_alive(comp)
            core.read_namespaced_service_account("default", "default")
            core.read_namespaced_config_map("kube-root-ca.crt", "default")
            return True

        def logs() -> str:
            return "\n".join(tail(c.log, 20) for c in self._components)

        wait_for(
            "default ServiceAccount and kube-root-ca.crt",
            usable,
            self.start_timeout_s,
            interval_s=0.5,
            on_timeout=logs,
        )
        # The scheduler has no health port here; an early crash shows up as exit.
        time.sleep(0.5)
        for comp in self._components:
            self._check_alive(comp)

    def signal_component(self, name: str, sig: signal.Signals) -> None:
        """Send a signal to one component (for failure-injection tests)."""
        for comp in self._components:
            if comp.name == name:
                comp.proc.send_signal(sig)
                return
        raise KeyError(name)
