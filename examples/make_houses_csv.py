"""Writes examples/houses.csv: 300 made-up houses for the README's dataset example (synthetic, not real prices).

Each house has a floor area (m²), bedrooms, age (years) and distance to the centre (km), drawn at random with a
fixed seed; its price (thousands) is a linear function of them plus Gaussian noise (sd 15):
    price = 60 + 2.5 area + 12 bedrooms - 0.9 age - 4 distance_km + noise
so a linear model should find about those weights. Run from the repository root: `.venv/bin/python
examples/make_houses_csv.py` (the same seed writes the same file).
"""

from pathlib import Path

import numpy as np

ROWS, SEED = 300, 31
COLUMNS = ["area", "bedrooms", "age", "distance_km", "price"]

rng = np.random.default_rng(SEED)
bedrooms = rng.integers(1, 6, ROWS)
area = np.round(20 + 20 * bedrooms + rng.uniform(0, 25, ROWS), 1)
age = rng.integers(0, 60, ROWS)
distance_km = np.round(rng.uniform(0.5, 20, ROWS), 1)
price = 60 + 2.5 * area + 12 * bedrooms - 0.9 * age - 4 * distance_km + rng.normal(0, 15, ROWS)
rows = np.column_stack([area, bedrooms, age, distance_km, np.round(price, 1)])
path = Path(__file__).with_name("houses.csv")
np.savetxt(path, rows, delimiter=",", header=",".join(COLUMNS), comments="", fmt="%.10g")
print(f"wrote {ROWS} rows to {path}")
