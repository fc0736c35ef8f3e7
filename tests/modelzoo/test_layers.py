"""The transforms at both ends of a network: fitted from the training rows, carried as buffers."""

import torch

from modelzoo import build_network, fit_scales
from modelzoo.layers import InputTransform, TargetScale, standardized_targets, trained_layers
from service.schemas.spec import JobSpec
from tests.specs import tiny_regression

TWO_TARGETS = {"kind": "mlp", "in_features": 2, "hidden": [4], "out_features": 2, "activation": "tanh"}


def two_target_spec(standardize_target: bool) -> JobSpec:
    x = [[1.0, 10.0], [2.0, 10.0], [3.0, 10.0]]  # the second feature constant
    y = [[1e4, 7.0], [2e4, 7.0], [3e4, 7.0]]  # the second target constant
    data = {"source": "inline", "x": x, "y": y, "standardize": True, "standardize_target": standardize_target}
    return JobSpec.model_validate(tiny_regression(model=TWO_TARGETS, data=data))


def test_the_target_scale_ends_the_network_and_answers_in_the_targets_units():
    spec = two_target_spec(standardize_target=True)
    net = build_network(spec.model, spec.data.standardize_target)
    x, y = torch.tensor(spec.data.x), torch.tensor(spec.data.y)
    fit_scales(net, spec.data, x, y)
    assert isinstance(net[0], InputTransform) and isinstance(net[-1], TargetScale)
    # per column, with torch.std's (n - 1); a constant column's std is stored as 1, so it is only shifted
    assert torch.equal(net[-1].mean, torch.tensor([2e4, 7.0])) and torch.equal(net[-1].std, torch.tensor([1e4, 1.0]))
    assert torch.equal(net[0].std, torch.tensor([1.0, 1.0]))
    with torch.no_grad():
        z = trained_layers(net)(net[0](x))  # what training fits
        assert torch.allclose(net(x), z * torch.tensor([1e4, 1.0]) + torch.tensor([2e4, 7.0]))
    assert torch.equal(standardized_targets(net, y), torch.tensor([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]))
    assert set(net.state_dict()) >= {"4.mean", "4.std"}  # saved with the weights (net: 0 in, 1 linear, 2 tanh, 3 linear)


def test_without_it_the_network_and_its_targets_are_as_before():
    spec = two_target_spec(standardize_target=False)
    net = build_network(spec.model, spec.data.standardize_target)
    y = torch.tensor(spec.data.y)
    fit_scales(net, spec.data, torch.tensor(spec.data.x), y)
    assert not any(isinstance(m, TargetScale) for m in net)
    assert list(trained_layers(net)) == list(net[1:])
    assert standardized_targets(net, y) is y and standardized_targets(net, None) is None
