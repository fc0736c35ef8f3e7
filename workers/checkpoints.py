"""Trainer state <-> safetensors bytes: tensors in the body, the rest as JSON metadata (no pickle)."""

import json

import torch
from safetensors.torch import load, save

from workers.engines.early_stopping import FIELDS as EARLY_FIELDS


def state_to_bytes(state: dict) -> bytes:
    """`state` as `Trainer.state()` returns it: model, optimizer, epoch, step, rng (and early_stopping)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in state["model"].items()}
    opt = state["optimizer"]
    scalars: dict[str, dict] = {}
    for param_id, param_state in opt["state"].items():
        for name, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{param_id}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    tensors["rng"] = state["rng"].cpu()
    meta = {
        "epoch": state["epoch"],
        "step": state["step"],
        "param_groups": opt["param_groups"],
        "optimizer_scalars": scalars,
    }
    if "early_stopping" in state:
        early = state["early_stopping"]
        tensors.update({f"early_stopping.{name}": early[name].detach().cpu() for name in EARLY_FIELDS})
        for i, w in enumerate(early["weights"]):
            tensors[f"early_stopping.weights.{i}"] = w.detach().cpu().contiguous()
        meta["early_stopping_best_point"] = early["best_point"]
    if state.get("schedule") is not None:  # a plateau schedule's state: numbers only
        meta["schedule"] = state["schedule"]
    return save(tensors, metadata={"fitserve.checkpoint": json.dumps(meta)})


def state_from_bytes(blob: bytes) -> dict:
    tensors = load(blob)
    header_len = int.from_bytes(blob[:8], "little")
    meta = json.loads(json.loads(blob[8 : 8 + header_len])["__metadata__"]["fitserve.checkpoint"])
    model = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    opt_state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, param_id, name = key.split(".", 2)
            opt_state.setdefault(int(param_id), {})[name] = value  # load_state_dict places it
    for param_id, values in meta["optimizer_scalars"].items():
        opt_state.setdefault(int(param_id), {}).update(values)
    state = {
        "model": model,
        "optimizer": {"state": opt_state, "param_groups": meta["param_groups"]},
        "epoch": meta["epoch"],
        "step": meta["step"],
        "rng": tensors["rng"],
    }
    if "early_stopping_best_point" in meta:
        state["early_stopping"] = early_stopping_from(tensors, meta["early_stopping_best_point"])
    if "schedule" in meta:
        state["schedule"] = meta["schedule"]
    return state


def early_stopping_from(tensors: dict, best_point: dict | None) -> dict:
    """The early-stopping state: its 0-d tensors, and the best weights in parameter order."""
    early = {name: tensors[f"early_stopping.{name}"] for name in EARLY_FIELDS}
    count = sum(key.startswith("early_stopping.weights.") for key in tensors)
    early["weights"] = [tensors[f"early_stopping.weights.{i}"] for i in range(count)]
    early["best_point"] = best_point
    return early


def continued_state(state: dict, spec) -> dict:
    """A finished job's final state as the start of a job that continues it (of `spec`): weights, optimizer state,
    progress and data order go on; the optimizer takes `spec`'s settings (a continuation may change them), and early
    stopping and a schedule's state start afresh."""
    opt = spec.optimizer
    settings = {"lr": opt.lr, "weight_decay": opt.weight_decay} | ({"momentum": opt.momentum} if opt.kind == "sgd" else {})
    groups = [group | settings for group in state["optimizer"]["param_groups"]]
    kept = {key: state[key] for key in ("model", "epoch", "step", "rng")}
    return kept | {"optimizer": {"state": state["optimizer"]["state"], "param_groups": groups}}
