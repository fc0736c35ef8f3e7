"""A job's loss curve drawn as a PNG (matplotlib, no display).

matplotlib is imported by the first drawing, not with the API: it is ~0.35 s of every API process's start.
"""

import io


def draw_curve(title: str, points: list) -> bytes:
    from matplotlib.figure import Figure  # the Agg canvas: a Figure made directly needs no display or backend

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    epochs = [p.epoch for p in points]
    ax.plot(epochs, [p.loss for p in points], label="loss")
    val = [(p.epoch, p.val_loss) for p in points if p.val_loss is not None]
    if val:
        ax.plot(*zip(*val), label="validation loss")
    if points and min(p.loss for p in points) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if points:
        ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()
