"""Data contract, validated ingestion, the synthetic world and point-in-time feature snapshots.

This package is the base of the house: it knows nothing of models, MLflow or HTTP.
"""
