"""Evaluation metrics as plain functions on tensors: verification accuracy (LFW protocol), ROC AUC, MAE,
the Frechet distance, and the disentanglement scores MIG and DCI."""

from __future__ import annotations

import math

import torch


def verification_accuracy(scores: torch.Tensor, same: torch.Tensor, folds: int = 10) -> float:
    """LFW protocol: pairs split into ``folds`` folds; for each fold the threshold on ``scores`` (higher = more
    alike) is chosen to maximise accuracy on the other folds, then applied to the held-out fold. Returns the
    mean held-out accuracy."""
    n = len(scores.flatten())
    return verification_fold_accuracy(scores, same, torch.arange(n) * folds // n)


def verification_fold_accuracy(scores: torch.Tensor, same: torch.Tensor, fold_of: torch.Tensor) -> float:
    """As ``verification_accuracy`` with the folds given (LFW's pairs.txt fixes them)."""
    scores, same = scores.double().flatten(), same.bool().flatten()
    folds = int(fold_of.max()) + 1
    accs = []
    for k in range(folds):
        train, test = fold_of != k, fold_of == k
        if not test.any():
            continue
        s, y = scores[train], same[train]
        u = s.unique()  # thresholds half-way between neighbouring scores, and beyond both ends
        cand = torch.cat([u[:1] - 1, (u[1:] + u[:-1]) / 2, u[-1:] + 1])
        acc = ((s[None, :] >= cand[:, None]) == y[None, :]).double().mean(1)
        thr = cand[acc.argmax()]
        accs.append(((scores[test] >= thr) == same[test]).double().mean().item())
    return float(sum(accs) / len(accs))


def roc_auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve by the rank statistic (ties count half). NaN if one class is missing."""
    s, y = scores.double().flatten(), positive.bool().flatten()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = s.argsort()
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, len(s) + 1, dtype=s.dtype)
    for v in s.unique():  # average ranks of ties
        tie = s == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def mean_absolute_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-column MAE, (N, D) -> (D,)."""
    return (pred - target).abs().mean(0)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) in float64; Tr((S1 S2)^(1/2)) is the sum of the square
    roots of the eigenvalues of S1 S2 (real and non-negative for covariance matrices)."""
    mu1, mu2 = torch.as_tensor(mu1, dtype=torch.float64), torch.as_tensor(mu2, dtype=torch.float64)
    s1, s2 = torch.as_tensor(sigma1, dtype=torch.float64), torch.as_tensor(sigma2, dtype=torch.float64)
    eig = torch.linalg.eigvals(s1 @ s2).real.clamp(min=0)
    return float((mu1 - mu2).pow(2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * eig.sqrt().sum())


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    f = features.double()
    return f.mean(0), torch.cov(f.T)


def latent_vs_prior(z: torch.Tensor) -> dict[str, float]:
    """How far E's codes are from the N(0, I) prior that D_z pulls them towards: the Frechet distance of a Gaussian
    fitted to z from N(0, I) (0 when the first two moments match), the codes' RMS norm next to the prior's sqrt(d),
    the mean |mean| per dimension and the mean standard deviation. z: (N, d)."""
    mu, sigma = feature_statistics(z)
    d = z.shape[1]
    return {"frechet_to_prior": frechet_distance(mu, sigma, torch.zeros(d), torch.eye(d)),
            "rms_norm": float(z.double().pow(2).sum(1).mean().sqrt()), "prior_rms_norm": math.sqrt(d),
            "mean_abs_mean": float(mu.abs().mean()), "mean_std": float(sigma.diagonal().sqrt().mean())}


def _discretize(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Equal-width bins per column: (N, D) float -> (N, D) long."""
    lo, hi = x.min(0).values, x.max(0).values
    return ((x - lo) / (hi - lo).clamp(min=1e-12) * bins).long().clamp(max=bins - 1)


def _entropy(labels: torch.Tensor) -> float:
    _, counts = labels.unique(return_counts=True)
    p = counts.double() / counts.sum()
    return float(-(p * p.log()).sum())


def _mutual_information(a: torch.Tensor, b: torch.Tensor) -> float:
    joint = a.long() * (int(b.max()) + 1) + b.long()
    return _entropy(a) + _entropy(b) - _entropy(joint)


def mig(codes: torch.Tensor, factors: torch.Tensor, bins: int = 20) -> float:
    """Mutual Information Gap (Chen et al. 2018): for each factor, the gap between the two latent dimensions
    sharing most information with it, over the factor's entropy; averaged over factors.
    codes: (N, D) float; factors: (N, K) discrete (long) or continuous (discretised into ``bins``)."""
    c = _discretize(codes, bins)
    f = factors if not factors.is_floating_point() else _discretize(factors, bins)
    gaps = []
    for k in range(f.shape[1]):
        h = _entropy(f[:, k])
        if h <= 0:
            continue
        mi = sorted((_mutual_information(c[:, j], f[:, k]) for j in range(c.shape[1])), reverse=True)
        gaps.append((mi[0] - (mi[1] if len(mi) > 1 else 0.0)) / h)
    return float(sum(gaps) / len(gaps)) if gaps else float("nan")


def dci(codes: torch.Tensor, factors: torch.Tensor, ridge: float = 1e-2, held_out: float = 0.3,
        seed: int = 0) -> dict[str, float]:
    """Disentanglement, completeness and informativeness (Eastwood & Williams 2018) with a linear (ridge)
    regressor per factor on standardised codes; importances are the absolute weights.

    The regressors are fitted on a seeded ``1 - held_out`` of the samples; informativeness is their mean R^2 on
    the held-out rest (an in-sample R^2 rewards fitting noise). Disentanglement weights each code by its share of
    the importance and completeness each factor by its share, as Eastwood & Williams and disentanglement_lib do."""
    x = codes.double()
    x = (x - x.mean(0)) / x.std(0).clamp(min=1e-12)
    y = factors.double()
    y = (y - y.mean(0)) / y.std(0).clamp(min=1e-12)
    n, d = x.shape
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = max(1, min(n - 1, round(n * (1 - held_out))))
    fit, test = order[:cut], order[cut:]
    xf, yf = x[fit], y[fit]
    w = torch.linalg.solve(xf.T @ xf + ridge * len(xf) * torch.eye(d, dtype=x.dtype), xf.T @ yf)  # (D, K)
    yt = y[test]
    r2 = 1 - ((x[test] @ w - yt).pow(2).mean(0) / yt.var(0, unbiased=False).clamp(min=1e-12))
    imp = w.abs() + 1e-12  # (D, K)
    k = imp.shape[1]
    p_code = imp / imp.sum(1, keepdim=True)  # per code over factors
    h_code = -(p_code * p_code.log()).sum(1) / math.log(k) if k > 1 else torch.zeros(d, dtype=x.dtype)
    rho = imp.sum(1) / imp.sum()  # each code's share of the importance
    disentanglement = float((rho * (1 - h_code)).sum())
    p_fac = imp / imp.sum(0, keepdim=True)  # per factor over codes
    h_fac = -(p_fac * p_fac.log()).sum(0) / math.log(d)
    share = imp.sum(0) / imp.sum()  # each factor's share of the importance
    return {"disentanglement": disentanglement, "completeness": float(((1 - h_fac) * share).sum()),
            "informativeness": float(r2.clamp(min=0).mean())}
