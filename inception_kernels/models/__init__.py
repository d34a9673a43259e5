"""Models built from Inception blocks: GoogLeNet, in the paper's and torchvision's variants."""

from .googlenet import (
    VARIANTS,
    BasicConv2d,
    GoogLeNet,
    GoogLeNetOutputs,
    Inception,
    InceptionAux,
    googlenet,
    googlenet_loss,
)

__all__ = [
    "VARIANTS",
    "BasicConv2d",
    "GoogLeNet",
    "GoogLeNetOutputs",
    "Inception",
    "InceptionAux",
    "googlenet",
    "googlenet_loss",
]
