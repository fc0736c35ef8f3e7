"""Weights as safetensors bytes, with the job spec in the metadata: rebuildable anywhere, never unpickled.

The layout is a public contract, documented in docs/artifacts.md (tensor names, the standardization layer,
how outputs become answers) and checked by tests/service/api/test_artifacts.py: change all three together.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where weights are made or read: the API's process starts without it
    from torch import nn

SPEC_KEY = "fitserve.spec"  # the metadata key of the spec, as JSON; also a key of the ONNX export's metadata_props


def weights_to_bytes(net: nn.Module, spec: dict) -> bytes:
    from safetensors.torch import save

    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    return save(state, metadata={SPEC_KEY: json.dumps(spec), "format": "pt"})


def spec_from_bytes(blob: bytes) -> dict:
    """The spec stored in a weights file's metadata."""
    header_len = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + header_len])
    return json.loads(header["__metadata__"][SPEC_KEY])


def load_weights(net: nn.Module, blob: bytes) -> nn.Module:
    from safetensors.torch import load

    net.load_state_dict(load(blob))
    return net
