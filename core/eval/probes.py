"""Probes that read an attribute out of a (sub-)vector: a ridge regressor, the paper's expression classifier,
and pair sampling for verification."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fsx.eval.metrics import roc_auc


def ridge_fit_predict(x_train, y_train, x_test, alpha: float = 1e-3) -> torch.Tensor:
    """Closed-form ridge regression on standardised inputs (with a bias)."""
    mu, sd = x_train.mean(0), x_train.std(0).clamp(min=1e-6)
    a = torch.cat([(x_train - mu) / sd, torch.ones(len(x_train), 1)], 1).double()
    b = torch.cat([(x_test - mu) / sd, torch.ones(len(x_test), 1)], 1).double()
    reg = alpha * len(a) * torch.eye(a.shape[1], dtype=a.dtype)
    reg[-1, -1] = 0
    w = torch.linalg.solve(a.T @ a + reg, a.T @ y_train.double())
    return (b @ w).float()


class ExpressionProbe(nn.Module):
    """Sec. 5.3.3: three fully connected layers of 200 units, dropout 0.2 and ReLU after the first two."""

    def __init__(self, in_dim: int, classes: int, hidden: int = 200):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.Dropout(0.2), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.Dropout(0.2), nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x):
        return self.net(x)


def fit_classifier(x, y, classes: int, epochs: int = 5, batch: int = 64, seed: int = 0):
    """Train the expression probe on standardised x with inverse-frequency weighted cross-entropy.
    Returns the probe (in eval mode) and a function mapping raw features to class probabilities."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mu, sd = x.mean(0), x.std(0).clamp(min=1e-6)
    xt = (x - mu) / sd
    counts = torch.bincount(y, minlength=classes).float()
    weight = torch.where(counts > 0, counts.sum() / (classes * counts.clamp(min=1)), torch.zeros_like(counts))
    probe = ExpressionProbe(x.shape[1], classes)
    opt = torch.optim.Adam(probe.parameters(), 1e-3)
    with torch.enable_grad():
        for _ in range(epochs):
            probe.train()
            for idx in torch.randperm(len(xt), generator=g).split(batch):
                loss = F.cross_entropy(probe(xt[idx]), y[idx], weight=weight)
                opt.zero_grad()
                loss.backward()
                opt.step()
    probe.eval()

    @torch.no_grad()
    def predict(features):
        return probe((features - mu) / sd).softmax(1)

    return probe, predict


def classification_auc(x_train, y_train, x_test, y_test, classes: int, epochs: int = 5, batch: int = 64,
                       seed: int = 0) -> dict:
    """Sec. 5.3.3: fit the probe for ``epochs`` epochs, then report the one-vs-rest ROC AUC of each class on the
    test set and their average."""
    _, predict = fit_classifier(x_train, y_train, classes, epochs, batch, seed)
    prob = predict(x_test)
    per_class = [roc_auc(prob[:, c], y_test == c) for c in range(classes)]
    valid = [a for a in per_class if a == a]
    return {"per_class": per_class, "average": sum(valid) / len(valid) if valid else float("nan"),
            "predicted": prob.argmax(1)}


def sample_pairs(group: torch.Tensor, n_pairs: int, within: torch.Tensor | None = None,
                 across: torch.Tensor | None = None, seed: int = 0):
    """Half same-``group`` pairs, half different; with ``within``, different pairs share ``within`` (style: two
    clips of the same person); with ``across``, every pair differs in ``across`` (identity: two clips). Returns (i,
    j, same) index tensors, shuffled, every pair distinct: ``n_pairs`` of them unless the data holds fewer
    admissible pairs (then as many positives as negatives, as many as could be found).

    Each pair is drawn constructively (an anchor, then a partner among the samples that satisfy the constraints),
    so rare positives (the same person in another clip) are found as often as they are asked for."""
    g = torch.Generator().manual_seed(seed)
    n, half = len(group), n_pairs // 2
    members = {int(v): torch.nonzero(group == v).flatten() for v in group.unique()}
    kin = {int(v): torch.nonzero(within == v).flatten() for v in within.unique()} if within is not None else None

    def partner(a: int, positive: bool) -> int | None:
        pool = members[int(group[a])] if positive else (kin[int(within[a])] if kin is not None else None)
        if pool is None:  # a negative without ``within``: most random samples qualify
            for _ in range(50):
                b = int(torch.randint(n, (1,), generator=g))
                if group[b] != group[a] and (across is None or across[b] != across[a]):
                    return b
            return None
        ok = pool != a
        ok &= (group[pool] == group[a]) if positive else (group[pool] != group[a])
        if across is not None:
            ok &= across[pool] != across[a]
        pool = pool[ok]
        return int(pool[torch.randint(len(pool), (1,), generator=g)]) if len(pool) else None

    pairs, seen = {True: [], False: []}, set()
    for positive in (True, False):
        for _ in range(half * 20):
            if len(pairs[positive]) == half:
                break
            a = int(torch.randint(n, (1,), generator=g))
            b = partner(a, positive)
            # A pair drawn twice would count one comparison twice: data with few same-person pairs must show
            # as few pairs, not as thousands resampled from a handful.
            if b is not None and (min(a, b), max(a, b)) not in seen:
                seen.add((min(a, b), max(a, b)))
                pairs[positive].append((a, b))
    k = min(len(pairs[True]), len(pairs[False]))
    chosen = pairs[True][:k] + pairs[False][:k]
    order = torch.randperm(len(chosen), generator=g)
    i = torch.tensor([chosen[t][0] for t in order.tolist()], dtype=torch.long)
    j = torch.tensor([chosen[t][1] for t in order.tolist()], dtype=torch.long)
    return i, j, group[i] == group[j]


def cosine_scores(x: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(x[i], x[j], dim=1)
