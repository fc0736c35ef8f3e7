"""The real data sets that ship inside scikit-learn (no download)."""

import numpy as np

# scikit-learn's loader of each (imported when a job first loads one: its import is ~0.6 s of every worker's start)
LOADERS = {"digits": "load_digits", "iris": "load_iris", "breast_cancer": "load_breast_cancer", "diabetes": "load_diabetes"}


def load_builtin(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    bunch = getattr(datasets, LOADERS[name])()
    if name == "digits":
        x = bunch.images[:, None, :, :] / 16.0  # (1797, 1, 8, 8), pixels in [0, 1]
    else:
        x = bunch.data
    return x.astype(np.float32), bunch.target
