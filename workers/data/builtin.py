"""The real data sets that ship inside scikit-learn (no download)."""

import numpy as np
from sklearn import datasets

LOADERS = {
    "digits": datasets.load_digits,
    "iris": datasets.load_iris,
    "breast_cancer": datasets.load_breast_cancer,
    "diabetes": datasets.load_diabetes,
}


def load_builtin(name: str) -> tuple[np.ndarray, np.ndarray]:
    bunch = LOADERS[name]()
    if name == "digits":
        x = bunch.images[:, None, :, :] / 16.0  # (1797, 1, 8, 8), pixels in [0, 1]
    else:
        x = bunch.data
    return x.astype(np.float32), bunch.target
