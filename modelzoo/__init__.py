"""Spec -> nn.Module, shared by the workers (training) and the service (predictions).

Pure torch: nothing here knows of data loading, training, HTTP or the database.
"""

from modelzoo.build import build_network
from modelzoo.outputs import read_outputs

__all__ = ["build_network", "read_outputs"]
