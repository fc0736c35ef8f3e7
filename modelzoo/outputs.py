"""Network outputs -> what `POST /v1/jobs/{id}/predict` answers."""

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


def outputs_to_predictions(outputs: torch.Tensor, task: str, loss: str, output_activation: str | None) -> dict:
    if task == "regression":
        values = outputs[:, 0] if outputs.shape[1] == 1 else outputs  # (N,) or (N, k)
        return {"predictions": values.tolist()}
    probs = class_probabilities(outputs, loss, output_activation)
    return {"predictions": probs.argmax(dim=1).tolist(), "probabilities": probs.tolist()}
