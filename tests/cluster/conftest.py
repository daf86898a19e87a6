"""The cluster fixtures are registered in tests/conftest.py, so all folders share one control plane."""
