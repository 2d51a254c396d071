"""The classic PyTorch tutorial's MNIST/Fashion-MNIST classifier and training loop, unchanged but for one
added line: ``model, optimizer = pyops.optimize(model, optimizer)``.

    python examples/train_tutorial.py                    # the model written as a class
    python examples/train_tutorial.py --sequential       # the same model as nn.Sequential(OrderedDict(...))
    python examples/train_tutorial.py --stock            # without the added line, for comparison

Data: the best dataset found locally (as `python -m pyops bench auto`: a --data-dir with the IDX files,
Debian's Fashion-MNIST package, ..., else a synthetic stand-in, announced as such); --steps to shorten.
"""
import argparse
import time
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn, optim

import pyops
from pyops import data as D
from pyops.pipeline.bench import best_local_dataset


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 64)
        self.fc4 = nn.Linear(64, 10)

    def forward(self, x):
        x = x.view(x.shape[0], -1)  # make sure input tensor is flattened
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = F.relu(self.fc3(x))
        return F.log_softmax(self.fc4(x), dim=1)


def sequential():
    return nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(784, 256)), ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(256, 128)), ("relu2", nn.ReLU()),
        ("fc3", nn.Linear(128, 64)), ("relu3", nn.ReLU()),
        ("logits", nn.Linear(64, 10)), ("log_softmax", nn.LogSoftmax(dim=1))]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sequential", action="store_true", help="the nn.Sequential(OrderedDict) form of the model")
    p.add_argument("--stock", action="store_true", help="leave out pyops.optimize")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=0, help="stop each epoch after this many steps (0: the whole set)")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)

    ds = best_local_dataset(args.data_dir, lambda msg: print(msg))
    x_train, y_train = D.normalize(ds.train_images), ds.train_labels
    x_test, y_test = D.normalize(ds.test_images), ds.test_labels
    print(f"data: {ds.label}")

    torch.manual_seed(0)
    model = sequential() if args.sequential else Classifier()
    criterion = nn.NLLLoss()
    optimizer = optim.Adam(model.parameters(), lr=0.003)
    if not args.stock:
        model, optimizer = pyops.optimize(model, optimizer)  # the one added line
        print(pyops.fuse_report(model))

    for epoch in range(args.epochs):
        t0, running_loss, steps = time.perf_counter(), 0.0, 0
        order = torch.randperm(len(x_train))
        for i in range(0, len(order) - args.batch_size + 1, args.batch_size):
            images, labels = x_train[order[i:i + args.batch_size]], y_train[order[i:i + args.batch_size]]
            optimizer.zero_grad()
            log_ps = model(images)
            loss = criterion(log_ps, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            steps += 1
            if steps == args.steps:
                break
        elapsed = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            log_ps = model(x_test)
            test_loss = criterion(log_ps, y_test).item()
            accuracy = (log_ps.argmax(dim=1) == y_test).float().mean().item()
        model.train()
        print(f"Epoch: {epoch + 1}/{args.epochs}.. Training Loss: {running_loss / steps:.3f}.. "
              f"Test Loss: {test_loss:.3f}.. Test Accuracy: {accuracy:.3f}.. ({steps} steps, "
              f"{elapsed / steps * 1e3:.2f} ms/step)")


if __name__ == "__main__":
    main()
