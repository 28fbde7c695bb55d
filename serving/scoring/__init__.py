"""Batch and online scoring: features at as_of, both models, drivers and actions."""
