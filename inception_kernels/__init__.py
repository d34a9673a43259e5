"""inception-kernels: fused Inception (GoogLeNet / Inception-v1) modules for PyTorch.

Public API:
    InceptionSpec, GOOGLENET_INCEPTIONS   -- module shapes and the GoogLeNet table
    reference.inception, .inception_bn     -- the plain-PyTorch oracles (without / with BatchNorm)
    fused_inception                        -- the fused op (Triton: one launch per forward, differentiable)
    fused_inception_bn                     -- the block with BatchNorm after every conv (train and eval)
    FusedInception, fuse, unfuse           -- drop-in fused module; swap every Inception block of a model
                                              (recognized by its computation) and back
    googlenet, GoogLeNet, GoogLeNetOutputs -- GoogLeNet, paper and torchvision variants
    googlenet_loss, Inception              -- its aux-weighted loss and its Inception block
    testing                                -- test support (random inputs, tolerances, the three-way
                                              check) and the internals tests and tools need, such as
                                              count_launches; import it as inception_kernels.testing

Modules whose names start with ``_`` are private. ``inception_kernels.tools`` holds the tools
(command line, verify, bench, report, train): they import the library, the library never
imports them.
"""

from . import reference
from .spec import GOOGLENET_INCEPTIONS, InceptionSpec
from .ops import fused_inception
from .batchnorm import fused_inception_bn
from .models import GoogLeNet, GoogLeNetOutputs, Inception, googlenet, googlenet_loss
from .modules import FusedInception, fuse, unfuse

__version__ = "0.1.0"

__all__ = ["InceptionSpec", "GOOGLENET_INCEPTIONS", "reference", "__version__"]
__all__ += ["fused_inception", "fused_inception_bn", "FusedInception", "fuse", "unfuse"]
__all__ += ["googlenet", "GoogLeNet", "GoogLeNetOutputs", "googlenet_loss", "Inception"]
