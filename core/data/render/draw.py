"""The drawing half of the batched face renderer (torch, CPU-fast, deterministic); ``parts.py`` builds what it draws.

A face is a 3-D template: ellipsoids (hair, neck, ears, head, jaw, fringe, hat) and discs lying on the head's
surface (eyes, irises, pupils, brows, lips, mouth, teeth, nose, wrinkle, glasses). The template is rotated by
yaw, pitch and roll and projected orthographically; every part becomes a 2-D ellipse (u, v coordinates per
pixel), optionally bent into an arc (smile, frown, arched or tilted brows) or hollowed into a ring (glasses).
Parts are composited back to front ("over"), each evaluated only inside its window, with a part's coverage
over a window computed as one small matrix product (see ``_Parts``); discs facing away from the camera fade out
and are clipped to the head, so the far eye hides behind the cheek and nose as the head turns. A light shades
the head like a sphere; style adds background texture, colour temperature, glasses, hat, noise and blur.

The parts are built with batched torch ops (``build_parts``, ``_Parts``); the per-pixel work after that runs in
the numba-compiled loop of ``compositing.py`` when numba is installed, or as the torch ops below
(``_composite_parts``, ``_light_and_camera``), which are the readable reference the tests compare it to.
"""

from __future__ import annotations

import functools
import math
import os

import torch

from fsx.data.render.parts import ST, K, P, build_parts
from fsx.sizes import SUPPORTED_SIZES

@functools.lru_cache(maxsize=8)
def _noise_table(n: int) -> torch.Tensor:
    """A fixed table of 2n uniform values in [-0.5, 0.5): a sample's sensor noise is the n values starting at an
    offset chosen by its noise seed, so noise is a copy, not a computation, and does not depend on the batch."""
    return torch.rand(2 * n, generator=torch.Generator().manual_seed(20260101)) - 0.5


def _noise_offsets(seed: torch.Tensor, n: int) -> torch.Tensor:
    """Where each face's n noise values start in ``_noise_table(n)``, from its noise seed (B,) in [0, 1000)."""
    return (seed.double() * 7919.0).floor().long() % n


def _sensor_noise(seed: torch.Tensor, shape: tuple[int, ...], out: torch.Tensor | None = None) -> torch.Tensor:
    """(B, *shape) deterministic noise in [-0.5, 0.5) for noise seeds (B,) in [0, 1000)."""
    n = math.prod(shape)
    offsets = _noise_offsets(seed, n)
    rows = _noise_table(n).as_strided((n, n), (1, 1))  # row i: the table from offset i on (a view, no copy)
    if out is None:
        return rows.index_select(0, offsets).view(-1, *shape)
    torch.index_select(rows, 0, offsets, out=out.view(len(seed), n))
    return out


def render(params: dict, size: int = 64, chunk: int | None = None, return_coverage: bool = False, windows: bool = True,
           backend: str = "auto"):
    """Render faces from parameter groups {"pose", "identity", "expression", "style"} (each (B, n)).

    Returns float images (B, 3, size, size) in [0, 1] (and the foreground coverage (B, size, size) when
    ``return_coverage``). Pure function of the parameters: same parameters, same pixels. The parts are composited
    by the compiled loop of ``compositing.py`` (``backend="compiled"``; "auto" uses it when numba is installed)
    or by torch ops (``backend="torch"``): the same pixels up to float rounding. Each part is evaluated only
    inside a window that contains all of it (``windows=False``, torch only, evaluates every part on the whole
    image: the same pixels again, slower; the tests compare all three). Faces are drawn ``chunk`` at a time
    (default: about half a million pixels, 128 faces at 64 px, which measured fastest: larger chunks leave the
    cache, smaller ones pay more per-op overhead)."""
    if size not in SUPPORTED_SIZES:
        raise ValueError(f"SynthFaces renders {', '.join(map(str, SUPPORTED_SIZES))} px, not {size}")
    if backend not in ("auto", "compiled", "torch"):
        raise ValueError(f"render backend must be auto, compiled or torch, not {backend!r}")
    chunk = chunk or min(128, max(16, 2**19 // (size * size)))
    compiled = None  # the compiled per-pixel loop, or None for the torch ops (windows=False is torch only)
    if windows and backend != "torch":
        compiled = _compiled(required=backend == "compiled")
    B = params["pose"].shape[0]
    params = {k: v.float() for k, v in params.items()}
    parts = build_parts(params["pose"], params["identity"], params["expression"], params["style"])
    images, coverage = torch.empty(B, 3, size, size), torch.empty(B, size, size)
    work = _Workspace()
    for s in range(0, B, chunk):
        e = min(s + chunk, B)
        _render_chunk([t[s:e] for t in parts], params["style"][s:e], size, images[s:e], coverage[s:e], work, windows,
                      compiled)
    return (images, coverage) if return_coverage else images


class _Workspace:
    """Buffers that every chunk of one render call reuses. A fresh multi-megabyte temporary costs more in page
    faults than the arithmetic done on it, so the per-pixel passes write into these instead."""

    def __init__(self):
        self.buffers: dict = {}

    def get(self, name: str, b: int, *shape: int) -> torch.Tensor:
        buf = self.buffers.get(name)
        if buf is None or buf.shape[0] < b or tuple(buf.shape[1:]) != shape:
            buf = self.buffers[name] = torch.empty(b, *shape)
        return buf[:b]


# Parts whose alpha is clipped by other parts' alphas: irises and pupils by their eye, teeth by the mouth,
# and every face part by the head outline (head or jaw), so that parts turned away hide behind the cheek.
CLIP_PARENTS = {P["iris_l"]: P["eye_l"], P["iris_r"]: P["eye_r"], P["pupil_l"]: P["eye_l"], P["pupil_r"]: P["eye_r"],
                P["teeth"]: P["mouth"]}
CLIPS = set(CLIP_PARENTS.values())
ANCHORS = CLIP_PARENTS  # a clipped part is evaluated on its parent's window
# Parts behind the face, drawn on the whole image; then the parts in front, in groups evaluated together (one
# window size, one batched product) and composited one by one, all in PARTS order.
BACK = [P[name] for name in ("hair_back", "neck", "ear_l", "ear_r", "head", "jaw")]
GROUPS = [[P[name] for name in group.split()] for group in (
    "eye_l eye_r iris_l iris_r pupil_l pupil_r", "brow_l brow_r", "lips mouth teeth", "nose nostrils wrinkle",
    "fringe", "glass_l glass_r", "hat_brim", "hat")]
FACE_PARTS = range(P["eye_l"], P["wrinkle"] + 1)
# The same two facts as arrays, for the compiled loop: the part that clips part k (-1: none); 1 for face parts.
PARENT = torch.tensor([CLIP_PARENTS.get(k, -1) for k in range(K)], dtype=torch.int32)
IS_FACE_PART = torch.tensor([int(k in FACE_PARTS) for k in range(K)], dtype=torch.int32)


def _compiled(required: bool = False):
    """The compiled compositing module, or None when numba is missing or FSX_RENDER_BACKEND=torch (``required``:
    raise instead, naming the reason)."""
    if os.environ.get("FSX_RENDER_BACKEND", "").lower() == "torch" and not required:
        return None
    try:
        from fsx.data.render import compositing
    except ImportError as err:
        if required:
            raise RuntimeError(f"render backend 'compiled' needs numba ({err}); install it or use backend='torch'")
        return None
    return compositing


class _Parts:
    """Per-part shape coefficients of one chunk, and each part's coverage on a pixel window.

    In coordinates centred on the part, u = a1 dx + b1 dy and v = a2 dx + b2 dy (v includes the one-sided tilt);
    bent parts add bend * (u^2 - 1/2) to v. The coverage sharp * (1 - u^2 - v^2) is then a polynomial of degree
    2 (4 when bent) in dx whose coefficients depend on dy only, so a whole window is one small batched matrix
    product: (rows x J coefficients) @ (J powers x cols)."""

    def __init__(self, parts: list, size: int):
        centre, m, bend, tilt, inner, scale, colours = parts
        self.cx, self.cy = centre[..., 0], centre[..., 1]
        self.a1, self.b1 = m[..., 0, 0], m[..., 0, 1]
        self.a2, self.b2 = m[..., 1, 0] + tilt * self.a1, m[..., 1, 1] + tilt * self.b1
        det = (m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]).abs().clamp(min=1e-6)
        self.sharp = (det.rsqrt() * size / 4).clamp(min=1.0)  # about one pixel of anti-aliasing at any size
        self.colours = colours
        self.bent = (bend != 0).any(0).tolist()  # per part, decided once per chunk
        self.ring = (inner > -1).any(0).tolist()
        self.shown = scale > 0  # (B, K): faces without a hat or glasses skip those parts
        # The window of each part: |u| <= 1 and |v| <= 1 + |bend| / 2 + |tilt| (before bending) bound it.
        inv = torch.linalg.inv(m)  # (B, K, 2, 2): (u, v) -> image offset
        reach_v = 1 + 0.5 * bend.abs() + tilt.abs()
        half_x = inv[..., 0, 0].abs() + inv[..., 0, 1].abs() * reach_v
        half_y = inv[..., 1, 0].abs() + inv[..., 1, 1].abs() * reach_v
        px = size / 2  # pixels per unit of image coordinates
        # One window size per part for the chunk (columns, rows), placed per face.
        self.widths = (torch.ceil(2 * half_x.amax(0) * px).long() + 3).tolist()
        self.heights = (torch.ceil(2 * half_y.amax(0) * px).long() + 3).tolist()
        lo_x = ((self.cx - half_x + 1) * px).floor().long() - 1
        lo_y = ((self.cy - half_y + 1) * px).floor().long() - 1
        self.lo = torch.stack([lo_x, lo_y], -1)  # (B, K, 2): top-left pixel of each part's window
        hi_x = ((self.cx + half_x + 1) * px).ceil().long() + 1
        hi_y = ((self.cy + half_y + 1) * px).ceil().long() + 1
        # Per face and part, the pixel box x0, y0, x1, y1 (end exclusive) that holds all of it: (B, K, 4).
        self.boxes = torch.stack([lo_x, lo_y, hi_x, hi_y], -1).clamp_(0, size).int()
        # Everything ``evaluate`` reads per part, packed so that one index picks it for a group: (B, K, 10).
        self.table = torch.stack([self.cx, self.cy, self.a1, self.b1, self.a2, self.b2, bend, self.sharp, inner,
                                  scale], -1)

    def evaluate(self, ks: list[int], size: int, windows: bool = True, rows=None):
        """Coverage of the parts ``ks`` of the faces ``rows`` (None: all), each on a window of one common size (the
        largest any of them needs in this chunk) placed per face and per part; a part listed in ANCHORS uses its
        parent's window, which holds all of it that its parent does not clip away.

        Returns alpha (b, len(ks), n_window) and flat pixel indices of the same shape into the (B * S * S) canvas,
        or None for the indices when the window is the whole image of every face. Windows covering most of the
        image are widened to all of it: indexing would cost more than it saves."""
        B = self.table.shape[0]
        width, height = max(min(self.widths[k], size) for k in ks), max(min(self.heights[k], size) for k in ks)
        if not windows or width * height > 0.6 * size * size:
            width = height = size
        table, lo = (self.table, self.lo) if rows is None else (self.table[rows], self.lo[rows])
        cx, cy, a1, b1, a2, b2, bend, sharp, inner, scale = table[:, ks, :, None].unbind(2)  # each (b, len(ks), 1)
        lo = lo[:, [ANCHORS.get(k, k) for k in ks]]  # (b, len(ks), 2)
        lo_x, lo_y = lo[..., :1].clamp(0, size - width), lo[..., 1:].clamp(0, size - height)
        step = 2 / size  # pixel centres at (i + 0.5) * step - 1; offsets centred on the part
        dx = (lo_x * step + (0.5 * step - 1) - cx) + torch.arange(width) * step  # (b, len(ks), width)
        dy = (lo_y * step + (0.5 * step - 1) - cy) + torch.arange(height) * step  # (b, len(ks), height)
        bent = any(self.bent[k] for k in ks)
        h, powers = _quadric(a1, b1, a2, b2, bend if bent else None, dx, dy)
        sharp = sharp[..., None]
        if any(self.ring[k] for k in ks):  # glasses: a disc minus its inner part
            q = torch.matmul(h, powers)
            a = q.mul(-sharp).add_(sharp).clamp_(0, 1)
            a.mul_(q.sub_(inner[..., None]).mul_(sharp).clamp_(0, 1))
        else:  # sharp * (1 - q), folded into the coefficients
            h = h.mul_(-sharp)
            h[..., 0].add_(sharp[..., 0])
            a = torch.matmul(h, powers).clamp_(0, 1)
        a = a.mul_(scale[..., None]).flatten(2)
        if width == height == size and rows is None:
            return a, None
        face = (torch.arange(B) if rows is None else rows)[:, None, None, None]
        corner = (face * size + lo_y[..., None]) * size + lo_x[..., None]  # (b, len(ks), 1, 1)
        idx = (corner + (torch.arange(height)[:, None] * size + torch.arange(width))).flatten(2)
        return a, idx


def _quadric(a1, b1, a2, b2, bend, dx: torch.Tensor, dy: torch.Tensor):
    """Row coefficients H (..., rows, J) and column powers X (..., J, cols) with H @ X = u^2 + v^2 on the grid of
    centred offsets dx (..., cols) and dy (..., rows); a1 ... b2 and bend (None: no part bent) are (..., 1)."""
    u0, v0 = b1 * dy, b2 * dy  # the dy parts of u and v
    if bend is None:
        h = [u0 * u0 + v0 * v0, 2 * (a1 * u0 + a2 * v0), (a1 * a1 + a2 * a2).expand_as(u0)]
    else:  # v = w2 dx^2 + w1 dx + w0 after bending
        w2, w1, w0 = bend * a1 * a1, a2 + 2 * bend * a1 * u0, v0 + bend * (u0 * u0 - 0.5)
        h = [u0 * u0 + w0 * w0, 2 * (a1 * u0 + w1 * w0), a1 * a1 + w1 * w1 + 2 * w2 * w0, 2 * w2 * w1,
             (w2 * w2).expand_as(u0)]
    powers = [torch.ones_like(dx), dx]
    while len(powers) < len(h):
        powers.append(powers[-1] * dx)
    return torch.stack(h, -1), torch.stack(powers, -2)


def _render_chunk(parts: list, style: torch.Tensor, size: int, out: torch.Tensor, coverage: torch.Tensor,
                  work: _Workspace, windows: bool = True, compiled=None) -> None:
    """One chunk of faces into ``out`` (b, 3, S, S) and ``coverage`` (b, S, S): every part composited back to
    front ("over") inside its window, then light, background and camera; by the ``compiled`` module
    (``compositing.py``) or, when None, by torch ops."""
    S = lambda f: style[:, ST[f]][:, None]  # noqa: E731  (B, 1), broadcasts over pixels
    pp = _Parts(parts, size)
    B, n = style.shape[0], size * size
    t = S("temperature")
    temperature = torch.cat([1 + t, torch.ones_like(t), 1 - t], 1)  # (B, 3), commutes with the compositing
    colours = pp.colours * temperature[:, None]  # (B, K, 3)
    scene = _scene(style, temperature)
    if compiled is not None:
        n_noise = 3 * n
        offsets = _noise_offsets(style[:, ST["noise_seed"]], n_noise)
        compiled.render_faces(pp.table, colours.contiguous(), pp.boxes, PARENT, IS_FACE_PART, P["head"], P["jaw"],
                              scene, _noise_table(n_noise), offsets, size, work, out, coverage)
        return
    # Per pixel: the unlit colour of the parts composited so far (0-2) and how much background shows (3).
    planes = work.get("planes", B, 4, n)
    _composite_parts(pp, colours, size, planes, work, windows)
    _light_and_camera(pp, scene, style[:, ST["noise_seed"]], size, planes, out, coverage, work)


def _scene(style: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Per face, the numbers of light, background and camera (B, 16) that both per-pixel paths read: light
    direction (3), gain, floor, stripe frequencies (2), phase, amplitude, gradient (2), background colour (3),
    blur, noise amplitude x 2."""
    S = lambda f: style[:, ST[f]]  # noqa: E731
    light = torch.stack([S("light_x"), S("light_y"), torch.ones_like(S("light_x"))], 1)
    light = light / light.norm(dim=1, keepdim=True)
    k = S("light_strength")
    ang, freq = S("bg_angle"), S("bg_freq")
    bg = style[:, [ST["bg_r"], ST["bg_g"], ST["bg_b"]]] * temperature
    return torch.cat([light, torch.stack([0.9 * k, 1 - 0.7 * k, freq * ang.cos(), freq * ang.sin(), S("bg_phase"),
                                          S("bg_amp"), 0.15 * S("light_x"), 0.15 * S("light_y")], 1),
                      bg, torch.stack([S("blur"), 2 * S("noise")], 1)], 1).contiguous()


def _composite_parts(pp: _Parts, colours: torch.Tensor, size: int, planes: torch.Tensor, work: _Workspace,
                     windows: bool) -> None:
    """The parts composited back to front ("over") into ``planes`` (B, 4, S * S) with torch ops (the reference
    for the compiled loop in ``compositing.py``)."""
    B, n = planes.shape[0], size * size
    colours = torch.cat([colours, torch.zeros(B, K, 1)], 2)  # "over" keeps 0 in channel 3
    # The parts behind the face cover much of every image: they are drawn on whole channel planes, where "over"
    # is one broadcast per part, all their coverages from one batched product.
    planes[:, :3].zero_()
    planes[:, 3].fill_(1)
    alphas, _ = pp.evaluate(BACK, size, windows=False)  # (B, len(BACK), n)
    for j, k in enumerate(BACK):
        planes.lerp_(colours[:, k, :, None].expand_as(planes), alphas[:, j : j + 1])  # under + a (colour - under)
    # The head outline (head or jaw) that face parts are clipped to, so that they hide behind the cheek.
    face = torch.maximum(alphas[:, BACK.index(P["head"])], alphas[:, BACK.index(P["jaw"])], out=work.get("face", B, n))
    face = face.view(-1)
    # The parts in front are small: each is drawn inside its window, taken from and put back into a canvas whose
    # four channels are adjacent, so that one complex128 element moves a pixel in one gather or scatter.
    canvas = work.get("canvas", B, n, 4)
    canvas.copy_(planes.transpose(1, 2))
    pixels = canvas.view(torch.complex128).view(-1)  # (B * n,), shares memory with canvas
    parents: dict = {}  # the unclipped alpha of each part that clips others, on its own window
    for group in GROUPS:
        shown = pp.shown[:, group].any(1)
        rows = None if bool(shown.all()) else shown.nonzero().squeeze(1)
        if rows is not None and len(rows) == 0:
            continue
        alphas, indices = pp.evaluate(group, size, windows, rows)  # (b, len(group), n_window)
        for j, k in enumerate(group):
            a, flat = alphas[:, j], None if indices is None else indices[:, j].reshape(-1)
            if k in CLIPS:
                parents[k] = a.clone()
            if k in CLIP_PARENTS:  # on the parent's window (ANCHORS)
                a.mul_(parents[CLIP_PARENTS[k]])
            if k in FACE_PARTS:
                a.mul_((face if flat is None else face.take(flat)).view_as(a))
            col = colours[:, k] if rows is None else colours[rows, k]
            a = a[..., None]  # (b, n_window, 1)
            if flat is None:
                canvas.lerp_(col[:, None].expand_as(canvas), a)
            else:
                under = pixels.take(flat).view(torch.float32).view(*a.shape[:2], 4)
                under.lerp_(col[:, None].expand_as(under), a)
                pixels.put_(flat, under.view(torch.complex128).view(-1))
    planes.copy_(canvas.permute(0, 2, 1))  # back to channel planes for the image-wide passes


def _light_and_camera(pp: _Parts, scene: torch.Tensor, noise_seed: torch.Tensor, size: int, planes: torch.Tensor,
                      out: torch.Tensor, coverage: torch.Tensor, work: _Workspace) -> None:
    """Shade the composited planes by the light, fill the background, blur and add sensor noise into ``out``;
    ``scene`` (B, 16) holds each face's numbers for it (``_scene``)."""
    c = lambda i: scene[:, i : i + 1]  # noqa: E731  (B, 1), broadcasts over pixels
    B = scene.shape[0]

    # Light: the head as a sphere-like surface; normals from the head outline's (u, v).
    head = P["head"]
    X = (torch.arange(size) + 0.5) / size * 2 - 1  # pixel centres, left to right and top to bottom
    dx, dy = X - pp.cx[:, head, None], X - pp.cy[:, head, None]  # (B, S)
    h, powers = _quadric(*(t[:, head, None] for t in (pp.a1, pp.b1, pp.a2, pp.b2)), None, dx, dy)
    shade = torch.bmm(h, powers, out=work.get("shade", B, size, size))
    l_u, l_v, l_z, gain, floor = c(0), c(1), c(2), c(3), c(4)  # shade = gain * max(n . l, 0) + floor
    by_col = gain * (pp.a1[:, head, None] * l_u + pp.a2[:, head, None] * l_v) * dx  # u l_x + v l_y is affine
    by_row = gain * (pp.b1[:, head, None] * l_u + pp.b2[:, head, None] * l_v) * dy + floor
    shade.clamp_(max=1.0).neg_().add_(1).sqrt_().mul_((gain * l_z)[..., None])  # gain * l_z * n_z
    shade.add_(by_col[:, None, :]).add_(by_row[:, :, None]).clamp_(min=floor[..., None])

    # Background: a colour with stripes and a gradient along the light direction, as one rank-4 product:
    # sin(fx X + fy Y + phase) = sin(fx X) cos(fy Y + phase) + cos(fx X) sin(fy Y + phase).
    fx, fy = c(5) * X, c(6) * X + c(7)  # (B, S)
    amp = c(8)
    by_row = torch.stack([fy.cos(), fy.sin(), torch.ones_like(fy), 1 + c(10) * X], 2)
    by_col = torch.stack([amp * fx.sin(), amp * fx.cos(), c(9) * X, torch.ones_like(fx)], 1)
    tone = torch.bmm(by_row, by_col, out=work.get("tone", B, size, size))
    bg_col = scene[:, 11:14, None, None]  # (B, 3, 1, 1)
    planes = planes.view(B, 4, size, size)
    # The lit image is written straight into the middle of a replicate-padded buffer for the camera blur.
    pad = work.get("pad", B, 3, size + 2, size + 2)
    img, through = pad[..., 1:-1, 1:-1], planes[:, 3:]  # (B, 3, S, S), (B, 1, S, S)
    torch.mul(planes[:, :3], shade[:, None], out=img).addcmul_(tone[:, None].mul_(through), bg_col)
    torch.sub(1, through[:, 0], out=coverage)

    # Camera: blur (blend with a 3x3 binomial filter), then sensor noise. The separable [1 2 1] filter runs
    # along each axis by shifted slices of the padded image (faster here than conv2d or avg_pool2d).
    pad[..., 1:-1, 0], pad[..., 1:-1, -1] = img[..., 0], img[..., -1]
    pad[..., 0, :], pad[..., -1, :] = pad[..., 1, :], pad[..., -2, :]
    rows = torch.add(pad[..., :-2], pad[..., 1:-1], alpha=2, out=work.get("rows", B, 3, size + 2, size))
    rows.add_(pad[..., 2:])
    blurred = torch.add(rows[..., :-2, :], rows[..., 1:-1, :], alpha=2, out=work.get("blurred", B, 3, size, size))
    blurred.add_(rows[..., 2:, :])  # 16 x the blurred image
    blur = scene[:, 14, None, None, None]
    torch.mul(img, 1 - blur, out=out).addcmul_(blurred, blur / 16)
    noise = _sensor_noise(noise_seed, (3, size, size), out=work.get("noise", B, 3, size, size))
    out.addcmul_(noise, scene[:, 15, None, None, None]).clamp_(0, 1)
