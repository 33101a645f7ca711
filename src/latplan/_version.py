"""latplan's version (one place; ``latplan.__version__`` re-exports it)."""

__version__ = "0.1.0"
