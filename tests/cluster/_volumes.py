"""Materialise a pod's volumes into local directories, as a kubelet would.

Supported: emptyDir, configMap, secret, downwardAPI, hostPath, and projected
(serviceAccountToken via the TokenRequest API, configMap, secret,
downwardAPI). Anything else becomes an empty directory, with a warning.
"""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import Any

from ._rest import ApiError, Json, Rest

log = logging.getLogger(__name__)

DEFAULT_MODE = 0o644


class VolumeError(Exception):
    """A volume cannot be set up yet (e.g. its ConfigMap does not exist): retry later."""


def field_value(pod: Json, field_path: str) -> str:
    """Value of a downward-API fieldRef such as metadata.labels['app']."""
    meta: Json = pod.get("metadata", {})
    spec: Json = pod.get("spec", {})
    status: Json = pod.get("status", {})
    for prefix, source in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        if field_path == prefix:
            items = sorted(meta.get(source, {}).items())
            return "\n".join(f'{k}="{v}"' for k, v in items)
        if field_path.startswith(prefix + "["):
            key = field_path[len(prefix) + 1 : -1].strip("'\"")
            return str(meta.get(source, {}).get(key, ""))
    simple: dict[str, Any] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP", "127.0.0.1"),
        "status.podIP": status.get("podIP", "127.0.0.1"),
        "status.hostIPs": status.get("hostIP", "127.0.0.1"),
        "status.podIPs": status.get("podIP", "127.0.0.1"),
    }
    if field_path not in simple:
        raise VolumeError(f"unsupported fieldRef {field_path}")
    return str(simple[field_path] or "")


def resource_value(pod: Json, ref: Json, default_container: str | None = None) -> str:
    """Value of a resourceFieldRef (limits.cpu, requests.memory, ...), in the divisor's units."""
    container_name = ref.get("containerName") or default_container
    containers = pod["spec"].get("containers", [])
    container = next((c for c in containers if c["name"] == container_name), containers[0])
    kind, _, res = ref["resource"].partition(".")
    value = container.get("resources", {}).get(kind, {}).get(res)
    if value is None:
        # A real kubelet falls back to node allocatable; "0" keeps it simple.
        return "0"
    return str(value)


def _write(path: Path, content: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.chmod(path, mode)


def _key_values(rest: Rest, namespace: str, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
    """All keys of a ConfigMap or Secret as bytes; None when optional and missing."""
    plural = "configmaps" if kind == "configMap" else "secrets"
    try:
        obj = rest.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
    except ApiError as exc:
        if exc.status == 404 and optional:
            return None
        if exc.status == 404:
            raise VolumeError(f"{kind} {namespace}/{name} not found") from exc
        raise
    values: dict[str, bytes] = {}
    if kind == "configMap":
        values.update({k: v.encode() for k, v in obj.get("data", {}).items()})
        values.update({k: base64.b64decode(v) for k, v in obj.get("binaryData", {}).items()})
    else:
        values.update({k: base64.b64decode(v) for k, v in obj.get("data", {}).items()})
    return values


def _write_key_source(rest: Rest, pod: Json, target: Path, source: Json, kind: str, mode: int) -> None:
    name = source.get("name") or source.get("secretName", "")
    values = _key_values(rest, pod["metadata"]["namespace"], kind, name, bool(source.get("optional")))
    if values is None:
        return
    mode = source.get("defaultMode", mode)
    items = source.get("items")
    if not items:
        for key, content in values.items():
            _write(target / key, content, mode)
        return
    for item in items:
        if item["key"] not in values:
            if source.get("optional"):
                continue
            raise VolumeError(f"{kind} {name} has no key {item['key']}")
        _write(target / item["path"], values[item["key"]], item.get("mode", mode))


def _write_downward(pod: Json, target: Path, source: Json, mode: int) -> None:
    mode = source.get("defaultMode", mode)
    for item in source.get("items", []):
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"])
        else:
            value = resource_value(pod, item["resourceFieldRef"])
        _write(target / item["path"], value.encode(), item.get("mode", mode))


def request_token(rest: Rest, pod: Json, audience: str | None, expiration_s: int) -> str:
    """A token for the pod's ServiceAccount, bound to the pod (as the kubelet asks for)."""
    meta = pod["metadata"]
    sa = pod["spec"].get("serviceAccountName") or "default"
    body: Json = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            # Empty audiences means the apiserver's own (the issuer).
            "audiences": [audience] if audience else [],
            "expirationSeconds": expiration_s,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
        },
    }
    answer = rest.post(f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{sa}/token", body)
    token: str = answer["status"]["token"]
    return token


def _write_projected(rest: Rest, pod: Json, target: Path, volume: Json) -> None:
    mode = volume.get("defaultMode", DEFAULT_MODE)
    for source in volume.get("sources", []):
        if "serviceAccountToken" in source:
            sat = source["serviceAccountToken"]
            token = request_token(rest, pod, sat.get("audience"), int(sat.get("expirationSeconds", 3600)))
            _write(target / sat["path"], token.encode(), mode)
        elif "configMap" in source:
            _write_key_source(rest, pod, target, source["configMap"], "configMap", mode)
        elif "secret" in source:
            _write_key_source(rest, pod, target, source["secret"], "secret", mode)
        elif "downwardAPI" in source:
            _write_downward(pod, target, source["downwardAPI"], mode)
        else:
            log.warning("projected source %s not supported; skipped", sorted(source))


def materialise(rest: Rest, pod: Json, volumes_dir: Path) -> dict[str, Path]:
    """Create every volume of pod under volumes_dir; returns name -> local path."""
    paths: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes", []):
        name = volume["name"]
        if "hostPath" in volume:
            paths[name] = Path(volume["hostPath"]["path"])
            continue
        target = volumes_dir / name
        target.mkdir(parents=True, exist_ok=True)
        paths[name] = target
        if "emptyDir" in volume:
            continue
        if "configMap" in volume:
            _write_key_source(rest, pod, target, volume["configMap"], "configMap", DEFAULT_MODE)
        elif "secret" in volume:
            _write_key_source(rest, pod, target, volume["secret"], "secret", DEFAULT_MODE)
        elif "downwardAPI" in volume:
            _write_downward(pod, target, volume["downwardAPI"], DEFAULT_MODE)
        elif "projected" in volume:
            _write_projected(rest, pod, target, volume["projected"])
        else:
            log.warning("volume %s: type %s not supported; using an empty dir", name, sorted(volume))
    return paths
