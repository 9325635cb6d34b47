"""One optimisation step of each stage: ``aae`` (Sec. 3.1), ``disentangle`` (Sec. 3.2-3.7), ``joint`` (Sec. 3.8),
``refit`` (not in the paper: ``disentangle`` again on the final E, with a heavier L_rec^Phi) and ``decoder`` (not in
the paper: G alone on the final E and Phi).

Each function takes a batch in [-1, 1] and its labels, computes the loss terms (``fsx.losses``), hands each
objective to ``update`` (zero_grad, backward, gradient averaging across ranks, optimiser step) and returns the
terms it computed (the caller takes detached floats). Which networks a stage trains is ``stages.STAGE_TABLE``.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
import torch.nn as nn

from fsx import losses as L
from fsx.eval.inception import load_inception
from fsx.model import FaceModel
from fsx.onet import load_onet
from fsx.perceptual import InceptionPerceptual, ONetPerceptual, RandomPerceptual
from fsx.train.stages import OPTIMIZED, STAGES, set_requires_grad


def perceptual_distance(name: str):
    """The fixed network ``loss.rec_perceptual_net`` names, as a distance (not a submodule of the model: never
    trained, never saved). A network whose weights were never converted: FileNotFoundError saying how."""
    if name == "onet":
        return ONetPerceptual(load_onet())
    if name == "inception":
        return InceptionPerceptual(load_inception(channels_last=False))
    return RandomPerceptual()  # rebuilt from its seed


@contextmanager
def running_stats_frozen(*modules):
    """BatchNorm still normalises with batch statistics but does not update its running statistics.

    G sees two kinds of input per step: encodings E(x) and prior samples z*, and in the cycle E sees generated
    images. Only the encodings of real images may shape the running statistics, or G(E(x)) in eval mode
    (what users run) drifts from what was trained."""
    bns = [m for mod in modules for m in mod.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [b.momentum for b in bns]
    for b in bns:
        b.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for b, mom in zip(bns, saved):
            b.momentum = mom


@contextmanager
def parameters_frozen(module):
    """Gradients flow through ``module`` to its input but none reach its parameters (autograd records at forward
    time which tensors require gradients)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _batch_gaussian(z: torch.Tensor) -> torch.Tensor:
    """As many draws as z has rows from the Gaussian with z's mean and (unbiased) covariance: mean + A^T eps with
    A = (z - mean) / sqrt(n - 1), eps ~ N(0, I_n), so E[(x - mean)(x - mean)^T] = A^T A, the covariance, without a
    factorisation (rank at most n - 1 in a batch of n)."""
    n = z.shape[0]
    mean = z.mean(dim=0)
    eps = torch.randn(n, n, device=z.device, dtype=z.dtype)
    return mean + eps @ (z - mean) / max(n - 1, 1) ** 0.5


class Steps:
    """The stage steps over one model, its optimisers and the training configuration."""

    def __init__(self, model: FaceModel, attributes, cfg, optimizers: dict, generator: torch.Generator,
                 averager=None, autocast=None):
        self.m, self.cfg, self.opt = model, cfg, optimizers
        self.declared = self.attributes = tuple(attributes)  # ``attributes``: as they are at the current step (``at``)
        self.gen, self.averager = generator, averager
        self.autocast = autocast or nullcontext
        self.names = model.layout.names
        self.owned = {key: [model.get_submodule(path) for path in paths] for key, paths in OPTIMIZED.items()}
        if cfg.loss.feature_match and not callable(getattr(model.aae.D_x, "feature_maps", None)):
            raise ValueError(f"loss.feature_match needs an image discriminator with feature_maps(x) "
                             f"(dcgan_discriminator has it); {model.config.image_discriminator!r} has none")
        if cfg.loss.rec_scales and not callable(getattr(model.aae.G, "pyramid", None)):
            raise ValueError(f"loss.rec_scales needs a generator with pyramid(z) (skip_generator has it); "
                             f"{model.config.generator!r} has none")
        self.perceptual = (perceptual_distance(cfg.loss.rec_perceptual_net).to(model.device)
                           if cfg.loss.rec_perceptual else None)

    def of(self, stage: str):
        """The step function of a stage (a method of the stage's name; ``STAGES`` lists them)."""
        if stage not in STAGES:
            raise ValueError(f"no stage {stage!r}; stages are {', '.join(STAGES)}")
        return getattr(self, stage)

    def at(self, stage: str, step: int) -> None:
        """Sets the attributes' losses to those of ``step`` of ``stage`` (``Attribute.at``: a loss with a schedule)."""
        self.attributes = tuple(a.at(stage, step) for a in self.declared)

    def update(self, objective: torch.Tensor, *optimizers: str) -> None:
        """One update of the named optimisers from ``objective``: the only place gradients are zeroed, averaged
        across ranks and applied."""
        for key in optimizers:
            self.opt[key].zero_grad(set_to_none=True)
        if self.averager is not None:
            self.averager.start()
        objective.backward()
        if self.averager is not None:
            self.averager.finish([m for key in optimizers for m in self.owned[key]])
        for key in optimizers:
            self.opt[key].step()

    # --- pieces -------------------------------------------------------------------------------------
    def _latent_logits(self, z_prior, z):
        """D_z on prior samples and encodings as one batch -> (logits of z_prior (N,), logits of z (N,)).

        D_z has BatchNorm (Sec. 4). Fed apart, each batch would be standardised with its own statistics, and D_z
        could not see that the encodings have the wrong scale (E(x) could shrink far below the prior's spread
        with D_z at chance)."""
        logits = self.m.aae.D_z(torch.cat([z_prior, z]))
        return logits[: len(z_prior)], logits[len(z_prior) :]

    def _latent_logits_for_encoder(self, z):
        """D_z(z) as E's adversary sees it: BatchNorm with the running statistics of D_z's own (joint) batches.

        Through batch statistics E could move the normalisation instead of its codes (its codes then grow
        without bound while D_z wins outright)."""
        D_z = self.m.aae.D_z
        was_training = D_z.training
        D_z.eval()
        try:
            return D_z(z)
        finally:
            D_z.train(was_training)

    def _discriminator_update(self, xn, z, x_rec, x_prior, z_prior, step: int, latent: bool = True) -> dict:
        """One step of D_z and/or D_x: each only on the steps its schedule (``d_z_every``, ``d_x_every``) gives it,
        and only its own forward passes are run (on a step that updates neither, nothing is). ``latent`` False
        leaves D_z out (a stage whose E is fixed gives it nothing to judge)."""
        aae, cfg = self.m.aae, self.cfg
        update_z, update_x = latent and step % cfg.optim.d_z_every == 0, step % cfg.optim.d_x_every == 0
        if not (update_z or update_x):
            return {}
        d: dict = {}
        obj = torch.zeros((), device=xn.device)
        set_requires_grad([aae.D_z, aae.D_x], True)
        if update_z:
            r1 = cfg.loss.latent_r1 > 0
            z_prior = z_prior.detach().requires_grad_(r1)
            with self.autocast():
                logits_prior, logits_enc = self._latent_logits(z_prior, z.detach())
                d["d_enc"] = L.latent_discriminator_loss(logits_prior, logits_enc)
            obj = obj + d["d_enc"]
            if r1:
                d["r1_z"] = L.r1_penalty(logits_prior, z_prior)
                obj = obj + cfg.loss.latent_r1 / 2 * d["r1_z"]
        if update_x:
            with self.autocast():
                d.update(L.image_discriminator_losses(aae.D_x(xn), aae.D_x(x_rec.detach()), aae.D_x(x_prior.detach())))
            obj = obj + L.image_discriminator_objective(d, cfg.loss.lambda_ae)
        self.update(obj, "d")
        set_requires_grad([aae.D_z, aae.D_x], False)
        return d

    def _reconstruction_terms(self, xn, x_rec, scales) -> dict:
        """L_rec's pixel error and the terms the configuration adds to it (SSIM, coarse scales, perceptual)."""
        w = self.cfg.loss
        error = L.RECONSTRUCTION_ERRORS[w.rec_error]
        terms = {"rec": error(xn, x_rec.float())}
        if w.rec_ssim:
            terms["rec_ssim"] = L.ssim_loss(xn, x_rec)
        if w.rec_scales:
            terms["rec_scales"] = L.pyramid_reconstruction(xn, scales, error)
        if w.rec_perceptual:
            terms["rec_perceptual"] = self.perceptual(xn, x_rec)
        return terms

    def _aae_generator_terms(self, xn, z, x_rec, x_prior, scales=None, rec: float | None = None
                             ) -> tuple[torch.Tensor, dict]:
        """Eq. (5)'s E/G side with L_rec weighted ``rec`` (default ``loss.rec``) and the terms added to it."""
        aae, w = self.m.aae, self.cfg.loss
        rec = w.rec if rec is None else rec
        with self.autocast():
            if w.feature_match:
                with torch.no_grad():
                    real_maps, _ = aae.D_x.feature_maps(xn)
                rec_maps, logits_rec = aae.D_x.feature_maps(x_rec)
            else:
                logits_rec = aae.D_x(x_rec)
            g = L.aae_generator_losses(self._latent_logits_for_encoder(z), logits_rec, aae.D_x(x_prior))
        g.update(self._reconstruction_terms(xn, x_rec, scales))
        obj = L.aae_objective(g, w.lambda_ae, rec, w.image_gan)
        for name in ("rec_ssim", "rec_scales", "rec_perceptual"):  # inside L_rec: lambda_AE x rec x its weight
            if name in g:
                obj = obj + w.lambda_ae * rec * getattr(w, name) * g[name]
        if w.feature_match:
            g["fm"] = L.feature_matching_l1(real_maps, rec_maps)
            obj = obj + w.lambda_ae * w.feature_match * g["fm"]
        return obj, g

    def _phi_terms(self, z, labels, rec_phi_weight: float | None = None) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """Eq. (6)-(14) on encodings z (with or without gradient into E); also f = Phi(z)."""
        m, w = self.m, self.cfg.loss
        phi, phi_inv = m.disentangler.phi, m.disentangler.phi_inv
        f = phi(z)
        terms = {"rec_phi": L.reconstruction_l1(z, phi_inv(f))}
        parts = {}
        task = L.task_losses(f, labels, self.attributes, m.layout, self.gen, parts)
        terms.update({f"task_{k}": v for k, v in (task | parts).items()})
        obj_cycle, cycle = self._cycle_terms(f, labels)
        terms.update(cycle)
        rec_weight = w.rec_phi if rec_phi_weight is None else rec_phi_weight
        obj = rec_weight * terms["rec_phi"] + obj_cycle
        if task:
            obj = obj + w.task * sum(task.values())
        return obj, terms, f

    def _cycle_terms(self, f, labels) -> tuple[torch.Tensor, dict]:
        """Eq. (8)-(10): each attribute's sub-vector swapped across the batch, drawn by G(Phi^-1(f*)) and read back
        by Phi(E(.)); the cycle's L1 to f* and the augmentation losses on what was read back. Every network that
        takes gradients in the current stage learns from them."""
        m, w = self.m, self.cfg.loss
        phi, phi_inv = m.disentangler.phi, m.disentangler.phi_inv
        f_star, perms = L.shuffle_attributes(f, m.layout, self.names, self.gen, w.cycle_samples or None)  # (K * m, F)
        z_tilde_star = phi_inv(f_star)
        with self.autocast(), running_stats_frozen(m.aae.G, m.aae.E):
            x_star = m.aae.G(z_tilde_star)  # every attribute's shuffled batch in one pass through G ...
            with nullcontext() if w.cycle_trains_encoder else parameters_frozen(m.aae.E):
                z_star = m.aae.E(x_star)  # ... and one through E
        f_cyc = phi(z_star.float())
        terms = {"cyc": L.cycle_l1(f_star, f_cyc)}
        aug = L.augmentation_losses(f_cyc, perms, self.names, labels, self.attributes, m.layout, self.gen)
        terms.update({f"aug_{k}": v for k, v in aug.items()})
        obj = w.cycle * terms["cyc"]
        if aug:
            obj = obj + w.aug * sum(aug.values())
        return obj, terms

    def _encode_decode(self, xn, encoder_share: float = 1.0, embedding_share: float = 0.0):
        """E(x), G(E(x)) (with every scale of a multi-scale G when a loss needs them), the fakes G(z*) (z* as
        ``loss.fake_codes`` says) and D_z's prior samples z ~ N(0, I); E receives
        ``encoder_share`` of the gradient of every term on G(E(x)). With ``embedding_share``, that share of the
        batch's rows is drawn from the embedding's round trip Phi^-1(Phi(E(x))) instead of from E(x)."""
        aae = self.m.aae
        z_prior = torch.randn(xn.shape[0], aae.z_dim, device=xn.device)
        with self.autocast():
            z = aae.E(xn)
            z_fake = z_prior if self.cfg.loss.fake_codes == "standard" else _batch_gaussian(z.detach().float())
            z_g = z
            if encoder_share != 1:  # G's input is a view of z whose gradient is scaled on its way back into E
                z_g = z.view_as(z)
                z_g.register_hook(lambda grad: grad * encoder_share)
            if embedding_share:
                k, dis = round(embedding_share * len(z)), self.m.disentangler
                z_g = torch.cat([dis.phi_inv(dis.phi(z_g[:k].float())).to(z_g.dtype), z_g[k:]])
            scales = aae.G.pyramid(z_g) if self.cfg.loss.rec_scales else None
            x_rec = scales[-1] if scales is not None else aae.G(z_g)
            with running_stats_frozen(aae.G):
                x_prior = aae.G(z_fake)
        return z.float(), x_rec, x_prior, z_prior, scales

    # --- the stages --------------------------------------------------------------------------------
    def aae(self, xn: torch.Tensor, labels: dict, step: int) -> dict:
        z, x_rec, x_prior, z_prior, scales = self._encode_decode(xn)
        d = self._discriminator_update(xn, z, x_rec, x_prior, z_prior, step)
        obj, g = self._aae_generator_terms(xn, z, x_rec, x_prior, scales)
        self.update(obj, "eg")
        return {**g, **d}

    def disentangle(self, xn: torch.Tensor, labels: dict, step: int, rec_phi_weight: float | None = None) -> dict:
        with torch.no_grad(), self.autocast():
            z = self.m.aae.E(xn)
        obj, terms, _ = self._phi_terms(z.float(), labels, rec_phi_weight)
        self.update(obj, "phi")
        return terms

    def _reread_terms(self, x_rec, f, labels) -> tuple[torch.Tensor, dict]:
        """``loss.rec_task`` (each attribute's task loss on Phi(E(G(E(x))))) and ``loss.rec_cycle`` (its L1 to
        f = Phi(E(x)), taken as a target without gradient), E and Phi reading the reconstruction without learning
        from it."""
        m, w = self.m, self.cfg.loss
        phi = m.disentangler.phi
        with self.autocast(), running_stats_frozen(m.aae.E), parameters_frozen(m.aae.E), parameters_frozen(phi):
            f_reread = phi(m.aae.E(x_rec).float())
        obj, terms = f_reread.new_zeros(()), {}
        if w.rec_task:
            task = L.task_losses(f_reread, labels, self.attributes, m.layout, self.gen)
            terms.update({f"reread_{k}": v for k, v in task.items()})
            obj = obj + w.rec_task * sum(task.values(), f_reread.new_zeros(()))
        if w.rec_cycle:
            terms["reread_cyc"] = L.cycle_l1(f.detach(), f_reread)
            obj = obj + w.rec_cycle * terms["reread_cyc"]
        return obj, terms

    def _ramped_rec(self, step: int) -> float:
        """L_rec's weight at this joint step: ``rec`` until the ramp's start, then rising linearly to
        ``rec_ramp`` x ``rec`` at the stage's last step."""
        w, last = self.cfg.loss, self.cfg.steps["joint"] - 1
        start = w.rec_ramp_start * last
        return w.rec * (1 + (w.rec_ramp - 1) * max(step - start, 0) / max(last - start, 1))

    def joint(self, xn: torch.Tensor, labels: dict, step: int) -> dict:
        w = self.cfg.loss
        z, x_rec, x_prior, z_prior, scales = self._encode_decode(xn, w.encoder_share)
        d = self._discriminator_update(xn, z, x_rec, x_prior, z_prior, step)
        obj_ae, g = self._aae_generator_terms(xn, z, x_rec, x_prior, scales, self._ramped_rec(step))
        obj_phi, terms, f = self._phi_terms(z, labels)
        if w.rec_task or w.rec_cycle:
            obj_reread, reread = self._reread_terms(x_rec, f, labels)
            obj_phi, terms = obj_phi + obj_reread, {**terms, **reread}
        self.update(obj_ae + obj_phi, "eg", "phi")
        return {**g, **d, **terms}

    def decoder(self, xn: torch.Tensor, labels: dict, step: int) -> dict:
        """G (and D_x) on the codes of the fixed, final E: Eq. (5)'s G side at the joint stage's weights, and the
        reread terms with E and Phi as readers. E's code for each picture no longer moves, so G is paid for drawing
        the codes the model will be used with instead of chasing an E that changes every step."""
        w = self.cfg.loss
        # E's and Phi's parameters are fixed: z has no gradient
        z, x_rec, x_prior, z_prior, scales = self._encode_decode(xn, embedding_share=w.decoder_embedding)
        d = self._discriminator_update(xn, z, x_rec, x_prior, z_prior, step, latent=False)
        obj, g = self._aae_generator_terms(xn, z, x_rec, x_prior, scales)
        f = None
        if w.rec_cycle or w.decoder_cycle:  # Phi(E(x)) only as a target or to swap: no Phi pass otherwise
            with torch.no_grad(), self.autocast():
                f = self.m.disentangler.phi(z).float()
        if w.rec_task or w.rec_cycle:
            obj_reread, reread = self._reread_terms(x_rec, f, labels)
            obj, g = obj + obj_reread, {**g, **reread}
        if w.decoder_cycle:
            obj_cycle, cycle = self._cycle_terms(f, labels)
            obj, g = obj + w.decoder_cycle * obj_cycle, {**g, **cycle}
        self.update(obj, "eg")
        return {**g, **d}

    def refit(self, xn: torch.Tensor, labels: dict, step: int) -> dict:
        """The disentangle step on the final E, with L_rec^Phi weighted ``loss.rec_phi_refit``: Phi^-1 catches up
        with the E that joint training left, so that G(Phi^-1(f)) decodes close to G(E(x))."""
        return self.disentangle(xn, labels, step, self.cfg.loss.rec_phi_refit)
