"""inception-kernels: fused Inception (GoogLeNet / Inception-v1) modules for PyTorch.

Public API:
    InceptionSpec, GOOGLENET_INCEPTIONS   -- module shapes and the GoogLeNet table
    reference.inception                    -- the plain-PyTorch oracle
    fused_inception                        -- the fused op (Triton: one launch per forward, differentiable)
    FusedInception, fuse                   -- drop-in fused module; swap every Inception block of a model
    googlenet, GoogLeNet, GoogLeNetOutputs -- GoogLeNet, paper and torchvision variants
    googlenet_loss, Inception              -- its aux-weighted loss and its Inception block
"""

from . import reference
from .spec import GOOGLENET_INCEPTIONS, InceptionSpec
from .ops import fused_inception
from .models import GoogLeNet, GoogLeNetOutputs, Inception, googlenet, googlenet_loss
from .modules import FusedInception, fuse

__version__ = "0.1.0"

__all__ = ["InceptionSpec", "GOOGLENET_INCEPTIONS", "reference", "__version__"]
__all__ += ["fused_inception", "FusedInception", "fuse"]
__all__ += ["googlenet", "GoogLeNet", "GoogLeNetOutputs", "googlenet_loss", "Inception"]
