"""The MLP pipeline: the seed tutorial's model trained and benchmarked with pyops against stock PyTorch.

  models.py   the seed MLP (784-256-128-64-10) twice -- stock PyTorch and pyops -- and the training step
  train.py    ``python -m pyops train mnist|fashion-mnist`` (also under torchrun with ``--ddp``)
  cubic.py    ``python -m pyops train cubic``: y = x^3 fitted by a 1-128-128-1 MLP
  bench.py    ``python -m pyops bench``: stock eager / fused Adam / torch.compile / pyops, side by side
  ddp.py      DistributedDataParallel over gloo on CPUs
  results.py  atomic output folders, markdown tables, plots (matplotlib, Agg)
Data comes from :mod:`pyops.data`.
"""
