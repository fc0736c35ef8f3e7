"""Data sources: a job spec's `data` -> tensors ready for training."""

from workers.data.loading import TrainingData, load_data

__all__ = ["TrainingData", "load_data"]
