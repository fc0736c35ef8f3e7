"""Spec -> nn.Module, shared by the workers (training) and the service (predictions).

Pure torch: nothing here knows of data loading, training, HTTP or the database. The package imports torch
only when `build_network` or `read_outputs` is first used, so a process that needs only its torch-free parts
(`modelzoo.memory`, the spec arithmetic the service checks requests with) never loads torch: the pool's own
process is one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelzoo.build import build_network, fit_scales
    from modelzoo.outputs import read_outputs

__all__ = ["build_network", "fit_scales", "read_outputs"]
_HOMES = {"build_network": "modelzoo.build", "fit_scales": "modelzoo.build", "read_outputs": "modelzoo.outputs"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'modelzoo' has no attribute {name!r}")
