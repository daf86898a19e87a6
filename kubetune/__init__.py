"""kubetune: Gaussian-process hyperparameter tuning, one Kubernetes Job per trial."""

__version__ = "0.1.0"
