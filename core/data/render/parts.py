"""The face template's parts, built with batched torch ops from the four factor groups: ellipsoids (hair, neck,
ears, head, jaw, fringe, hat) and discs on the head's surface (eyes, irises, pupils, brows, lips, mouth, teeth,
nose, wrinkle, glasses), rotated by yaw, pitch and roll and projected orthographically; each becomes a 2-D
ellipse with its bend, tilt, ring, opacity and colour (``build_parts``). ``draw.py`` draws them."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fsx.data.face_params import IDENTITY_FIELDS, STYLE_FIELDS

ID = {f: i for i, f in enumerate(IDENTITY_FIELDS)}
ST = {f: i for i, f in enumerate(STYLE_FIELDS)}

PARTS = (
    "hair_back", "neck", "ear_l", "ear_r", "head", "jaw", "eye_l", "eye_r", "iris_l", "iris_r", "pupil_l", "pupil_r",
    "brow_l", "brow_r", "lips", "mouth", "teeth", "nose", "nostrils", "wrinkle", "fringe", "glass_l", "glass_r",
    "hat_brim", "hat",
)
P = {name: i for i, name in enumerate(PARTS)}
K = len(PARTS)
HEAD_CENTRE = (0.0, -0.02)
# The template is drawn this much larger than its own frame, so that the face fills the image like an aligned
# face crop (hair, hat and neck run off the edges): at 64 px the eyes and mouth are then several pixels big.
ZOOM = 1.5

# Facial actions per category (rows: AffectNet order), columns:
# smile, mouth_open, brow_raise, brow_tilt (inner corners up), eye_open, nose_wrinkle, one_sided_smile
ACTIONS = torch.tensor([
    [0.00, 0.00, 0.00, 0.00, 0.00, 0.0, 0.0],    # neutral
    [1.00, 0.35, 0.10, 0.00, -0.35, 0.0, 0.0],   # happy: smile, squint
    [-0.80, 0.00, 0.15, 0.90, -0.15, 0.0, 0.0],  # sad: frown, inner brows up
    [0.00, 1.00, 1.00, 0.10, 0.50, 0.0, 0.0],    # surprise: open mouth, raised brows, wide eyes
    [-0.35, 0.60, 0.70, 0.60, 0.45, 0.0, 0.0],   # fear
    [-0.40, 0.10, -0.40, -0.20, -0.40, 1.0, 0.0],  # disgust: wrinkled nose
    [-0.35, 0.15, -0.60, -1.00, -0.10, 0.2, 0.0],  # anger: furrowed brows
    [0.00, 0.00, 0.00, 0.00, -0.10, 0.0, 1.0],   # contempt: one-sided smile
])


def rotation_matrix(pose_deg: torch.Tensor) -> torch.Tensor:
    """(B, 3) yaw, pitch, roll in degrees -> (B, 3, 3) = Rz(roll) Rx(pitch) Ry(yaw); x right, y down, z to camera."""
    yaw, pitch, roll = torch.deg2rad(pose_deg).unbind(1)
    o, z = torch.ones_like(yaw), torch.zeros_like(yaw)
    cy, sy, cp, sp, cr, sr = yaw.cos(), yaw.sin(), pitch.cos(), pitch.sin(), roll.cos(), roll.sin()
    ry = torch.stack([cy, z, sy, z, o, z, -sy, z, cy], 1).view(-1, 3, 3)
    rx = torch.stack([o, z, z, z, cp, -sp, z, sp, cp], 1).view(-1, 3, 3)
    rz = torch.stack([cr, -sr, z, sr, cr, z, z, z, o], 1).view(-1, 3, 3)
    return rz @ rx @ ry


def actions(expression: torch.Tensor) -> torch.Tensor:
    """(B, 3) valence, arousal, category -> (B, 7) facial action strengths, continuous inside a category."""
    v, a, cat = expression[:, 0], expression[:, 1], expression[:, 2].round().long().clamp(0, 7)
    intensity = (torch.sqrt(v * v + a * a) / 0.9).clamp(0.3, 1.2)
    act = ACTIONS[cat] * intensity[:, None]
    act[:, 0] += 0.25 * v  # valence bends the mouth a little in every category
    act[:, 1] += 0.15 * a.clamp(min=0)  # arousal opens it
    act[:, 4] += 0.10 * a
    return act


def _ellipsoids(centre: torch.Tensor, radii: torch.Tensor, rot: torch.Tensor):
    """Orthographic outline of axis-aligned ellipsoids (head frame) under rotation ``rot``.

    centre, radii: (B, n, 3); rot: (B, 3, 3). Returns 2-D centres (B, n, 2) and M (B, n, 2, 2) with
    q = |M d|^2 < 1 inside the outline (M = Cholesky factor of the projected quadratic form)."""
    c2 = torch.einsum("bij,bnj->bni", rot, centre)[..., :2]
    A = torch.einsum("bij,bnj,bkj->bnik", rot, radii.pow(-2), rot)  # R diag(r^-2) R^T, (B, n, 3, 3)
    q = A[..., :2, :2] - A[..., :2, 2:] @ A[..., 2:, :2] / A[..., 2:, 2:]
    l00 = q[..., 0, 0].clamp(min=1e-6).sqrt()
    l10 = q[..., 1, 0] / l00
    l11 = (q[..., 1, 1] - l10 * l10).clamp(min=1e-6).sqrt()
    zero = torch.zeros_like(l00)
    m = torch.stack([l00, l10, zero, l11], -1).view(*l00.shape, 2, 2)
    return c2, m


def _discs(point: torch.Tensor, normal: torch.Tensor, half: torch.Tensor, rot: torch.Tensor):
    """Ellipses lying on the surface at ``point`` with outward ``normal`` and half-axes ``half`` (B, n, 2).

    Returns centres (B, n, 2), M (B, n, 2, 2) mapping image offsets to the disc's (u, v), and the facing
    factor n_z in [0, 1] of the rotated normal (0 = seen edge-on or from behind)."""
    n = F.normalize(normal, dim=-1)
    t1 = F.normalize(torch.stack([n[..., 2], torch.zeros_like(n[..., 0]), -n[..., 0]], -1), dim=-1)  # horizontal
    t2 = torch.cross(n, t1, dim=-1)  # points down
    rp = torch.einsum("bij,bnj->bni", rot, point)
    ra = torch.einsum("bij,bnj->bni", rot, t1)[..., :2] * half[..., :1]
    rb = torch.einsum("bij,bnj->bni", rot, t2)[..., :2] * half[..., 1:]
    basis = torch.stack([ra, rb], -1)  # columns: projected half-axes, (B, n, 2, 2)
    det = basis[..., 0, 0] * basis[..., 1, 1] - basis[..., 0, 1] * basis[..., 1, 0]
    det = torch.where(det.abs() < 1e-5, torch.full_like(det, 1e-5), det)
    m = torch.stack([basis[..., 1, 1], -basis[..., 0, 1], -basis[..., 1, 0], basis[..., 0, 0]], -1)
    m = m.view(*det.shape, 2, 2) / det[..., None, None]
    facing = torch.einsum("bij,bnj->bni", rot, n)[..., 2].clamp(min=0)
    return rp[..., :2], m, facing


def _surface(x: torch.Tensor, y: torch.Tensor, r: torch.Tensor, lift: float | torch.Tensor = 0.0):
    """Point and normal on the head ellipsoid (radii r: (B, 3)) at template (x, y) (B, n); ``lift`` moves the
    point out along z (the nose stands out of the face)."""
    rx, ry, rz = r[:, None, 0], r[:, None, 1], r[:, None, 2]
    zz = rz * (1 - (x / rx) ** 2 - (y / ry) ** 2).clamp(min=0.02).sqrt()
    point = torch.stack([x, y, zz + lift], -1)
    normal = torch.stack([x / rx**2, y / ry**2, zz / rz**2], -1)
    return point, normal


def build_parts(pose, identity, expression, style):
    """All parts of all faces: centres (B, K, 2), M (B, K, 2, 2), bend/tilt/inner (B, K), alpha scale (B, K)
    and colours (B, K, 3)."""
    rot = rotation_matrix(pose)
    act = actions(expression)
    ec, em = _head_ellipsoids(identity, rot)
    dc, dm, facing = _face_discs(identity, act, rot)
    centre = torch.cat([ec[:, :6], dc[:, :14], ec[:, 6:7], dc[:, 14:16], ec[:, 7:9]], 1)
    mat = torch.cat([em[:, :6], dm[:, :14], em[:, 6:7], dm[:, 14:16], em[:, 7:9]], 1)
    centre = (centre + torch.tensor(HEAD_CENTRE)) * ZOOM
    mat = mat / ZOOM  # (u, v) per image offset
    bend, tilt, inner = _part_shapes(act)
    return centre, mat, bend, tilt, inner, _part_alphas(identity, style, act, facing), _part_colours(identity, style)


def _head_ellipsoids(identity, rot):
    """Hair (back), neck, ears, head, jaw, fringe, hat brim, hat crown: centres and image matrices."""
    I = lambda f: identity[:, ID[f]]  # noqa: E731
    fw, fh = I("face_w"), I("face_h")
    head_r = torch.stack([fw, fh, fw * 0.95], 1)
    vol, length, fringe = I("hair_volume"), I("hair_len"), I("fringe")
    z = torch.zeros_like(fw)
    ear_y = fh * (I("eye_y") + 0.12)
    e_centre = torch.stack([
        torch.stack([z, -0.10 * fh + 0.25 * fh * length, -0.25 * fw], 1),
        torch.stack([z, 0.95 * fh, -0.35 * fw], 1),
        torch.stack([-0.97 * fw, ear_y, -0.10 * fw], 1),
        torch.stack([0.97 * fw, ear_y, -0.10 * fw], 1),
        torch.stack([z, z, z], 1),
        torch.stack([z, 0.38 * fh, 0.05 * fw], 1),
        torch.stack([z, -0.78 * fh, 0.22 * fw], 1),
        torch.stack([z, -0.62 * fh, z], 1),
        torch.stack([z, -0.80 * fh, z], 1),
    ], 1)
    e_radii = torch.stack([
        torch.stack([fw * (1.12 + 0.25 * vol), fh * (1.05 + 0.1 * vol + 0.35 * length), fw * (1.0 + 0.2 * vol)], 1),
        torch.stack([fw * 0.50, fh * 0.70, fw * 0.45], 1),
        torch.stack([fw * 0.16, fh * 0.22, fw * 0.10], 1),
        torch.stack([fw * 0.16, fh * 0.22, fw * 0.10], 1),
        head_r,
        torch.stack([fw * (0.93 - 0.30 * I("jaw")), fh * 0.66, fw * 0.80], 1),
        torch.stack([fw * 1.04, fh * (0.12 + 0.30 * fringe), fw * 0.80], 1),
        torch.stack([fw * 1.55, fh * 0.07, fw * 1.50], 1),
        torch.stack([fw * 1.12, fh * 0.50, fw * 1.10], 1),
    ], 1)
    return _ellipsoids(e_centre, e_radii, rot)


def _face_discs(identity, act, rot):
    """Eyes, irises, pupils, brows, lips, mouth, teeth, nose and glasses on the head's surface."""
    I = lambda f: identity[:, ID[f]]  # noqa: E731
    smile, mouth_open, brow_raise, brow_tilt, eye_open, wrinkle, one_sided = act.unbind(1)
    fw, fh = I("face_w"), I("face_h")
    head_r = torch.stack([fw, fh, fw * 0.95], 1)
    z = torch.zeros_like(fw)
    ex = fw * I("eye_sep")
    ey = fh * I("eye_y")
    es = I("eye_size")
    opening = (0.6 * (1 + 1.2 * eye_open)).clamp(0.15, 1.0)
    by = ey - es * (1.3 + 0.8 * brow_raise)
    my = fh * 0.52
    ny = (ey + my) / 2
    xs = torch.stack([-ex, ex, -ex, ex, -ex, ex, -ex * 1.05, ex * 1.05, z, z, z, z, z, z, -ex, ex], 1)
    ys = torch.stack([ey, ey, ey, ey, ey, ey, by, by, my, my, my, ny, ny + 0.35 * I("nose_len"),
                      ny - 0.28 * I("nose_len"), ey, ey], 1)
    lift = torch.zeros_like(xs)
    lift[:, 11] = 0.5 * I("nose_len")  # nose ridge
    lift[:, 12] = 0.9 * I("nose_len")  # nose tip
    lift[:, 13] = 0.25 * I("nose_len")
    lift[:, 14:16] = 0.10 * fw[:, None]  # glasses sit in front of the eyes
    lift[:, 0:6] = 0.01
    point, normal = _surface(xs, ys, head_r, lift)
    mw, lip = I("mouth_w"), I("lip")
    mouth_h = lip * 0.2 + mouth_open * 0.10
    half = torch.stack([
        torch.stack([es, es * opening], 1), torch.stack([es, es * opening], 1),
        torch.stack([es * 0.52, es * 0.52], 1), torch.stack([es * 0.52, es * 0.52], 1),
        torch.stack([es * 0.22, es * 0.22], 1), torch.stack([es * 0.22, es * 0.22], 1),
        torch.stack([es * 1.25, I("brow")], 1), torch.stack([es * 1.25, I("brow")], 1),
        torch.stack([mw, lip + mouth_h * 0.9], 1),
        torch.stack([mw * (0.8 + 0.1 * mouth_open), mouth_h + 0.004], 1),
        torch.stack([mw * 0.6, (mouth_h * 0.45).clamp(min=0.002)], 1),
        torch.stack([I("nose_w") * 0.55, I("nose_len") * 0.55], 1),
        torch.stack([I("nose_w"), I("nose_w") * 0.45], 1),
        torch.stack([I("nose_w") * 1.3, 0.018 + z], 1),
        torch.stack([es * 1.75, es * 1.45], 1), torch.stack([es * 1.75, es * 1.45], 1),
    ], 1)
    return _discs(point, normal, half, rot)


def _part_shapes(act):
    """Each part's bend, tilt and inner radius (brows arch, the mouth smiles, glasses are rings)."""
    smile, mouth_open, brow_raise, brow_tilt, eye_open, wrinkle, one_sided = act.unbind(1)
    B = act.shape[0]
    bend = torch.zeros(B, K)
    tilt = torch.zeros(B, K)
    inner = torch.full((B, K), -1.0)
    arch = 0.35 + 0.3 * brow_raise
    bend[:, P["brow_l"]] = arch
    bend[:, P["brow_r"]] = arch
    tilt[:, P["brow_l"]] = -1.0 * brow_tilt  # inner corner (u > 0 on the left brow) goes up when positive
    tilt[:, P["brow_r"]] = 1.0 * brow_tilt
    for part in ("lips", "mouth", "teeth"):
        bend[:, P[part]] = 1.5 * smile
        tilt[:, P[part]] = -0.9 * one_sided
    inner[:, P["glass_l"]] = 0.72
    inner[:, P["glass_r"]] = 0.72

    return bend, tilt, inner


def _part_alphas(identity, style, act, facing):
    """How opaque each part is: parts turned away fade, the mouth opens, glasses and hats come and go."""
    smile, mouth_open, brow_raise, brow_tilt, eye_open, wrinkle, one_sided = act.unbind(1)
    S = lambda f: style[:, ST[f]]  # noqa: E731
    B, fringe = act.shape[0], identity[:, ID["fringe"]]
    alpha = torch.ones(B, K)
    fade = ((facing - 0.08) / 0.25).clamp(0, 1)
    alpha[:, 6:20] = fade[:, :14]
    alpha[:, P["glass_l"]] = S("glasses") * fade[:, 14]
    alpha[:, P["glass_r"]] = S("glasses") * fade[:, 15]
    alpha[:, P["mouth"]] *= (mouth_open * 6).clamp(0, 1) * 0.9 + 0.1
    alpha[:, P["teeth"]] *= (mouth_open * 4 - 0.4).clamp(0, 1)
    alpha[:, P["wrinkle"]] *= wrinkle.clamp(0, 1) * 0.8
    alpha[:, P["hat"]] = S("hat")
    alpha[:, P["hat_brim"]] = S("hat")
    alpha[:, P["fringe"]] = (fringe * 3).clamp(0, 1)

    return alpha


def _part_colours(identity, style):
    B = identity.shape[0]
    skin = identity[:, [ID["skin_r"], ID["skin_g"], ID["skin_b"]]]
    hair = identity[:, [ID["hair_r"], ID["hair_g"], ID["hair_b"]]]
    iris = identity[:, [ID["iris_r"], ID["iris_g"], ID["iris_b"]]]
    lips = skin * 0.55 + torch.tensor([0.75, 0.22, 0.25]) * 0.45
    hat = style[:, [ST["hat_r"], ST["hat_g"], ST["hat_b"]]]
    glasses = style[:, [ST["glasses_r"], ST["glasses_g"], ST["glasses_b"]]]
    white = torch.full_like(skin, 0.95)
    return torch.stack([
        hair, skin * 0.92, skin * 0.9, skin * 0.9, skin, skin,
        white, white, iris, iris, torch.full_like(skin, 0.05), torch.full_like(skin, 0.05),
        hair * 0.6, hair * 0.6, lips, torch.tensor([0.25, 0.05, 0.07]).expand(B, 3), white,
        skin * 0.93, skin * 0.6, skin * 0.7, hair, glasses, glasses, hat * 0.85, hat,
    ], 1)
