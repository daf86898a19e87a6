"""Real Kubernetes control plane + a real GPU node (kubelet, containerd) for tests (see fixtures.py)."""
