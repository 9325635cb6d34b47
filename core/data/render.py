"""A batched, vectorised face renderer (torch, CPU-fast, deterministic).

A face is a 3-D template: ellipsoids (hair, neck, ears, head, jaw, fringe, hat) and discs lying on the head's
surface (eyes, irises, pupils, brows, lips, mouth, teeth, nose, wrinkle, glasses). The template is rotated by
yaw, pitch and roll and projected orthographically; every part becomes a 2-D ellipse (u, v coordinates per
pixel), optionally bent into an arc (smile, frown, arched or tilted brows) or hollowed into a ring (glasses).
All parts of all faces are evaluated at once as one (B, K, H, W) tensor and composited back to front with a
reverse cumulative product; discs facing away from the camera fade out and are clipped to the head, so the
far eye hides behind the cheek and nose as the head turns. A light shades the head like a sphere; style
adds background texture, colour temperature, glasses, hat, noise and blur.
"""

from __future__ import annotations

import math

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
    B = pose.shape[0]
    I = lambda f: identity[:, ID[f]]  # noqa: E731
    S = lambda f: style[:, ST[f]]  # noqa: E731
    rot = rotation_matrix(pose)
    act = actions(expression)
    smile, mouth_open, brow_raise, brow_tilt, eye_open, wrinkle, one_sided = act.unbind(1)

    fw, fh = I("face_w"), I("face_h")
    head_r = torch.stack([fw, fh, fw * 0.95], 1)
    skin = identity[:, [ID["skin_r"], ID["skin_g"], ID["skin_b"]]]
    hair = identity[:, [ID["hair_r"], ID["hair_g"], ID["hair_b"]]]
    iris = identity[:, [ID["iris_r"], ID["iris_g"], ID["iris_b"]]]
    vol, length, fringe = I("hair_volume"), I("hair_len"), I("fringe")
    z = torch.zeros_like(fw)

    # --- ellipsoids: hair (back), neck, ears, head, jaw, fringe, hat brim, hat crown ------------------
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
    ec, em = _ellipsoids(e_centre, e_radii, rot)

    # --- discs on the face -------------------------------------------------------------------------
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
    dc, dm, facing = _discs(point, normal, half, rot)

    centre = torch.cat([ec[:, :6], dc[:, :14], ec[:, 6:7], dc[:, 14:16], ec[:, 7:9]], 1)
    mat = torch.cat([em[:, :6], dm[:, :14], em[:, 6:7], dm[:, 14:16], em[:, 7:9]], 1)
    centre = centre + torch.tensor(HEAD_CENTRE)

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

    lips = skin * 0.55 + torch.tensor([0.75, 0.22, 0.25]) * 0.45
    hat = style[:, [ST["hat_r"], ST["hat_g"], ST["hat_b"]]]
    glasses = style[:, [ST["glasses_r"], ST["glasses_g"], ST["glasses_b"]]]
    white = torch.full_like(skin, 0.95)
    colours = torch.stack([
        hair, skin * 0.92, skin * 0.9, skin * 0.9, skin, skin,
        white, white, iris, iris, torch.full_like(skin, 0.05), torch.full_like(skin, 0.05),
        hair * 0.6, hair * 0.6, lips, torch.tensor([0.25, 0.05, 0.07]).expand(B, 3), white,
        skin * 0.93, skin * 0.6, skin * 0.7, hair, glasses, glasses, hat * 0.85, hat,
    ], 1)
    return centre, mat, bend, tilt, inner, alpha, colours


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    return t[None, :].expand(size, size), t[:, None].expand(size, size)  # X (right), Y (down)


def _hash_noise(seed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Deterministic per-sample noise in [-0.5, 0.5) from a seed (B,), independent of the batch it is in."""
    idx = torch.arange(math.prod(shape), dtype=torch.float32).view(shape)
    x = torch.sin(idx[None] * 12.9898 + seed.view(-1, *[1] * len(shape)) * 78.233) * 43758.5453
    return x - x.floor() - 0.5


def render(params: dict, size: int = 64, chunk: int = 128, return_coverage: bool = False, windows: bool = True):
    """Render faces from parameter groups {"pose", "identity", "expression", "style"} (each (B, n)).

    Returns float images (B, 3, size, size) in [0, 1] (and the foreground coverage (B, size, size) when
    ``return_coverage``). Pure function of the parameters: same parameters, same pixels. Each part is evaluated
    only inside a window that contains all of it (``windows=False`` evaluates every part on the whole image:
    the same pixels, slower; the tests compare the two)."""
    if size not in (32, 64, 128, 256):
        raise ValueError(f"SynthFaces renders 32, 64, 128 or 256 px, not {size}")
    B = params["pose"].shape[0]
    outs, covs = [], []
    params = {k: v.float() for k, v in params.items()}
    parts = build_parts(params["pose"], params["identity"], params["expression"], params["style"])
    for s in range(0, B, chunk):
        img, cov = _render_chunk([t[s : s + chunk] for t in parts], params["style"][s : s + chunk], size, windows)
        outs.append(img)
        covs.append(cov)
    images = torch.cat(outs) if outs else torch.zeros(0, 3, size, size)
    if return_coverage:
        return images, torch.cat(covs) if covs else torch.zeros(0, size, size)
    return images


# Parts whose alpha is clipped by other parts' alphas: irises and pupils by their eye, teeth by the mouth,
# and every face part by the head outline (head or jaw), so that parts turned away hide behind the cheek.
CLIP_PARENTS = {P["iris_l"]: [P["eye_l"]], P["iris_r"]: [P["eye_r"]], P["pupil_l"]: [P["eye_l"]],
                P["pupil_r"]: [P["eye_r"]], P["teeth"]: [P["mouth"]]}
FACE_PARTS = range(P["eye_l"], P["wrinkle"] + 1)


class _Parts:
    """Per-part affine (u, v) coefficients and shape constants of one chunk, and their evaluation on pixels."""

    def __init__(self, parts: list, size: int):
        centre, m, bend, tilt, inner, scale, colours = parts
        cx, cy = centre[..., 0], centre[..., 1]
        self.cu = torch.stack([m[..., 0, 0], m[..., 0, 1], -(m[..., 0, 0] * cx + m[..., 0, 1] * cy)], -1)  # (B, K, 3)
        cv = torch.stack([m[..., 1, 0], m[..., 1, 1], -(m[..., 1, 0] * cx + m[..., 1, 1] * cy)], -1)
        self.cv = cv + tilt[..., None] * self.cu  # the one-sided tilt v += tilt * u is affine too
        det = (m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]).abs().clamp(min=1e-6)
        self.sharp = (det.rsqrt() * size / 4).clamp(min=1.0)  # about one pixel of anti-aliasing at any size
        self.bend, self.inner, self.scale, self.colours = bend, inner, scale, colours
        self.bent = (bend != 0).any(0).tolist()  # per part, decided once per chunk
        self.ring = (inner > -1).any(0).tolist()
        # The window of each part: |u| <= 1 and |v| <= 1 + |bend| / 2 + |tilt| (before bending) bound it.
        inv = torch.linalg.inv(m)  # (B, K, 2, 2): (u, v) -> image offset
        reach_v = 1 + 0.5 * bend.abs() + tilt.abs()
        half_x = inv[..., 0, 0].abs() + inv[..., 0, 1].abs() * reach_v
        half_y = inv[..., 1, 0].abs() + inv[..., 1, 1].abs() * reach_v
        px = size / 2  # pixels per unit of image coordinates
        self.sides = (torch.ceil(2 * torch.maximum(half_x, half_y).amax(0) * px).long() + 3).tolist()
        self.lo_x = ((cx - half_x + 1) * px).floor().long() - 1
        self.lo_y = ((cy - half_y + 1) * px).floor().long() - 1

    def uv(self, k: int, xs: torch.Tensor, ys: torch.Tensor):
        """u, v (B, rows * cols) of part k on the pixel grid with column centres xs (B, cols) and row centres
        ys (B, rows): affine in x and y, so each is one broadcast sum of a row term and a column term."""
        B = xs.shape[0]
        cu, cv = self.cu[:, k, :, None], self.cv[:, k, :, None]
        u = ((cu[:, 0] * xs + cu[:, 2])[:, None, :] + (cu[:, 1] * ys)[:, :, None]).view(B, -1)
        v = ((cv[:, 0] * xs + cv[:, 2])[:, None, :] + (cv[:, 1] * ys)[:, :, None]).view(B, -1)
        return u, v

    def alpha(self, k: int, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """(B, rows * cols) coverage of part k on the grid xs (B, cols), ys (B, rows)."""
        u, v = self.uv(k, xs, ys)
        if self.bent[k]:
            v = v.addcmul_(self.bend[:, k, None], u * u - 0.5)  # arcs: smile, frown, brows
        q = u.mul_(u).add_(v.mul_(v))
        sharp = self.sharp[:, k, None]
        a = q.mul(-sharp).add_(sharp).clamp_(0, 1)
        if self.ring[k]:  # glasses
            a.mul_(q.sub_(self.inner[:, k, None]).mul_(sharp).clamp_(0, 1))
        return a.mul_(self.scale[:, k, None])

    def window(self, k: int, size: int, windows: bool = True):
        """The smallest square window (one side for the chunk, its own place per face) holding part k entirely:
        (column centres (B, side), row centres (B, side), flat pixel indices (B, side * side) or None when the
        window is the whole image)."""
        B = self.lo_x.shape[0]
        side = self.sides[k] if windows else size
        r = torch.arange(min(side, size))
        if side >= size:
            t = (r + 0.5) / size * 2 - 1
            return t.expand(B, size), t.expand(B, size), None
        lo_x, lo_y = self.lo_x[:, k].clamp(0, size - side), self.lo_y[:, k].clamp(0, size - side)
        cols, rows = lo_x[:, None] + r, lo_y[:, None] + r  # (B, side)
        idx = (rows[:, :, None] * size + cols[:, None, :]).reshape(B, -1)
        return (cols + 0.5) / size * 2 - 1, (rows + 0.5) / size * 2 - 1, idx


def _render_chunk(parts: list, style: torch.Tensor, size: int, windows: bool = True):
    """One chunk of faces: every part composited back to front ("over") inside its window."""
    S = lambda f: style[:, ST[f]][:, None]  # noqa: E731  (B, 1), broadcasts over pixels
    pp = _Parts(parts, size)
    B, n = style.shape[0], size * size
    # Channels 0-2: the unlit colour of the parts composited so far; channel 3: how much background shows.
    canvas = torch.zeros(B, 4, n)
    canvas[:, 3] = 1
    colours = torch.cat([pp.colours, torch.zeros(B, K, 1)], 2)  # (B, K, 4): "over" leaves 0 * alpha in channel 3
    clip_maps: dict = {}  # full-image alphas of the parts that clip others
    parents = {q for ps in CLIP_PARENTS.values() for q in ps}
    for k in range(K):
        xs, ys, idx = pp.window(k, size, windows)
        a = pp.alpha(k, xs, ys)  # (B, n_window)
        if k == P["head"] or k in parents:  # kept before this part's own clipping
            clip_maps["face" if k == P["head"] else k] = a.clone() if idx is None else torch.zeros(B, n).scatter_(1, idx, a)
        if k == P["jaw"]:  # the head outline (head or jaw), which the face parts are clipped to
            face = clip_maps["face"]
            clip_maps["face"] = torch.maximum(face, a) if idx is None else face.scatter(1, idx, torch.maximum(face.gather(1, idx), a))
        for parent in CLIP_PARENTS.get(k, []):
            a.mul_(clip_maps[parent] if idx is None else clip_maps[parent].gather(1, idx))
        if k in FACE_PARTS:
            a.mul_(clip_maps["face"] if idx is None else clip_maps["face"].gather(1, idx))
        a = a[:, None]  # (B, 1, n_window)
        if idx is None:
            canvas.mul_(1 - a).addcmul_(a, colours[:, k, :, None])
        else:
            i4 = idx[:, None].expand(B, 4, -1)
            canvas.scatter_(2, i4, canvas.gather(2, i4).mul_(1 - a).addcmul_(a, colours[:, k, :, None]))
    fg, through = canvas[:, :3], canvas[:, 3:]
    X, Y = _grid(size)
    X, Y = X.reshape(-1), Y.reshape(-1)

    # Light: the head as a sphere-like surface; normals from the head outline's (u, v).
    head_u, head_v = pp.uv(P["head"], *pp.window(P["head"], size, False)[:2])
    nz = (1 - (head_u * head_u + head_v * head_v).clamp_(max=1.0)).sqrt_()
    light = torch.cat([S("light_x"), S("light_y"), torch.ones(B, 1)], 1)
    light = light / light.norm(dim=1, keepdim=True)
    ndotl = (head_u * light[:, :1] + head_v * light[:, 1:2] + nz * light[:, 2:]).clamp_(min=0)
    k = S("light_strength")
    shade = ndotl.mul_(0.9 * k).add_(1 - 0.7 * k)  # (B, HW)

    # Background: a colour with stripes and a gradient along the light direction.
    ang = S("bg_angle")
    tex = torch.sin(S("bg_freq") * (X * ang.cos() + Y * ang.sin()) + S("bg_phase"))
    tone = 1 + S("bg_amp") * tex + 0.15 * (X * S("light_x") + Y * S("light_y"))  # (B, HW)
    bg_col = style[:, [ST["bg_r"], ST["bg_g"], ST["bg_b"]], None]  # (B, 3, 1)
    img = fg.mul_(shade[:, None]).addcmul_(bg_col * tone[:, None], through)
    t = S("temperature")
    img.mul_(torch.cat([1 + t, torch.ones_like(t), 1 - t], 1)[..., None])
    img = img.view(B, 3, size, size)

    # Camera: blur (blend with a 3x3 binomial filter), then sensor noise.
    # Separable [1 2 1] / 4 filter along each axis by shifted slices (faster here than conv2d or avg_pool2d).
    pad = F.pad(img, (1, 1, 1, 1), mode="replicate")
    rows = pad[..., :-2] + 2 * pad[..., 1:-1] + pad[..., 2:]  # (B, 3, S + 2, S)
    blurred = (rows[..., :-2, :] + 2 * rows[..., 1:-1, :] + rows[..., 2:, :]).mul_(1 / 16)
    img = img.add_((blurred - img).mul_(style[:, ST["blur"], None, None, None]))
    noise = _hash_noise(style[:, ST["noise_seed"]], (3, size, size))
    img.addcmul_(noise, style[:, ST["noise"], None, None, None], value=2.0)
    return img.clamp_(0, 1), (1 - through).view(B, size, size)
