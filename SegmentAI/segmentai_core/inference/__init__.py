"""Inference engine: canonical resampling, normalisation, windowed prediction, postprocessing."""
