"""Phi and Phi^-1 (Sec. 3.2): small MLPs between z and the disentangled feature vector f."""

from __future__ import annotations

import torch
import torch.nn as nn


def mlp(in_dim: int, out_dim: int, hidden: int) -> nn.Sequential:
    """Two fully connected hidden layers of ``hidden`` units with ReLU, no BN, no dropout; a linear output."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim),
    )


class Disentangler(nn.Module):
    """phi: z (N, z_dim) -> f (N, f_dim); phi_inv: f -> z~. The layout of f is the model's, not known here."""

    def __init__(self, z_dim: int, f_dim: int, hidden: int = 1000):
        super().__init__()
        self.phi = mlp(z_dim, f_dim, hidden)
        self.phi_inv = mlp(f_dim, z_dim, hidden)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.phi(z)
