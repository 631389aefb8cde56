"""The mmuemu benchmark (``python -m bench``; see bench/README.md)."""
