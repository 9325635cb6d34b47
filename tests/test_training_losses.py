"""The training loss terms against hand computations, and what each stage may change."""

import math

import pytest
import torch

from fsx import losses as L
from fsx.attributes import Attribute
from fsx.layout import Layout
from fsx.train.stages import STAGE_TABLE, enter_stage, set_requires_grad


def test_bce_terms_match_the_formula():
    logits = torch.tensor([0.0, 2.0])
    assert L.bce_real(logits).item() == pytest.approx((math.log(2) + math.log(1 + math.exp(-2))) / 2)
    assert L.bce_fake(logits).item() == pytest.approx((math.log(2) + math.log(1 + math.exp(2))) / 2)


def test_aae_objective_eq5():
    t = {"rec": torch.tensor(0.1), "adv": torch.tensor(0.7), "enc": torch.tensor(0.5), "gen": torch.tensor(0.3)}
    assert L.aae_objective(t, 0.9).item() == pytest.approx(0.9 * (0.1 + 0.7) + 0.5 + 0.3)
    d = L.aae_discriminator_losses(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]),
                                   torch.tensor([0.0]), torch.tensor([0.0]))
    assert d["d_enc"].item() == pytest.approx(2 * math.log(2))  # log 2 for real + log 2 for fake
    assert d["d_adv"].item() == pytest.approx(2 * math.log(2)) and d["d_gen"].item() == pytest.approx(2 * math.log(2))


def test_reconstruction_l1():
    assert L.reconstruction_l1(torch.zeros(2, 3), torch.tensor([[1.0, -1.0, 0.0], [0.5, 0.5, 0.0]])).item() == pytest.approx(3 / 6)


def test_laplacian_pyramid_collapses_back_to_the_image_and_its_l1_weighs_fine_detail():
    x = torch.rand(2, 3, 32, 32)
    bands = L.laplacian_pyramid(x, 4)
    assert [b.shape[-1] for b in bands] == [32, 16, 8, 4, 2]
    rebuilt = bands[-1]
    for band in reversed(bands[:-1]):
        rebuilt = band + torch.nn.functional.interpolate(rebuilt, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(rebuilt, x)
    # A small dot (an eye at 64 px) against the same picture shifted in colour over its whole area: plain L1
    # ranks the colour shift as the larger error, the pyramid the missing dot.
    face = torch.zeros(1, 3, 64, 64)
    dot = face.clone()
    dot[..., 30:33, 30:33] = 1.0
    tinted = face + 0.01
    assert L.reconstruction_l1(face, dot) < L.reconstruction_l1(face, tinted)
    assert L.laplacian_l1(face, dot) > L.laplacian_l1(face, tinted)


def test_shuffle_changes_only_the_attributes_slice():
    layout = Layout([("pose", 1), ("identity", 2)])
    f = torch.arange(12, dtype=torch.float32).view(4, 3)
    g = torch.Generator().manual_seed(0)
    f_star, perms = L.shuffle_attributes(f, layout, ["pose", "identity"], g)
    assert f_star.shape == (8, 3) and perms.shape == (2, 4)
    pose_edit, id_edit = f_star[:4], f_star[4:]
    assert torch.equal(pose_edit[:, 0], f[perms[0], 0]) and torch.equal(pose_edit[:, 1:], f[:, 1:])
    assert torch.equal(id_edit[:, 1:], f[perms[1], 1:]) and torch.equal(id_edit[:, 0], f[:, 0])
    assert L.cycle_l1(f_star, f_star + 0.5).item() == pytest.approx(0.5)


def _recording_attribute(name, label, dim=1):
    seen = []

    def loss(features, labels, generator=None):
        seen.append((features.clone(), labels[label].clone()))
        return features.sum() * 0 + 1.0

    return Attribute(name=name, dim=dim, labels=(label,), loss=loss), seen


def test_task_loss_only_for_labelled_attributes_and_aug_uses_permuted_labels():
    a, seen_a = _recording_attribute("alpha", "ya")
    b, seen_b = _recording_attribute("beta", "yb")
    layout = Layout([("alpha", 1), ("beta", 1)])
    f = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    labels = {"ya": torch.tensor([7, 8, 9])}  # this batch labels alpha only
    task = L.task_losses(f, labels, [a, b], layout)
    assert set(task) == {"alpha"} and not seen_b
    assert torch.equal(seen_a[0][0], f[:, :1])
    perms = torch.tensor([[2, 0, 1], [1, 2, 0]])
    f_cyc = torch.arange(12, dtype=torch.float32).view(6, 2)  # two shuffled batches of 3, re-encoded
    seen_a.clear()
    aug = L.augmentation_losses(f_cyc, perms, ["alpha", "beta"], labels, [a, b], layout)
    assert set(aug) == {"alpha"}
    feats, ya = seen_a[0]
    assert torch.equal(feats, f_cyc[:3, :1])  # alpha's own shuffled batch, alpha's slice
    assert torch.equal(ya, torch.tensor([9, 7, 8]))  # pi(y): labels permuted like the sub-vector


def test_a_loss_made_of_parts_is_their_weighted_sum_and_each_part_is_reported():
    def loss(features, labels, generator=None):
        return {"fit": (features[:, 0] - labels["ya"]).abs().mean(), "spread": features.pow(2).mean()}

    a = Attribute(name="alpha", dim=2, labels=("ya",), loss=loss, weight=3.0)
    f = torch.tensor([[1.0, 2.0], [0.0, -1.0], [2.0, 0.5]], requires_grad=True)
    labels = {"ya": torch.tensor([0.0, 1.0, 2.0])}
    parts = {}
    task = L.task_losses(f, labels, [a], Layout([("alpha", 2)]), parts=parts)
    fit, spread = (f[:, 0] - labels["ya"]).abs().mean(), f.pow(2).mean()
    torch.testing.assert_close(task["alpha"], 3.0 * (fit + spread))
    assert set(parts) == {"alpha.fit", "alpha.spread"}
    torch.testing.assert_close(parts["alpha.fit"], 3.0 * fit.detach())
    assert not parts["alpha.spread"].requires_grad  # reported, not trained twice
    task["alpha"].backward()
    assert f.grad is not None and float(f.grad.abs().sum()) > 0
    # a plain scalar loss reports no parts
    parts.clear()
    L.task_losses(f, labels, [Attribute(name="alpha", dim=2, labels=("ya",), loss=lambda x, y, g=None: x.sum())],
                  Layout([("alpha", 2)]), parts=parts)
    assert parts == {}


def test_training_asks_each_loss_for_the_step_it_is_at(tmp_path):
    """A loss with a schedule (``at``): the trainer uses the loss of every stage's step, so the expression's
    prototype term, kept to the joint stage's first 2 steps, is logged at those steps and not after, nor in refit."""
    import json

    tr = _tiny_trainer(tmp_path, steps={"aae": 0, "disentangle": 0, "joint": 4, "refit": 2}, log_every=1,
                       attribute_options={"expression": {"prototype_weight": 0.5, "prototype_steps": 2}})
    tr.fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss/task_expression" in r]
    with_term = [(r["stage"], r["step"]) for r in rows if "loss/task_expression.prototype" in r]
    assert with_term == [("joint", 1), ("joint", 2)]
    assert [(r["stage"], r["step"]) for r in rows] == [("joint", 1), ("joint", 2), ("joint", 3), ("joint", 4),
                                                        ("refit", 1), ("refit", 2)]
    assert tr.steps.declared[2].loss.prototype_weight == 0.5  # the declared attributes are left as they were


def _tiny_trainer(tmp_path, registry=None, **over):
    from fsx.train import Trainer, make_config

    cfg = make_config("tiny", **over)
    return Trainer(cfg, tmp_path, progress=False, registry=registry)


def _generator_side_batch(tr):
    """The trainer's model as the aae stage's E/G update sees it (discriminators frozen) and a batch in [-1, 1]."""
    m = tr.model
    enter_stage(m, STAGE_TABLE["aae"])
    set_requires_grad([m.aae.D_x, m.aae.D_z], False)
    _, x, _ = tr.schedule.next(tr.global_step)
    return x * 2 - 1


def _snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items() if v.is_floating_point())


def test_disentangle_stage_moves_phi_only(tmp_path):
    tr = _tiny_trainer(tmp_path)
    m = tr.model
    before = {n: _snapshot(mod) for n, mod in [("E", m.aae.E), ("G", m.aae.G), ("phi", m.disentangler)]}
    enter_stage(tr.model, STAGE_TABLE["disentangle"])
    _, x, y = tr.schedule.next(tr.global_step)
    terms = tr.steps.disentangle(x * 2 - 1, y, 0)
    assert {"rec_phi", "cyc"} <= set(terms) and any(k.startswith("task_") for k in terms)
    assert _changed(before["phi"], m.disentangler)
    assert not _changed(before["E"], m.aae.E) and not _changed(before["G"], m.aae.G)  # the AAE is frozen


def test_refit_stage_is_the_disentangle_step_with_its_own_rec_phi_weight(tmp_path):
    """refit trains Phi and Phi^-1 on the frozen AAE with L_rec^Phi weighted ``loss.rec_phi_refit``: one refit
    step equals one disentangle step of a run whose ``loss.rec_phi`` is that weight, and the weight matters."""
    after = {}
    for name, stage, over in (("refit50", "refit", dict(rec_phi=1.0, rec_phi_refit=50.0)),
                              ("dis50", "disentangle", dict(rec_phi=50.0)),
                              ("refit1", "refit", dict(rec_phi=1.0, rec_phi_refit=1.0))):
        tr = _tiny_trainer(tmp_path / name, loss=over)
        m = tr.model
        E, G = _snapshot(m.aae.E), _snapshot(m.aae.G)
        enter_stage(tr.model, STAGE_TABLE[stage])
        _, x, y = tr.schedule.next(tr.global_step)
        getattr(tr.steps, stage)(x * 2 - 1, y, 0)
        assert not _changed(E, m.aae.E) and not _changed(G, m.aae.G)  # the AAE is frozen
        after[name] = _snapshot(m.disentangler)
    assert all(torch.equal(after["refit50"][k], after["dis50"][k]) for k in after["dis50"])
    assert any(not torch.equal(after["refit50"][k], after["refit1"][k]) for k in after["refit1"])


def test_decoder_stage_moves_g_and_d_x_only(tmp_path):
    """decoder trains G (and D_x beside it) on the codes of the fixed E: E, Phi, Phi^-1 and D_z keep every weight
    and E its BatchNorm statistics, and the reread terms are paid when the configuration weights them."""
    tr = _tiny_trainer(tmp_path, loss={"rec_task": 1.0})
    m = tr.model
    before = {n: _snapshot(mod) for n, mod in [("E", m.aae.E), ("G", m.aae.G), ("phi", m.disentangler),
                                                ("D_x", m.aae.D_x), ("D_z", m.aae.D_z)]}
    enter_stage(m, STAGE_TABLE["decoder"])
    _, x, y = tr.schedule.next(tr.global_step)
    terms = tr.steps.decoder(x * 2 - 1, y, 0)
    assert {"rec", "adv", "gen", "d_adv", "d_gen", "reread_expression"} <= set(terms) and "d_enc" not in terms
    assert _changed(before["G"], m.aae.G) and _changed(before["D_x"], m.aae.D_x)
    for name, module in (("E", m.aae.E), ("phi", m.disentangler), ("D_z", m.aae.D_z)):
        assert all(torch.equal(before[name][k], v) for k, v in module.state_dict().items()), name


def test_decoder_stage_draws_the_embeddings_codes_and_pays_g_for_edits(tmp_path):
    """loss.decoder_embedding 1: L_rec is the pixel error of G(Phi^-1(Phi(E(x)))) (checked against that forward
    pass by hand); loss.decoder_cycle: the cycle and augmentation terms are paid with G alone learning from them."""
    from fsx import losses as L
    from fsx.train.steps import running_stats_frozen

    tr = _tiny_trainer(tmp_path, loss={"decoder_embedding": 1.0, "decoder_cycle": 1.0})
    m = tr.model
    before = {n: _snapshot(mod) for n, mod in [("E", m.aae.E), ("phi", m.disentangler), ("D_z", m.aae.D_z)]}
    enter_stage(m, STAGE_TABLE["decoder"])
    _, x, y = tr.schedule.next(tr.global_step)
    xn = x * 2 - 1
    error, dis = L.RECONSTRUCTION_ERRORS[tr.cfg.loss.rec_error], m.disentangler
    with torch.no_grad(), running_stats_frozen(m.aae.G):
        z = m.aae.E(xn)
        via_embedding = error(xn, m.aae.G(dis.phi_inv(dis.phi(z))))
        via_encoder = error(xn, m.aae.G(z))
    terms = tr.steps.decoder(xn, y, 0)
    assert {"cyc", "aug_expression", "aug_identity"} <= set(terms)
    torch.testing.assert_close(terms["rec"], via_embedding)
    assert not torch.isclose(terms["rec"], via_encoder)
    for name, module in (("E", m.aae.E), ("phi", m.disentangler), ("D_z", m.aae.D_z)):
        assert all(torch.equal(before[name][k], v) for k, v in module.state_dict().items()), name


def test_stage_all_runs_the_stages_that_have_steps():
    from fsx.train import make_config

    assert make_config("tiny").stages == ("aae", "disentangle", "joint", "refit")
    assert make_config("paper").stages == ("aae", "disentangle", "joint")  # the paper has no refit stage
    assert make_config("tiny", steps={"aae": 3, "joint": 2}).stages == ("aae", "joint")
    assert make_config("tiny", stage="refit").stages == ("refit",)
    assert make_config("tiny", steps={"joint": 2, "decoder": 3, "refit": 1}).stages == ("joint", "refit", "decoder")
    with pytest.raises(ValueError, match="rec_phi_refit"):
        make_config("tiny", loss={"rec_phi_refit": -1.0})


def test_aae_stage_moves_the_autoencoder_not_phi(tmp_path):
    tr = _tiny_trainer(tmp_path)
    m = tr.model
    phi, E, D = _snapshot(m.disentangler), _snapshot(m.aae.E), _snapshot(m.aae.D_x)
    enter_stage(tr.model, STAGE_TABLE["aae"])
    _, x, y = tr.schedule.next(tr.global_step)
    terms = tr.steps.aae(x * 2 - 1, y, 0)
    assert set(terms) == {"rec", "adv", "enc", "gen", "d_adv", "d_enc", "d_gen"}
    assert _changed(E, m.aae.E) and _changed(D, m.aae.D_x) and not _changed(phi, m.disentangler)


def test_mirroring_flips_pose_labels(tmp_path):
    tr = _tiny_trainer(tmp_path, mirror_p=1.0)
    _, x, y = tr.schedule.next(tr.global_step)
    x2, y2 = tr.schedule.mirror(x, y)
    assert torch.equal(x2, x.flip(-1))
    torch.testing.assert_close(y2["pose"], y["pose"] * torch.tensor([-1.0, 1.0, -1.0]))
    assert torch.equal(y2["person"], y["person"])


def test_prior_samples_do_not_move_generator_running_statistics(tmp_path):
    tr = _tiny_trainer(tmp_path)
    m = tr.model
    enter_stage(tr.model, STAGE_TABLE["aae"])
    bn = [b for b in m.aae.G.modules() if isinstance(b, torch.nn.BatchNorm2d)][-1]
    _, x, _ = tr.schedule.next(tr.global_step)
    xn = x * 2 - 1
    # what the running mean becomes when G sees only the encodings of this batch
    with torch.no_grad():
        import copy

        ref = copy.deepcopy(m.aae)
        ref.train()
        ref.G(ref.E(xn))
    before = bn.running_mean.clone()
    tr.steps._encode_decode(xn)
    ref_bn = [b for b in ref.G.modules() if isinstance(b, torch.nn.BatchNorm2d)][-1]
    assert not torch.equal(bn.running_mean, before)
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean)
    assert bn.momentum == 0.1  # restored


def test_shuffle_with_a_sample_budget_edits_that_many_rows_per_attribute():
    layout = Layout([("pose", 1), ("identity", 2)])
    f = torch.arange(30, dtype=torch.float32).view(10, 3)
    g = torch.Generator().manual_seed(0)
    f_star, sources = L.shuffle_attributes(f, layout, ["pose", "identity"], g, samples=3)
    assert f_star.shape == (6, 3) and sources.shape == (2, 3)
    rows = {tuple(r.tolist()) for r in f}
    pose_edit, id_edit = f_star[:3], f_star[3:]
    assert torch.equal(pose_edit[:, 0], f[sources[0], 0]) and torch.equal(id_edit[:, 1:], f[sources[1], 1:])
    # the rest of each edited row is one real row of f
    assert all(any(r[1:] == q[1:] for q in rows) for r in map(tuple, pose_edit.tolist()))
    assert all(any(r[0] == q[0] for q in rows) for r in map(tuple, id_edit.tolist()))
    # the default (every row) draws the same permutations as before the budget existed
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a, pa = L.shuffle_attributes(f, layout, ["pose", "identity"], g1)
    b, pb = L.shuffle_attributes(f, layout, ["pose", "identity"], g2, samples=10)
    assert torch.equal(a, b) and torch.equal(pa, pb)


def test_cycle_samples_bounds_the_images_sent_through_the_cycle(tmp_path):
    sizes = []
    for budget in (0, 3):
        tr = _tiny_trainer(tmp_path / str(budget), loss={"cycle_samples": budget})
        enter_stage(tr.model, STAGE_TABLE["disentangle"])
        _, x, y = tr.schedule.next(tr.global_step)
        seen = []
        hook = tr.model.aae.G.register_forward_hook(lambda mod, inp, out, seen=seen: seen.append(out.shape[0]))
        terms = tr.steps.disentangle(x * 2 - 1, y, 0)
        hook.remove()
        assert any(k.startswith("aug_") for k in terms) and "cyc" in terms
        sizes.append((seen, x.shape[0]))
    (full, batch), (small, _) = sizes
    K = 4  # pose, identity, expression, style
    assert full == [K * batch] and small == [K * 3]


def test_latent_discriminator_sees_prior_samples_and_encodings_in_one_batch(tmp_path):
    """D_z has BatchNorm: fed apart, a batch of encodings at a quarter of the prior's scale gives the same logits
    as the prior batch itself, so D_z could never tell them apart. Fed together, it can."""
    tr = _tiny_trainer(tmp_path)
    enter_stage(tr.model, STAGE_TABLE["aae"])
    D_z = tr.model.aae.D_z
    z_prior = torch.randn(16, tr.model.aae.z_dim, generator=torch.Generator().manual_seed(0))
    z = 0.25 * z_prior
    torch.manual_seed(1)
    apart_prior = D_z(z_prior)
    torch.manual_seed(1)  # the same dropout masks
    apart_enc = D_z(z)
    torch.testing.assert_close(apart_prior, apart_enc, atol=1e-3, rtol=1e-3)
    prior, enc = tr.steps._latent_logits(z_prior, z)
    assert prior.shape == enc.shape == (16,)
    assert (prior - enc).abs().max() > 0.01


def test_encoder_side_latent_logits_use_running_statistics(tmp_path):
    """E's adversarial term reads D_z with BatchNorm's running statistics: a code's logit does not depend on the
    rest of its batch (so E cannot lower its loss by moving batch statistics), and nothing of D_z changes."""
    tr = _tiny_trainer(tmp_path)
    enter_stage(tr.model, STAGE_TABLE["aae"])
    D_z = tr.model.aae.D_z
    assert D_z.training
    bn = [b for b in D_z.modules() if isinstance(b, torch.nn.BatchNorm1d)][0]
    before = bn.running_mean.clone()
    z = (3.0 * torch.randn(8, tr.model.aae.z_dim, generator=torch.Generator().manual_seed(0))).requires_grad_()
    whole = tr.steps._latent_logits_for_encoder(z)
    torch.testing.assert_close(tr.steps._latent_logits_for_encoder(z[:3]), whole[:3])
    whole.sum().backward()
    assert z.grad.abs().sum() > 0
    assert D_z.training and torch.equal(bn.running_mean, before)


def _aae_step_inputs(tr):
    """One batch through E and G as the aae step makes it: (xn, z, x_rec, x_prior), without gradient."""
    enter_stage(tr.model, STAGE_TABLE["aae"])
    _, x, _ = tr.schedule.next(tr.global_step)
    torch.manual_seed(0)
    with torch.no_grad():
        z, x_rec, x_prior, _, _ = tr.steps._encode_decode(x * 2 - 1)
    return x * 2 - 1, z, x_rec, x_prior


def test_r1_penalty_is_the_squared_input_gradient():
    """For a linear critic logit = z @ w the gradient is w for every sample, so R1 is ||w||^2."""
    w = torch.tensor([1.0, -2.0, 0.5])
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0)).requires_grad_()
    assert float(L.r1_penalty(z @ w, z)) == pytest.approx(float(w.pow(2).sum()))
    q = z.pow(2).sum(dim=1)  # gradient 2z
    assert float(L.r1_penalty(q, z).detach()) == pytest.approx(float((2 * z.detach()).pow(2).sum(dim=1).mean()), rel=1e-5)


def test_latent_r1_enters_the_discriminator_update(tmp_path):
    """latent_r1 adds gamma/2 * R1 to D_z's objective (logged as r1_z) and changes D_z's update; at 0 nothing is
    computed."""
    states = {}
    for gamma in (0.0, 50.0):
        tr = _tiny_trainer(tmp_path / str(gamma), loss={"latent_r1": gamma})
        xn, z, x_rec, x_prior = _aae_step_inputs(tr)
        z_prior = torch.randn(len(z), tr.model.aae.z_dim, generator=torch.Generator().manual_seed(1))
        torch.manual_seed(2)
        d = tr.steps._discriminator_update(xn, z, x_rec, x_prior, z_prior, step=0)
        assert ("r1_z" in d) == (gamma > 0)
        if gamma:
            assert float(d["r1_z"].detach()) > 0
        states[gamma] = _snapshot(tr.model.aae.D_z)
    assert any(not torch.equal(states[0.0][k], states[50.0][k]) for k in states[0.0] if "weight" in k)


def test_latent_r1_must_not_be_negative(tmp_path):
    with pytest.raises(ValueError, match="latent_r1"):
        _tiny_trainer(tmp_path, loss={"latent_r1": -1.0})


@pytest.mark.parametrize("trains_encoder", [True, False])
def test_cycle_trains_the_encoder_only_when_asked(tmp_path, trains_encoder):
    """With ``loss.cycle_trains_encoder`` off, the cycle's gradient reaches G and Phi^-1 through the generated
    images but none of it reaches E's parameters: E learns from real faces only."""
    tr = _tiny_trainer(tmp_path, loss={"cycle_trains_encoder": trains_encoder})
    m = tr.model
    enter_stage(m, STAGE_TABLE["joint"])
    _, x, y = tr.schedule.next(tr.global_step)
    with torch.no_grad():
        z = m.aae.E(x * 2 - 1)  # no gradient into E from the real path: only the cycle's can reach it
    _, terms, _ = tr.steps._phi_terms(z, y)
    (terms["cyc"] + sum(v for k, v in terms.items() if k.startswith("aug_"))).backward()
    grad_norm = lambda mod: sum(float(p.grad.abs().sum()) for p in mod.parameters() if p.grad is not None)  # noqa: E731
    assert grad_norm(m.aae.G) > 0 and grad_norm(m.disentangler.phi_inv) > 0
    assert (grad_norm(m.aae.E) > 0) == trains_encoder
    assert all(p.requires_grad for p in m.aae.E.parameters())  # E trains on real faces as before


def test_feature_matching_l1_against_hand_computation():
    real = [torch.zeros(2, 3, 4, 4), torch.ones(2, 5, 2, 2)]
    rec = [torch.full((2, 3, 4, 4), 0.5, requires_grad=True), torch.full((2, 5, 2, 2), 3.0, requires_grad=True)]
    real[0].requires_grad_(True)
    loss = L.feature_matching_l1(real, rec)
    assert loss.item() == pytest.approx((0.5 + 2.0) / 2)  # each layer's mean |difference|, averaged over layers
    loss.backward()
    assert real[0].grad is None and rec[0].grad is not None  # the real side is a fixed target


def test_image_discriminator_feature_maps_end_in_its_logits():
    from fsx.backbones.discriminators import dcgan_discriminator

    D = dcgan_discriminator(64, 0.125).eval()
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    maps, logits = D.feature_maps(x)
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4]  # one map per halving, 64 -> 4
    torch.testing.assert_close(logits, D(x))


@pytest.mark.parametrize("weight", [0.0, 2.0])
def test_feature_matching_trains_e_and_g_when_weighted(tmp_path, weight):
    """``loss.feature_match`` adds the D_x feature-matching term to the E/G objective, lambda_AE x weight x
    L_fm, with gradient into G (and E) but not into D_x; at 0 the term is not computed at all."""
    tr = _tiny_trainer(tmp_path, loss={"feature_match": weight})
    m = tr.model
    enter_stage(m, STAGE_TABLE["aae"])
    set_requires_grad([m.aae.D_x, m.aae.D_z], False)  # as after the discriminators' update in a step
    _, x, y = tr.schedule.next(tr.global_step)
    xn = x * 2 - 1
    z, x_rec, x_prior, _, _ = tr.steps._encode_decode(xn)
    obj, g = tr.steps._aae_generator_terms(xn, z, x_rec, x_prior)
    assert ("fm" in g) == bool(weight)
    if not weight:
        return
    w = tr.cfg.loss
    without_fm = L.aae_objective(g, w.lambda_ae, w.rec, w.image_gan)
    torch.testing.assert_close(obj, without_fm + w.lambda_ae * weight * g["fm"])
    assert g["fm"].item() > 0
    g["fm"].backward()
    grad_norm = lambda mod: sum(float(p.grad.abs().sum()) for p in mod.parameters() if p.grad is not None)  # noqa: E731
    assert grad_norm(m.aae.G) > 0 and grad_norm(m.aae.E) > 0
    assert grad_norm(m.aae.D_x) == 0


def _plain_critic(image_size: int = 64, width: float = 1.0):
    """An image discriminator that gives logits but no ``feature_maps``."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, 1, image_size), torch.nn.Flatten(0))


def test_feature_matching_with_a_discriminator_that_has_no_feature_maps_is_a_named_error(tmp_path):
    from fsx.plugins import hookimpl, load_registry

    class PlainCriticPlugin:
        @staticmethod
        @hookimpl
        def fsx_register_backbones():
            return {"plain_critic": _plain_critic}

    registry = load_registry([PlainCriticPlugin], entry_points=False)  # this test's registry, not the process's
    model = {"image_discriminator": "plain_critic"}
    _tiny_trainer(tmp_path / "ok", registry, model=model)  # without feature matching the plugin's D_x trains as it is
    with pytest.raises(ValueError, match="feature_match.*'plain_critic' has none"):
        _tiny_trainer(tmp_path / "fm", registry, model=model, loss={"feature_match": 1.0})


@pytest.mark.parametrize("error", ["l1", "squared"])
def test_reconstruction_error_is_the_one_the_configuration_names(tmp_path, error):
    """``loss.rec_error`` picks L_rec's pixel error in Eq. (5): the mean absolute error (the paper) or the mean
    squared error, and the E/G objective weighs it as before."""
    tr = _tiny_trainer(tmp_path, loss={"rec_error": error})
    xn = _generator_side_batch(tr)
    z, x_rec, x_prior, _, _ = tr.steps._encode_decode(xn)
    obj, g = tr.steps._aae_generator_terms(xn, z, x_rec, x_prior)
    diff = (xn - x_rec.float()).detach()
    expected = diff.abs().mean() if error == "l1" else diff.pow(2).mean()
    torch.testing.assert_close(g["rec"].detach(), expected)
    w = tr.cfg.loss
    torch.testing.assert_close(obj, L.aae_objective(g, w.lambda_ae, w.rec, w.image_gan))


def test_an_unknown_reconstruction_error_is_refused_by_name():
    from fsx.train import make_config

    with pytest.raises(ValueError, match="rec_error"):
        make_config("tiny", loss={"rec_error": "cubic"})


def test_ssim_loss_is_zero_for_equal_pictures_and_pays_more_for_a_missing_part_than_pixels_do():
    """A dark 4x4 'eye' missing from a 64 px face costs 1/256 of the pixels but a window's worth of structure."""
    torch.manual_seed(0)
    x = torch.full((2, 3, 64, 64), 0.4) + 0.02 * torch.randn(2, 3, 64, 64)
    eyeless = x.clone()
    x[:, :, 20:24, 20:24] = -0.8
    assert L.ssim_loss(x, x).abs() < 1e-6
    dimmer = x * 0.97  # every pixel a little off: a larger mean squared error than the missing eye's ...
    assert L.reconstruction_squared(x, dimmer) < L.reconstruction_squared(x, eyeless)
    assert L.ssim_loss(x, eyeless) > 5 * L.ssim_loss(x, dimmer)  # ... but SSIM weighs the eye far more
    y = eyeless.clone().requires_grad_(True)
    L.ssim_loss(x, y).backward()
    assert y.grad[:, :, 20:24, 20:24].abs().mean() > 10 * y.grad[:, :, 40:, 40:].abs().mean()


def test_pyramid_reconstruction_asks_each_coarse_scale_for_the_pooled_picture():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    exact = [torch.nn.functional.avg_pool2d(x, k) for k in (4, 2)] + [x]
    assert L.pyramid_reconstruction(x, exact, L.reconstruction_squared) == 0
    off = [exact[0] + 0.5, exact[1], x]
    torch.testing.assert_close(L.pyramid_reconstruction(x, off, L.reconstruction_squared), torch.tensor(0.125))
    assert L.pyramid_reconstruction(x, [x], L.reconstruction_squared) == 0  # a single scale has no coarse one


def test_random_perceptual_is_fixed_by_its_seed_and_never_trained():
    from fsx.perceptual import RandomPerceptual

    a, b, c = RandomPerceptual(seed=0), RandomPerceptual(seed=0), RandomPerceptual(seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.stages[0][0].weight, c.stages[0][0].weight)
    assert not any(p.requires_grad for p in a.parameters())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert a(x, x) == 0
    y = (x + 0.3 * torch.randn_like(x)).requires_grad_(True)
    d = a(x, y)
    d.backward()
    assert d > 0 and y.grad.abs().sum() > 0


def test_added_reconstruction_terms_enter_l_rec_with_their_weights(tmp_path):
    """loss.rec_ssim, rec_scales and rec_perceptual: each logged and added inside L_rec (lambda_AE x rec x weight)."""
    weights = {"rec_ssim": 0.5, "rec_scales": 2.0, "rec_perceptual": 0.25}
    tr = _tiny_trainer(tmp_path, loss={"rec_error": "squared", **weights},
                       model={"generator": "skip_generator", "backbone_options": {"generator": {"floor": 8}}})
    xn = _generator_side_batch(tr)
    z, x_rec, x_prior, _, scales = tr.steps._encode_decode(xn)
    assert len(scales) == 4 and scales[-1] is x_rec  # 4 .. 32 px
    obj, g = tr.steps._aae_generator_terms(xn, z, x_rec, x_prior, scales)
    w = tr.cfg.loss
    expected = L.aae_objective(g, w.lambda_ae, w.rec, w.image_gan) + sum(
        w.lambda_ae * w.rec * weight * g[name] for name, weight in weights.items())
    torch.testing.assert_close(obj, expected)
    torch.testing.assert_close(g["rec_ssim"], L.ssim_loss(xn, x_rec))


def test_coarse_scale_loss_with_a_generator_without_pyramid_is_a_named_error(tmp_path):
    with pytest.raises(ValueError, match="rec_scales.*'resnet18_generator' has none"):
        _tiny_trainer(tmp_path, loss={"rec_scales": 1.0})


def _assert_only_g_learns(m, obj):
    """Backpropagate obj from cleared gradients: G's parameters get some, E's and Phi's none."""
    for p in m.parameters():
        p.grad = None
    obj.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.aae.G.parameters())
    assert all(p.grad is None for p in m.aae.E.parameters())
    assert all(p.grad is None for p in m.disentangler.phi.parameters())


def test_reread_task_pays_g_for_what_e_and_phi_read_in_its_reconstruction(tmp_path):
    """loss.rec_task: the task losses on Phi(E(G(E(x)))) against x's labels train G (and E through the code it
    produced) but not E or Phi as readers of the reconstruction."""
    tr = _tiny_trainer(tmp_path, loss={"rec_task": 2.0})
    m = tr.model
    enter_stage(m, STAGE_TABLE["joint"])
    _, x, labels = tr.schedule.next(tr.global_step)
    xn = x * 2 - 1
    with torch.no_grad():
        z = m.aae.E(xn)
    x_rec = m.aae.G(z)  # the reader's input, with no path back into E's first pass
    obj, terms = tr.steps._reread_terms(x_rec, m.disentangler.phi(z), labels)
    assert set(terms) == {f"reread_{k}" for k in ("pose", "identity", "expression", "style")}
    torch.testing.assert_close(obj, 2.0 * sum(terms.values()))
    _assert_only_g_learns(m, obj)
    row = tr.steps.joint(xn, labels, 0)
    assert "reread_expression" in row


def test_reread_cycle_pays_g_for_the_code_e_read_in_x(tmp_path):
    """loss.rec_cycle: the L1 between Phi(E(G(E(x)))) and Phi(E(x)) trains G only: the readers take no gradient
    from the reconstruction, and the target Phi(E(x)) none either (its graph into E and Phi is kept here)."""
    tr = _tiny_trainer(tmp_path, loss={"rec_cycle": 3.0})
    m = tr.model
    enter_stage(m, STAGE_TABLE["joint"])
    _, x, labels = tr.schedule.next(tr.global_step)
    xn = x * 2 - 1
    z = m.aae.E(xn)  # with its graph: a target that leaked gradient would reach E and Phi through it
    x_rec = m.aae.G(z.detach())
    obj, terms = tr.steps._reread_terms(x_rec, m.disentangler.phi(z), labels)
    assert set(terms) == {"reread_cyc"}
    with torch.no_grad():
        expected = (m.disentangler.phi(z) - m.disentangler.phi(m.aae.E(x_rec))).abs().mean()
    torch.testing.assert_close(terms["reread_cyc"], expected)
    assert float(expected) > 0
    torch.testing.assert_close(obj, 3.0 * terms["reread_cyc"])
    _assert_only_g_learns(m, obj)
    row = tr.steps.joint(xn, labels, 0)
    assert "reread_cyc" in row and "reread_expression" not in row


def test_reset_at_clears_every_optimiser_when_its_stage_starts(tmp_path):
    """``optim.reset_at=joint``: the joint stage's Adam starts from empty moments (its step count is the stage's
    own), as a run started with --init from the aae model does; without it the moments carry over."""
    from fsx.train import make_config

    counts = {}
    for name, reset in (("carry", ()), ("reset", ("joint",))):
        tr = _tiny_trainer(tmp_path / name, steps={"aae": 3, "joint": 2}, optim=dict(reset_at=reset))
        tr.fit()
        first = next(tr.model.aae.E.parameters())
        counts[name] = int(tr.optimizers["eg"].state[first]["step"])
    assert counts == {"carry": 5, "reset": 2}
    with pytest.raises(ValueError, match="optim option 'reset_at' must be a list, got 'joint'"):
        make_config("tiny", optim=dict(reset_at="joint"))
    with pytest.raises(ValueError, match=r"optim.reset_at: unknown stage\(s\) \['jiont'\]"):
        make_config("tiny", optim=dict(reset_at=["jiont"]))


def test_decay_at_lowers_every_rate_on_a_half_cosine_within_its_stage_only(tmp_path):
    """``optim.decay_at=aae``: the rate each optimiser's Adam used at aae step k of 4 is the set rate x
    (1 + cos(pi k / 4)) / 2 (logged after the step, read from the optimisers themselves); the joint stage after it
    runs at the set rates again, and a run without the option at the set rates throughout."""
    import json

    from fsx.train import make_config

    for name, decay in (("decay", ("aae",)), ("plain", ())):
        tr = _tiny_trainer(tmp_path / name, steps={"aae": 4, "joint": 2},
                           optim=dict(lr_aae=1e-3, lr_disc_scale=0.5, lr_phi=2e-4, decay_at=decay))
        tr.fit()
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        rows = [r for r in rows if "lr/eg" in r]
        assert [(r["stage"], r["step"]) for r in rows] == [("aae", k) for k in (1, 2, 3, 4)] + [("joint", 1), ("joint", 2)]
        for r in rows:
            factor = 0.5 * (1 + math.cos(math.pi * (r["step"] - 1) / 4)) if r["stage"] in decay else 1.0
            assert r["lr/eg"] == pytest.approx(1e-3 * factor)
            assert r["lr/d"] == pytest.approx(5e-4 * factor)
            assert r["lr/phi"] == pytest.approx(2e-4 * factor)
        if decay:
            assert rows[3]["lr/eg"] < 0.15 * 1e-3  # the stage's last step: near zero
    with pytest.raises(ValueError, match=r"optim.decay_at: unknown stage\(s\) \['refti'\]"):
        make_config("tiny", optim=dict(decay_at=["refti"]))


def test_ema_half_life_ends_a_stage_on_the_averaged_weights(tmp_path):
    """With a half-life far longer than the stage, the average barely moves from its first update (a copy of the
    weights after step 1): the stage ends on E and G as they were after one step, not after three."""
    def trained(name, steps, half_life):
        tr = _tiny_trainer(tmp_path / name, steps={"aae": steps}, optim=dict(ema_half_life=half_life))
        tr.fit()
        return tr.model

    one, three, averaged = trained("one", 1, 0), trained("three", 3, 0), trained("avg", 3, 10**9)
    for net in ("E", "G"):
        a, b, c = (getattr(m.aae, net).state_dict() for m in (one, three, averaged))
        floats = [k for k in a if a[k].is_floating_point() and "running" not in k]
        assert all(torch.allclose(c[k], a[k], atol=1e-5) for k in floats), net
        assert not all(torch.allclose(c[k], b[k], atol=1e-5) for k in floats), net


def test_encoder_share_scales_only_the_gradient_g_of_e_x_sends_into_e(tmp_path):
    """loss.encoder_share: a term on G(E(x)) gives G the same gradient and E that share of it; the joint step uses
    it, and a share outside [0, 1] is refused by name."""
    from fsx.train import make_config

    tr = _tiny_trainer(tmp_path, loss={"encoder_share": 0.5})
    m = tr.model
    enter_stage(m, STAGE_TABLE["joint"])
    _, x, _ = tr.schedule.next(tr.global_step)
    xn = x * 2 - 1
    grads = {}
    for share in (1.0, 0.25):
        for p in m.parameters():
            p.grad = None
        _, x_rec, _, _, _ = tr.steps._encode_decode(xn, share)
        L.reconstruction_l1(xn, x_rec).backward()
        grads[share] = ([p.grad.clone() for p in m.aae.E.parameters()], [p.grad.clone() for p in m.aae.G.parameters()])
    (e1, g1), (e4, g4) = grads[1.0], grads[0.25]
    assert sum(float(g.abs().sum()) for g in e1) > 0
    for a, b in zip(g1, g4):
        torch.testing.assert_close(a, b)
    for a, b in zip(e1, e4):
        torch.testing.assert_close(0.25 * a, b)
    seen, steps = [], tr.steps
    steps._encode_decode = lambda xn, share=1.0: seen.append(share) or type(steps)._encode_decode(steps, xn, share)
    _, _, labels = tr.schedule.next(tr.global_step)
    steps.joint(xn, labels, 0)
    steps.aae(xn, labels, 0)
    assert seen == [0.5, 1.0]  # the joint stage's share; the aae stage's reconstruction trains E fully
    with pytest.raises(ValueError, match="encoder_share"):
        make_config("tiny", loss={"encoder_share": 1.5})


def test_rec_ramp_raises_the_pixel_weight_linearly_over_the_joint_stage(tmp_path):
    """loss.rec_ramp: L_rec's weight is loss.rec at the joint stage's first step and rec_ramp x loss.rec at its last;
    the objective the step optimises uses it (against a direct computation of Eq. 5 at that weight)."""
    tr = _tiny_trainer(tmp_path, loss={"rec": 2.0, "rec_ramp": 3.0}, steps={"aae": 1, "joint": 5})
    m, steps = tr.model, tr.steps
    enter_stage(m, STAGE_TABLE["joint"])
    _, x, labels = tr.schedule.next(tr.global_step)
    xn = x * 2 - 1
    seen = []
    original = type(steps)._aae_generator_terms

    def spy(xn, z, x_rec, x_prior, scales=None, rec=None):
        obj, g = original(steps, xn, z, x_rec, x_prior, scales, rec)
        weight = tr.cfg.loss.rec if rec is None else rec
        torch.testing.assert_close(obj, L.aae_objective(g, tr.cfg.loss.lambda_ae, weight, tr.cfg.loss.image_gan))
        seen.append(rec)
        return obj, g

    steps._aae_generator_terms = spy
    for step in (0, 2, 4):
        steps.joint(xn, labels, step)
    assert seen == pytest.approx([2.0, 4.0, 6.0])
    steps.aae(xn, labels, 0)
    assert seen[-1] is None  # the aae stage keeps loss.rec


def test_rec_ramp_start_holds_the_pixel_weight_until_the_ramp_begins(tmp_path):
    """loss.rec_ramp_start: L_rec keeps loss.rec up to that fraction of the joint stage, then rises linearly to
    rec_ramp x loss.rec at its last step; a start of 1 or more (a ramp that never begins) is refused by name."""
    from fsx.train import make_config

    tr = _tiny_trainer(tmp_path, loss={"rec": 2.0, "rec_ramp": 3.0, "rec_ramp_start": 0.5}, steps={"aae": 1, "joint": 9})
    weights = [tr.steps._ramped_rec(step) for step in range(9)]
    assert weights == pytest.approx([2.0] * 5 + [3.0, 4.0, 5.0, 6.0])
    no_start = _tiny_trainer(tmp_path / "b", loss={"rec": 2.0, "rec_ramp": 3.0}, steps={"aae": 1, "joint": 9})
    assert [no_start.steps._ramped_rec(s) for s in (0, 4, 8)] == pytest.approx([2.0, 4.0, 6.0])
    with pytest.raises(ValueError, match="rec_ramp_start"):
        make_config("tiny", loss={"rec_ramp_start": 1.0})


def test_batch_gaussian_has_the_codes_mean_and_covariance():
    from fsx.train.steps import _batch_gaussian

    torch.manual_seed(0)
    z = torch.randn(8, 5) * torch.tensor([0.5, 1.0, 2.0, 0.3, 1.5]) + torch.arange(5.0)
    draws = torch.cat([_batch_gaussian(z) for _ in range(6000)])  # 48,000 draws
    torch.testing.assert_close(draws.mean(0), z.mean(0), atol=0.03, rtol=0)
    cov = torch.cov(z.T)
    # the biased covariance (divided by n instead of n - 1) would miss its diagonal by 12.5%
    torch.testing.assert_close(torch.cov(draws.T), cov, atol=0.04 * cov.diagonal().max().item(), rtol=0.03)


@pytest.mark.parametrize("fake_codes", ["standard", "codes"])
def test_image_gan_fakes_are_drawn_where_the_configuration_says(tmp_path, fake_codes):
    tr = _tiny_trainer(tmp_path, loss={"fake_codes": fake_codes})
    xn = _generator_side_batch(tr)
    seen = []
    hook = tr.model.aae.G.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().float()))
    try:
        z, _, _, z_prior, _ = tr.steps._encode_decode(xn)
    finally:
        hook.remove()
    fakes = seen[-1]  # G's last call draws the fakes
    if fake_codes == "standard":
        torch.testing.assert_close(fakes, z_prior)
        return
    assert not torch.allclose(fakes, z_prior)  # D_z's prior samples stay N(0, I) and are not G's input
    # each fake is the codes' mean plus a combination of the centred codes: nothing outside their span
    centred = z.detach() - z.detach().mean(0)
    basis = torch.linalg.svd(centred, full_matrices=False).Vh
    offset = fakes - z.detach().mean(0)
    residual = offset - offset @ basis.T @ basis
    assert residual.norm() < 1e-4 * offset.norm()
    assert offset.norm(dim=1).min() > 0
