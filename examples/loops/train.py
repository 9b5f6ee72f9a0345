"""A training-style loop whose iterations differ now and then.

``python -m cli.main examples/loops/train.py`` folds the 100 steps into one
near-repeat group: every 10th step also logs, the last batch skips backward.
"""


def get_batch(step):
    return [step, step + 1]


def forward(batch):
    return sum(batch) * 0.5


def backward(loss):
    return -loss


def update(grad):
    return grad * 0.1


def log_metrics(step, loss):
    return f"step {step}: loss {loss:.3f}"


def train(steps):
    for step in range(steps):
        loss = forward(get_batch(step))
        if step < steps - 1:
            backward(loss)
        update(loss)
        if step % 10 == 3:
            log_metrics(step, loss)


if __name__ == "__main__":
    train(100)
