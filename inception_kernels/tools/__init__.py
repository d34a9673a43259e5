"""The tools built on the library: the ``inception-kernels`` command line and what it runs.

- ``cli``: the command line (``inception-kernels``, ``python -m inception_kernels``);
- ``verify``: every backend against an independent nn composition;
- ``report``: the static kernel report (``report.model`` the bytes/FLOP/time model,
  ``report.facts`` compiled-kernel facts, ``report.format`` the tables, ``report.build`` and
  ``report.command``);
- ``aot``: ahead-of-time compiles of exactly what the launchers launch, for a GPU, without one;
- ``bench``: GPU benchmarks against eager PyTorch and torch.compile;
- ``train``, ``evaluate``: GoogLeNet training and evaluation (torchvision, tqdm, matplotlib);
- ``ui``: the vocabulary every subcommand shares (dtype names, plain help, progress bars).

The library (``inception_kernels`` and its other modules) never imports anything from here --
tests/test_layers.py checks it; the tools import the library, and torchvision, tqdm and
matplotlib lazily, where they run.
"""
