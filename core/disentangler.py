"""Phi and Phi^-1 (Sec. 3.2) between z and the disentangled feature vector f.

Two kinds (``model.disentangler``):

- ``mlp``, the paper's: two separate MLPs. Phi^-1 learns to invert Phi (L_rec^Phi, Eq. 7), and never does so
  exactly, so an edit's image G(Phi^-1(f*)) differs from G(E(x)) even where nothing was edited.
- ``flow``: one invertible network (affine couplings between rotations and scales, as in RealNVP and Glow);
  Phi^-1 is its exact inverse, so Phi^-1(Phi(z)) = z to float precision and the embedding decodes as the
  autoencoder does. It needs z and f of one size (the default, ``latent_dim`` 0).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fsx.config import DISENTANGLERS


def mlp(in_dim: int, out_dim: int, hidden: int) -> nn.Sequential:
    """Two fully connected hidden layers of ``hidden`` units with ReLU, no BN, no dropout; a linear output."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim),
    )


class InvertibleLinear(nn.Module):
    """y = Q diag(exp(s)) x + b with Q orthogonal (torch's ``orthogonal`` parametrization; its Cayley map costs a
    quarter of the matrix exponential here): invertible for any parameter values, and as well conditioned as exp(s)
    lets it be, so that the inverse through Q^T holds to float precision. Q starts as a random rotation (it mixes
    the halves that the couplings split), s at 0."""

    def __init__(self, dim: int):
        super().__init__()
        self.rotation = nn.utils.parametrizations.orthogonal(nn.Linear(dim, dim, bias=False), orthogonal_map="cayley")
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rotation(x * self.log_scale.exp()) + self.bias

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return ((y - self.bias) @ self.rotation.weight) * (-self.log_scale).exp()


class AffineCoupling(nn.Module):
    """One half of the entries (the first or the second) passes unchanged and sets a scale and shift for the other:
    y_rest = x_rest * exp(s(x_kept)) + t(x_kept). s is bounded (|s| < ``max_log_scale``) so that the inverse
    stays well conditioned on the edited f* that Phi^-1 is given. Starts as the identity (zero last layer)."""

    def __init__(self, dim: int, hidden: int, first_half: bool, max_log_scale: float = 2.0):
        super().__init__()
        self.half, self.first_half, self.max_log_scale = dim // 2, first_half, max_log_scale
        kept = self.half if first_half else dim - self.half
        self.net = mlp(kept, 2 * (dim - kept), hidden)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (kept, rest)."""
        a, b = x[..., :self.half], x[..., self.half:]
        return (a, b) if self.first_half else (b, a)

    def _join(self, kept: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
        return torch.cat([kept, rest] if self.first_half else [rest, kept], dim=-1)

    def _scale_shift(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(kept).chunk(2, dim=-1)
        return self.max_log_scale * torch.tanh(s / self.max_log_scale), t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, rest = self._split(x)
        s, t = self._scale_shift(kept)
        return self._join(kept, rest * s.exp() + t)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        kept, rest = self._split(y)
        s, t = self._scale_shift(kept)
        return self._join(kept, (rest - t) * (-s).exp())


class Flow(nn.Module):
    """z -> f through ``blocks`` x (rotation and scale, affine coupling), the coupling's kept half alternating,
    then a last rotation and scale; ``inverse`` runs the same layers backwards."""

    def __init__(self, dim: int, hidden: int, blocks: int = 4):
        # each coupling's MLP has hidden // 2 units: four of them then cost about what the paper's one MLP costs
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(blocks):
            layers += [InvertibleLinear(dim), AffineCoupling(dim, max(hidden // 2, 1), first_half=i % 2 == 0)]
        layers.append(InvertibleLinear(dim))
        self.layers = nn.ModuleList(layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            z = layer(z)
        return z

    def inverse(self, f: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            f = layer.inverse(f)
        return f


class FlowInverse(nn.Module):
    """Phi^-1 of a flow: a module of its own (so it can be called, hooked and frozen like the MLP's) that holds no
    parameters; the flow's are Phi's, and a checkpoint stores them once."""

    def __init__(self, flow: Flow):
        super().__init__()
        self._flow = [flow]  # a list, so that the flow is not registered (and saved) a second time

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self._flow[0].inverse(f)


class Disentangler(nn.Module):
    """phi: z (N, z_dim) -> f (N, f_dim); phi_inv: f -> z~. The layout of f is the model's, not known here."""

    def __init__(self, z_dim: int, f_dim: int, hidden: int = 1000, kind: str = "mlp"):
        super().__init__()
        if kind not in DISENTANGLERS:
            raise ValueError(f"model.disentangler must be one of {', '.join(DISENTANGLERS)}, got {kind!r}")
        if kind == "flow":
            if z_dim != f_dim:
                raise ValueError(f"model.disentangler=flow needs z and f of one size, got z {z_dim} and f {f_dim}: "
                                 f"set model.latent_dim to 0 (or {f_dim})")
            self.phi = Flow(z_dim, hidden)
            self.phi_inv = FlowInverse(self.phi)
        else:
            self.phi = mlp(z_dim, f_dim, hidden)
            self.phi_inv = mlp(f_dim, z_dim, hidden)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.phi(z)
