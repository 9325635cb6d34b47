"""Each built-in loss against numbers worked out by hand in the test."""

import math

import pytest
import torch

from fsx.attributes import ClipTriplet, ExpressionTriplet, IdentityTriplet, PoseL1, expression_distance


def labels(**kw):
    return {k: torch.as_tensor(v) for k, v in kw.items()}


def test_pose_l1_in_radians_from_degree_labels():
    f = torch.tensor([[0.1, 0.2, 0.3]])
    loss = PoseL1()(f, labels(pose=[[10.0, 0.0, -10.0]]))
    r = math.radians(10)
    assert loss.item() == pytest.approx(abs(0.1 - r) + 0.2 + abs(0.3 + r), rel=1e-6)


def test_pose_l1_averages_over_the_batch():
    f = torch.zeros(2, 3)
    loss = PoseL1(scale=1.0)(f, labels(pose=[[1.0, 2.0, 3.0], [0.0, 0.0, -1.0]]))
    assert loss.item() == pytest.approx((6.0 + 1.0) / 2)


def test_identity_triplet_hand_computed():
    # persons 0,0,1,1. Anchor 0: d+ = |(-1,0)-(1,0)|^2 = 4, d- = |(-1,0)-(0,2)|^2 = 5 -> max(0, 4-5+2) = 1.
    # Anchor 1 likewise 1. Anchors 2, 3: d+ = 0, d- = 5 -> 0. Mean over 4 valid anchors = 0.5.
    f = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    loss = IdentityTriplet(margin=2.0, normalize=False)(f, labels(person=[0, 0, 1, 1]))
    assert loss.item() == pytest.approx(0.5)


def test_identity_triplet_skips_samples_without_positive_and_never_nans():
    f = torch.randn(3, 4, requires_grad=True)
    loss = IdentityTriplet()(f, labels(person=[0, 1, 2]))  # nobody has a positive
    assert loss.item() == 0.0 and torch.isfinite(loss)
    loss.backward()  # still connected to the graph
    assert f.grad is not None and torch.all(f.grad == 0)
    # persons 0,0,1: sample 2 has no positive and is left out; anchors 0 and 1 count.
    g = torch.tensor([[0.0], [3.0], [1.0]])
    loss = IdentityTriplet(margin=0.0, normalize=False)(g, labels(person=[0, 0, 1]))
    # anchor 0: d+ 9, d- 1 -> 8; anchor 1: d+ 9, d- 4 -> 5; mean 6.5
    assert loss.item() == pytest.approx(6.5)


def test_semihard_mining_picks_the_negative_inside_the_margin():
    from fsx.attributes.triplet import pick_negative

    # 1-d features; persons 0, 0, 1, 2, 3; margin 1. Anchor 0 (f=0): positive 1 at d+ = 1; negatives at
    # d = 1.44 (semi-hard: in (1, 2)), 25 (easy) and 0.25 (harder than the positive). Anchor 1 (f=1): positive 0
    # at d+ = 1; negatives at 0.04, 16, 0.25: none semi-hard, so it keeps a random negative.
    f = torch.tensor([[0.0], [1.0], [1.2], [5.0], [0.5]])
    person = torch.tensor([0, 0, 1, 2, 3])
    other = person[:, None] != person[None, :]
    positive = torch.tensor([1, 0, 2, 3, 4])
    for seed in range(5):
        neg, valid = pick_negative(f, positive, other, "semihard", 1.0, False, torch.Generator().manual_seed(seed))
        assert neg[0].item() == 2 and neg[1].item() in (2, 3, 4) and bool(valid.all())
    loss = IdentityTriplet(margin=1.0, normalize=False, mining="semihard")
    assert loss(f[:2].clone(), labels(person=[0, 0])).item() == 0.0  # no negatives at all: a connected zero
    with pytest.raises(ValueError):
        IdentityTriplet(mining="hardest")


def test_contrastive_loss_hand_computed_and_ordered():
    import math

    from fsx.attributes.contrastive import contrastive_loss

    # Unit features at 0, 90 and 180 degrees; sample 0's only positive is sample 1 (cos 0), its other neighbour
    # sample 2 (cos -1). With temperature 1: -log(e^0 / (e^0 + e^-1)). Rows 1 and 2 have no target weight.
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    target = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert contrastive_loss(f, target, temperature=1.0).item() == pytest.approx(-math.log(1 / (1 + math.exp(-1))))
    # Persons 0, 0, 1, 1: an embedding that separates them scores lower than one that mixes them.
    same = torch.tensor([0, 0, 1, 1])
    same = (same[:, None] == same[None, :]).float()
    good = torch.tensor([[1.0, 0.1], [1.0, -0.1], [-1.0, 0.1], [-1.0, -0.1]])
    bad = good[[0, 2, 1, 3]]
    assert contrastive_loss(good, same) < contrastive_loss(bad, same)
    z = torch.randn(4, 3, requires_grad=True)  # no positives anywhere: a connected zero
    loss = contrastive_loss(z, torch.zeros(4, 4))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(z.grad, torch.zeros(4, 3))


def test_centered_contrastive_loss_ignores_a_component_common_to_the_batch():
    from fsx.attributes.contrastive import contrastive_loss

    same = torch.tensor([0, 0, 1, 1])
    same = (same[:, None] == same[None, :]).float()
    good = torch.tensor([[1.0, 0.1, 0.0], [1.0, -0.1, 0.0], [-1.0, 0.1, 0.0], [-1.0, -0.1, 0.0]])
    common = good + torch.tensor([0.0, 0.0, 50.0])  # every sample shares a large third component
    # Uncentred, the common component makes all pairs alike: the loss rises to near its uniform value log(3).
    assert contrastive_loss(common, same).item() > 0.95 * math.log(3) > contrastive_loss(good, same).item()
    # Centred, it is gone: the same loss as without it; on a mixed-up embedding under the same common component
    # the gradient is as large as without the component, not nearly zero as uncentred.
    torch.testing.assert_close(contrastive_loss(common, same, center=True), contrastive_loss(good, same, center=True))
    mixed = good[[0, 2, 1, 3]]
    grads = []
    for x, center in ((mixed, True), (mixed + torch.tensor([0.0, 0.0, 50.0]), True),
                      (mixed + torch.tensor([0.0, 0.0, 50.0]), False)):
        f = x.clone().requires_grad_()
        contrastive_loss(f, same, center=center).backward()
        grads.append(float(f.grad.norm()))
    assert grads[1] == pytest.approx(grads[0], rel=1e-4) and grads[2] < 0.05 * grads[1]
    from fsx.attributes import expression

    assert expression(objective="contrastive").configure(center=True).loss.center  # the --option expression.center


def test_expression_va_regression_adds_an_l1_term_with_gradient_at_collapse():
    """va_weight adds va_weight * L1 of the first two dimensions against (valence, arousal); on collapsed features
    (all equal), where the ranking objectives give E nothing, the regression still has a gradient."""
    from fsx.attributes import expression

    labels = {"valence": torch.tensor([0.5, -0.5, 0.1, 0.9]), "arousal": torch.tensor([0.2, 0.3, -0.6, 0.0]),
              "category": torch.tensor([1, 2, 0, 1]), "person": torch.tensor([0, 1, 2, 3])}
    va = torch.stack([labels["valence"], labels["arousal"]], 1)
    for objective in ("contrastive", "triplet"):
        plain = expression(objective=objective).loss
        with_va = expression(objective=objective).configure(va_weight=2.0).loss
        f = torch.randn(4, 32, generator=torch.Generator().manual_seed(0))
        g = torch.Generator().manual_seed(1)
        base = plain(f, labels, torch.Generator().manual_seed(1))
        expected = base + 2.0 * (f[:, :2] - va).abs().sum(1).mean()
        parts = with_va(f, labels, g)
        assert set(parts) == {objective, "va"}  # the parts training logs as task_expression.<part>
        torch.testing.assert_close(parts[objective], base)
        torch.testing.assert_close(sum(parts.values()), expected)
        collapsed = torch.ones(4, 32, requires_grad=True)
        sum(with_va(collapsed, labels, torch.Generator().manual_seed(1)).values()).backward()
        assert collapsed.grad[:, :2].abs().sum() > 0
    with pytest.raises(ValueError, match="va_weight"):
        expression().configure(va_weight=-1.0)


def test_expression_prototype_term_pulls_collapsed_features_towards_their_category():
    """prototype_weight adds prototype_weight * CE(category, softmax(cos(f, p_c) / temperature)) over fixed orthonormal
    prototypes; on collapsed features, where the contrastive gradient vanishes, it still pulls each face towards its
    own category's prototype, and one step along it lowers the term."""
    from fsx.attributes import expression
    from fsx.attributes.expression import category_prototypes

    protos = category_prototypes(8, 32)
    torch.testing.assert_close(protos @ protos.T, torch.eye(8))
    torch.testing.assert_close(category_prototypes(8, 32), protos)  # fixed: the same prototypes on every call
    with pytest.raises(ValueError, match="at least 8"):
        category_prototypes(8, 4)
    n = 12
    gen = torch.Generator().manual_seed(3)
    labels = {"valence": torch.rand(n, generator=gen) * 2 - 1, "arousal": torch.rand(n, generator=gen) * 2 - 1,
              "category": torch.arange(n) % 8, "person": torch.arange(n)}
    plain = expression(objective="contrastive").loss
    with_protos = expression(objective="contrastive").configure(prototype_weight=0.5).loss
    f = torch.randn(n, 32, generator=gen)
    # an implementation of the term independent of the loss's: the cosine by hand, the CE by log-softmax
    cos = (f / f.norm(dim=1, keepdim=True)) @ protos.T
    ce = -(cos / 0.1).log_softmax(dim=1)[torch.arange(n), labels["category"]].mean()
    parts = with_protos(f, labels)
    assert set(parts) == {"contrastive", "prototype"}
    torch.testing.assert_close(parts["contrastive"], plain(f, labels))
    torch.testing.assert_close(parts["prototype"], 0.5 * ce)
    grads = []
    for loss in (plain, lambda x, y: sum(with_protos(x, y).values())):
        collapsed = torch.ones(n, 32, requires_grad=True)
        loss(collapsed, labels).backward()
        grads.append(collapsed.grad)
    assert float(grads[0].norm()) < 1e-6 < 0.01 < float(grads[1].norm())
    # the pull differs by category: faces of different categories are sent different ways
    assert float((grads[1][0] - grads[1][1]).norm()) > 0.01
    stepped = torch.ones(n, 32) - 1.0 * grads[1]
    assert float(with_protos(stepped, labels)["prototype"]) < float(with_protos(torch.ones(n, 32), labels)["prototype"])
    with pytest.raises(ValueError, match="prototype_weight"):
        expression().configure(prototype_weight=-1.0)


def test_expression_prototype_steps_keep_the_term_to_the_joint_stages_first_steps():
    """prototype_steps=N: the loss at joint steps 0..N-1 has the prototype term, at later joint steps and in every
    other stage it is the ranking loss alone; 0 keeps the term everywhere."""
    from fsx.attributes import expression

    n = 10
    gen = torch.Generator().manual_seed(4)
    labels = {"valence": torch.rand(n, generator=gen) * 2 - 1, "arousal": torch.rand(n, generator=gen) * 2 - 1,
              "category": torch.arange(n) % 8, "person": torch.arange(n)}
    f = torch.randn(n, 32, generator=gen)
    attribute = expression(objective="contrastive").configure(prototype_weight=0.5, prototype_steps=3)
    plain = expression(objective="contrastive").loss(f, labels)
    assert set(attribute.at("joint", 2).loss(f, labels)) == {"contrastive", "prototype"}
    for stage, step in (("joint", 3), ("joint", 100), ("refit", 0), ("disentangle", 0), ("decoder", 1)):
        torch.testing.assert_close(attribute.at(stage, step).loss(f, labels), plain)
    assert attribute.at("joint", 0).loss is attribute.loss  # unchanged where the term is on: no copy
    lasting = expression(objective="contrastive").configure(prototype_weight=0.5)
    assert lasting.at("refit", 500) is lasting
    for bad in (-1, 2.5):
        with pytest.raises((ValueError, TypeError), match="prototype_steps"):
            expression().configure(prototype_steps=bad)


def test_contrastive_objectives_of_identity_and_expression_prefer_the_right_embedding():
    from fsx.attributes import expression, identity

    person = [0, 0, 1, 1, 2, 2]
    f_id = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 1.0, 0], [0.1, 0.9, 0], [0, 0, 1.0], [0, 0.1, 0.9]])
    loss_id = identity(objective="contrastive").loss
    assert loss_id(f_id, labels(person=person)) < loss_id(f_id[[0, 2, 4, 1, 3, 5]], labels(person=person))
    # Expression: two happy faces (v, a) = (0.8, 0.3), (0.7, 0.35) and two sad ones; features that follow the
    # labels beat features that swap a happy and a sad face.
    va = {"valence": torch.tensor([0.8, 0.7, -0.6, -0.7]), "arousal": torch.tensor([0.3, 0.35, -0.3, -0.2]),
          "category": torch.tensor([1, 1, 2, 2])}
    f_ex = torch.tensor([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.0], [-0.9, 0.1]])
    loss_ex = expression(objective="contrastive").loss
    assert loss_ex(f_ex, va) < loss_ex(f_ex[[0, 2, 1, 3]], va)
    with pytest.raises(ValueError):
        expression(objective="ranking")


def test_style_contrastive_pulls_frames_of_a_clip_together_and_apart_from_the_persons_other_clips():
    from fsx.attributes import style

    # One person, two clips of two frames each, and a second person's clip.
    lab = labels(person=[0, 0, 0, 0, 1, 1]) | {"clip": torch.tensor([0, 0, 1, 1, 0, 0])}
    by_clip = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 1.0, 0], [0.1, 0.9, 0], [0, 0, 1.0], [0, 0.1, 0.9]])
    by_person = by_clip[[0, 2, 1, 3, 4, 5]]  # each clip's frames swapped with the other clip's
    loss = style(objective="contrastive").loss
    assert loss(by_clip, lab) < loss(by_person, lab)
    # clip ids are per person: person 1's clip 0 is not person 0's clip 0
    torch.testing.assert_close(loss(by_clip, lab), loss(by_clip, lab | {"clip": torch.tensor([0, 0, 1, 1, 7, 7])}))
    with pytest.raises(ValueError):
        style(objective="ranking")


def test_expression_losses_ignore_pairs_of_the_same_person():
    """In video data a person's frames share their expression; such pairs must not be positives (or negatives),
    or the expression sub-vector learns identity."""
    import math

    from fsx.attributes.contrastive import contrastive_loss

    # Persons 0, 0, 0, 1; valence 0, 0.5, 1, 0.1. Samples 0-2 have one candidate each (sample 3): no triplet.
    # Anchor 3: positive sample 0 (closest valence), negative from ranks [1, 3) = samples 1, 2; features
    # 0, 2, 2, 1 -> d+ = 1, d- = 1 -> loss margin 1.
    lab = {"valence": torch.tensor([0.0, 0.5, 1.0, 0.1]), "arousal": torch.zeros(4),
           "category": torch.zeros(4, dtype=torch.long), "person": torch.tensor([0, 0, 0, 1])}
    f = torch.tensor([[0.0], [2.0], [2.0], [1.0]])
    triplet = ExpressionTriplet(margin=1.0, normalize=False)
    unmasked = ExpressionTriplet(margin=1.0, normalize=False, ignore_same=None)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731  (the same negatives drawn each time)
    assert triplet(f, lab, gen()).item() == pytest.approx(1.0)
    assert unmasked(f, lab, gen()).item() != pytest.approx(1.0)
    no_person = {k: v for k, v in lab.items() if k != "person"}  # without the label nothing is excluded
    assert triplet(f, no_person, gen()).item() == unmasked(f, lab, gen()).item()
    # The contrastive objective leaves same-person pairs out of targets and softmax alike.
    g = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    same = lab["person"][:, None] == lab["person"][None, :]
    dist = expression_distance(torch.stack([lab["valence"], lab["arousal"]], 1), lab["category"], 0.25)
    expected = contrastive_loss(g, torch.exp(-dist / 0.1), 0.1, exclude=same)
    got = ExpressionTriplet(objective="contrastive")(g, lab)
    assert got.item() == pytest.approx(expected.item()) and math.isfinite(got.item())
    assert got.item() != pytest.approx(ExpressionTriplet(objective="contrastive", ignore_same=None)(g, lab).item())


def test_expression_distance_eq13():
    va = torch.tensor([[0.0, 0.0], [0.3, 0.4], [0.0, 0.0]])
    cat = torch.tensor([1, 1, 2])
    d = expression_distance(va, cat, lambda_l=0.25)
    assert d[0, 1].item() == pytest.approx(0.25)  # 0.3^2 + 0.4^2, same category
    assert d[0, 2].item() == pytest.approx(0.25)  # same (v, a), different category: + lambda_l
    assert d[1, 2].item() == pytest.approx(0.25 + 0.25)


def test_expression_triplet_closest_positive_and_far_negative():
    # Valence 0, 0.1, 0.5, 1.1 (arousal 0, one category); features 0, 1, 0.5, 0.2 (1-d).
    # negative_rank=2 leaves ranks [2, 3): the farthest sample is the negative.
    # a0: pos 1 (d+ 1), neg 3 (d- .04) -> 1.06;  a1: pos 0 (1), neg 3 (.64) -> .46
    # a2: pos 1 (.25), neg 3 (.09) -> .26;      a3: pos 2 (.09), neg 0 (.04) -> .15   mean .4825
    lab = labels(valence=[0.0, 0.1, 0.5, 1.1], arousal=[0.0] * 4, category=[0] * 4)
    f = torch.tensor([[0.0], [1.0], [0.5], [0.2]])
    loss = ExpressionTriplet(margin=0.1, normalize=False, negative_rank=2)(f, lab)
    assert loss.item() == pytest.approx(0.4825, abs=1e-6)


def test_expression_triplet_all_equal_labels_contributes_nothing():
    lab = labels(valence=[0.2] * 5, arousal=[0.1] * 5, category=[3] * 5)
    loss = ExpressionTriplet()(torch.randn(5, 8), lab)
    assert loss.item() == 0.0


def test_style_triplet_negative_is_other_clip_of_same_person():
    # person 0 has clips 0 (s0, s1) and 1 (s2, s3); person 1 has one clip (s4): no negative, left out.
    # Anchors 0-3: d+ = 0, d- = 1 -> max(0, 0 - 1 + 2) = 1. Mean 1. If s4 (person 1, far away) were ever
    # used as a negative the loss would drop below 1.
    f = torch.tensor([[0.0], [0.0], [1.0], [1.0], [100.0]])
    lab = labels(person=[0, 0, 0, 0, 1], clip=[0, 0, 1, 1, 2])
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        loss = ClipTriplet(margin=2.0, normalize=False)(f, lab, g)
        assert loss.item() == pytest.approx(1.0)


def test_attribute_configure_changes_margin_and_weight():
    from fsx.attributes import identity

    a = identity().configure(margin=0.7, weight=2.0)
    assert a.loss.margin == 0.7 and a.weight == 2.0
    with pytest.raises(ValueError, match="unknown option"):
        identity().configure(marginn=1)
