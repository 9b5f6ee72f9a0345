"""A small training-style program to try the tracer on.

python -m cli.main examples/demo/train.py --epochs 2 -o trace.json
"""

import argparse
import json

from data import BatchLoader
from model import TinyModel


def train(epochs: int, batches: int) -> dict:
    model = TinyModel(width=4)
    loader = BatchLoader(batches=batches, batch_size=3)
    history = []
    for epoch in range(epochs):
        for batch in loader:
            loss = model.step(batch)
            history.append(loss)
        try:
            model.checkpoint(f"epoch-{epoch}")
        except OSError as error:
            print(f"checkpoint skipped: {error}")
    return {"epochs": epochs, "final_loss": round(history[-1], 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batches", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(train(args.epochs, args.batches)))


if __name__ == "__main__":
    main()
