"""Real Kubernetes control plane + local GPU kubelet for tests (see fixtures.py)."""
