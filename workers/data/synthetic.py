"""The tutorial's generated data: lines, polynomials and Gaussian blobs, reproducible from a seed."""

import torch


def evenly_spaced(n: int, low: float, high: float) -> torch.Tensor:
    return torch.linspace(low, high, n, dtype=torch.float32).unsqueeze(1)  # (n, 1)


def noise(shape: tuple[int, ...], scale: float, kind: str, gen: torch.Generator) -> torch.Tensor:
    if scale == 0:
        return torch.zeros(shape)
    draw = torch.rand if kind == "uniform" else torch.randn
    return scale * draw(shape, generator=gen)


def line(data, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = evenly_spaced(data.n, data.low, data.high)
    y = data.slope * x + data.intercept + noise(x.shape, data.noise, data.noise_kind, gen)
    return x, y


def polynomial(data, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = evenly_spaced(data.n, data.low, data.high)
    y = sum(c * x**i for i, c in enumerate(data.coefficients))
    return x, y + noise(x.shape, data.noise, data.noise_kind, gen)


def blobs(data, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for label, cluster in enumerate(data.clusters):
        mean = torch.tensor(cluster.mean, dtype=torch.float32)
        xs.append(mean + cluster.std * torch.randn((cluster.n, len(cluster.mean)), generator=gen))
        ys.append(torch.full((cluster.n,), label, dtype=torch.int64))
    return torch.cat(xs), torch.cat(ys)


GENERATORS = {"linear": line, "polynomial": polynomial, "blobs": blobs}


def generate(data, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return GENERATORS[data.generator](data, gen)
