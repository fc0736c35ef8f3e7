"""Network outputs -> the answers of `/predict`, the v2 `infer` endpoint and the ONNX export."""

import torch


def class_probabilities(outputs: torch.Tensor, loss: str, output_activation: str | None) -> torch.Tensor:
    """(N, k) probabilities that sum to 1 per row, by the same reading of outputs the loss used."""
    if loss == "bce":
        p = outputs if output_activation == "sigmoid" else torch.sigmoid(outputs)  # (N, 1)
        return torch.cat([1 - p, p], dim=1)
    if output_activation == "softmax":
        return outputs
    # cross-entropy reads its input as logits, whatever came before it
    return torch.softmax(outputs, dim=1)


def read_outputs(outputs: torch.Tensor, task: str, loss: str, output_activation: str | None) -> dict[str, torch.Tensor]:
    """Named answer tensors; the names are those of /predict, the v2 protocol and the ONNX export."""
    if task == "regression":
        return {"predictions": outputs[:, 0] if outputs.shape[1] == 1 else outputs}  # (N,) or (N, k)
    probs = class_probabilities(outputs, loss, output_activation)  # (N, k)
    return {"predictions": probs.argmax(dim=1), "probabilities": probs}
