"""Train tinynet's MLP on the CPU for a few epochs: prints the losses and writes
checkpoint.pt (model and optimizer state) and metrics.json in the current
directory.

Usage: python train.py [--epochs N] [--seed S]
"""

import argparse
import json

import torch
from tinynet import TinyMLP, evaluate, make_dataset, train_epoch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # the same float reductions in every run
    x, y = make_dataset(256, 8, seed=args.seed)
    x_val, y_val = make_dataset(64, 8, seed=args.seed + 1)
    model = TinyMLP(8, 16, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(args.seed)

    losses = []
    for epoch in range(args.epochs):
        loss = train_epoch(model, optimizer, x, y, batch_size=32, generator=generator)
        val = evaluate(model, x_val, y_val)
        losses.append((round(loss, 6), round(val, 6)))
        print(f"epoch {epoch + 1}: train loss {loss:.6f}, validation loss {val:.6f}")

    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, "checkpoint.pt")
    with open("metrics.json", "w") as out:
        json.dump({"epochs": args.epochs, "losses": losses}, out)
    print("parameters:", sum(p.numel() for p in model.parameters()))


if __name__ == "__main__":
    main()
