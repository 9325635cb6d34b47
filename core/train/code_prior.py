"""The Gaussian that ``FaceModel.generate`` draws new faces from: fitted to E's codes of training pictures when a
stage that trains E ends (``AAE.fit_codes`` says why the prior N(0, I) alone is not enough)."""

from __future__ import annotations

import torch

from fsx.model import to_net

PICTURES = 4096  # 99-d codes: a covariance from ~40 pictures per dimension
BATCH = 256


@torch.no_grad()
def fit_code_prior(model, sources, seed: int, pictures: int = PICTURES, batch: int = BATCH) -> int:
    """Encode up to ``pictures`` training pictures, spread evenly over ``sources`` (a source smaller than its share:
    each of its pictures once), and fit the model's code Gaussian to them; returns how many were encoded (an
    unreadable picture is left out and counted by its source).

    The pictures come from a generator of their own seeded by ``seed`` (every rank encodes the same ones and so
    fits the same buffers; no training random stream is touched, so a resumed run stays bit-identical). Batch k of
    a source is read as step k reads it: a stream of rendered persons gives each batch other persons."""
    g = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    codes = []
    per_source = -(-pictures // len(sources))
    for source in sources:
        chosen = torch.randperm(len(source), generator=g)[:per_source]
        for k, indices in enumerate(chosen.split(batch)):
            images, _ = source.get_batch(source.at_step(k, indices.tolist()))
            if len(images):
                codes.append(model.aae.E(to_net(images.to(model.device))).float())
    z = torch.cat(codes) if codes else torch.empty(0)
    if len(z) >= 2:  # else (every picture unreadable) the model keeps the Gaussian it had
        model.aae.fit_codes(z)
    model.train(was_training)
    return len(z)
