"""Command-line tools built on the library: ``train`` and ``evaluate`` (see :mod:`inception_kernels.cli`).

The library (``inception_kernels`` and its modules) never imports anything from here; the tools
import the library, torchvision, tqdm and matplotlib, lazily where they can.
"""
