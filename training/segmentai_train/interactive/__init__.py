"""Simulated interaction for training and benchmarking the interactive model."""
