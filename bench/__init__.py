"""Chronoq's end-to-end benchmark (not a test): ``python -m bench --help``."""
