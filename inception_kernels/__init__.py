"""inception-kernels: fused Inception (GoogLeNet / Inception-v1) modules for PyTorch.

Public API:
    InceptionSpec, GOOGLENET_INCEPTIONS   -- module shapes and the GoogLeNet table
    reference.inception                    -- the plain-PyTorch oracle
"""

from . import reference
from .spec import GOOGLENET_INCEPTIONS, InceptionSpec

__version__ = "0.1.0"

__all__ = ["InceptionSpec", "GOOGLENET_INCEPTIONS", "reference", "__version__"]
