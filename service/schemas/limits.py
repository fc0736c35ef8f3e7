"""Caps on what one request may ask for; each breach is a 422 naming the field."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_layer_width: int = 4096
    max_layers: int = 16
    max_parameters: int = 5_000_000
    max_epochs: int = 1_000_000
    max_inline_rows: int = 100_000
    max_synthetic_rows: int = 1_000_000
    # rows x epochs: the tutorial's largest job (100k points x 10000 epochs) is 1e9
    max_sample_epochs: int = 2_000_000_000
    max_predict_rows: int = 10_000
    max_page_size: int = 200
    # curve steps are INTEGER columns (32 bits on PostgreSQL); a job's steps stay below, as rows x epochs <= 2e9
    max_step: int = 2**31 - 1
    max_dataset_bytes: int = 64 * 1024 * 1024
    # a job's stored curve (18-25 bytes a point): a longer job records every n-th epoch (JobSpec raises
    # metrics_every to fit), so 1M epochs write ~2 MB, not 22 MB
    max_curve_points: int = 100_000
    # a job's or sweep's max_seconds: 28 days, as SageMaker's MaxRuntimeInSeconds
    max_seconds: int = 28 * 24 * 3600


LIMITS = Limits()
