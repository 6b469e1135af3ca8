"""Shared helpers for the k8snode test layers (see tests/support/harness.py)."""
