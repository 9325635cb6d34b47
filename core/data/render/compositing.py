"""The renderer's hot loop, compiled: every part of every face composited back to front in one pass.

``render`` builds each face's parts as a table of numbers with a few hundred batched torch ops, then must draw
~25 small shapes per face one over the other. In eager torch that is thousands of small ops per chunk of faces
(each with its own dispatch and memory traffic), which capped the renderer near 4,000 faces/s at 64 px on two
cores. Here the same arithmetic runs as one numba-compiled loop, faces in parallel, each pixel of a part's box
visited once; ``render.py`` keeps the torch version as the readable reference, and the tests hold the two to the
same pixels up to float rounding.

``render`` imports this module on first use; without numba (or with ``FSX_RENDER_BACKEND=torch``) it draws with
the torch path.
"""

from __future__ import annotations

import threading

import numba
import numpy as np
import torch

# numba's default thread pool (workqueue) aborts the process when two Python threads enter a parallel loop at
# once; renders from several threads take turns instead.
_LOCK = threading.Lock()


@numba.njit(inline="always")
def _coverage_row(t, x0, x1, y, centres, row):
    """A part's alpha on pixels x0 .. x1 - 1 of row y, into row[x0:x1]; centres: pixel centres in image
    coordinates (float32); t = cx, cy, a1, b1, a2, b2, bend, sharp, inner, scale (a row of ``_Parts.table``).

    The formula of ``render._quadric``, evaluated per pixel, in float32 and branch-free so that the loop
    vectorises: for a part that is not a ring (inner = -1) the ring factor is exactly 1, as sharp >= 1, q >= 0."""
    cx, a1, a2, bend, sharp, inner, scale = t[0], t[2], t[4], t[6], t[7], t[8], t[9]
    dy = centres[y] - t[1]
    u0, v0 = t[3] * dy, t[5] * dy
    half, one, zero = np.float32(0.5), np.float32(1.0), np.float32(0.0)
    for x in range(x0, x1):
        dx = centres[x] - cx
        u = a1 * dx + u0
        v = a2 * dx + v0 + bend * (u * u - half)
        q = u * u + v * v
        row[x] = min(max(sharp * (one - q), zero), one) * min(max(sharp * (q - inner), zero), one) * scale


@numba.njit
def _composite_face(table, colours, boxes, parent, face_part, head, jaw, size, planes, face):
    """One face's parts, back to front ("over"), into planes (4, S, S): unlit colour (0-2) and how much
    background shows (3). face (S, S) is scratch for the head outline (the larger of the head's and the jaw's
    alpha) that face parts are clipped to. Work goes row by row through each part's box, each step a simple loop
    over the row."""
    centres = ((np.arange(size) + 0.5) * (2.0 / size) - 1.0).astype(np.float32)
    planes[:3] = 0.0
    planes[3] = 1.0
    face[:] = 0.0
    alpha, clip = np.empty(size, np.float32), np.empty(size, np.float32)
    for k in range(table.shape[0]):
        t = table[k]
        if t[9] <= 0.0:
            continue
        p = parent[k]
        # Unsigned indices: numba then drops its negative-index wrapping, and the row loops vectorise (3x faster).
        x0, x1 = np.uint64(boxes[k, 0]), np.uint64(boxes[k, 2])
        cr, cg, cb = colours[k, 0], colours[k, 1], colours[k, 2]
        for y in range(np.uint64(boxes[k, 1]), np.uint64(boxes[k, 3])):
            _coverage_row(t, x0, x1, y, centres, alpha)
            if k == head or k == jaw:
                for x in range(x0, x1):
                    face[y, x] = max(face[y, x], alpha[x])
            if p >= 0:  # clipped by its parent part (an iris by its eye)
                _coverage_row(table[p], x0, x1, y, centres, clip)
                for x in range(x0, x1):
                    alpha[x] *= clip[x]
            if face_part[k]:
                for x in range(x0, x1):
                    alpha[x] *= face[y, x]
            for x in range(x0, x1):
                a = alpha[x]
                planes[0, y, x] += a * (cr - planes[0, y, x])
                planes[1, y, x] += a * (cg - planes[1, y, x])
                planes[2, y, x] += a * (cb - planes[2, y, x])
                planes[3, y, x] -= a * planes[3, y, x]


@numba.njit
def _light_face(t, scene, size, planes, pad, coverage):
    """Shade the composited face by the light (the head outline t as a sphere-like surface), fill the background
    (colour, stripes, gradient), and write the lit image into the middle of pad (3, S + 2, S + 2)."""
    step = 2.0 / size
    l_x, l_y, l_z, gain, floor = scene[0], scene[1], scene[2], scene[3], scene[4]
    fx, fy, phase, amp, grad_x, grad_y = scene[5], scene[6], scene[7], scene[8], scene[9], scene[10]
    col_sin, col_cos = np.empty(size), np.empty(size)  # sin(fx X + fy Y + phase), expanded as in render.py
    for x in range(size):
        X = (x + 0.5) * step - 1.0
        col_sin[x], col_cos[x] = amp * np.sin(fx * X), amp * np.cos(fx * X)
    for y in range(size):
        Y = (y + 0.5) * step - 1.0
        dy = Y - t[1]
        row_cos, row_sin = np.cos(fy * Y + phase), np.sin(fy * Y + phase)
        for x in range(size):
            X = (x + 0.5) * step - 1.0
            dx = X - t[0]
            u, v = t[2] * dx + t[3] * dy, t[4] * dx + t[5] * dy
            lit = gain * l_z * np.sqrt(1.0 - min(u * u + v * v, 1.0)) + gain * (u * l_x + v * l_y) + floor
            lit = max(lit, floor)
            tone = row_cos * col_sin[x] + row_sin * col_cos[x] + grad_x * X + 1.0 + grad_y * Y
            through = planes[3, y, x]
            for c in range(3):
                pad[c, y + 1, x + 1] = planes[c, y, x] * lit + tone * through * scene[11 + c]
            coverage[y, x] = 1.0 - through


@numba.njit
def _camera_face(scene, noise, offset, size, pad, out):
    """Blur (a 3 x 3 binomial filter, edges replicated) blended by the face's blur strength, then sensor noise (the
    table from the face's offset on), clipped to [0, 1]."""
    for c in range(3):  # replicate the edges into the padding
        for i in range(1, size + 1):
            pad[c, i, 0], pad[c, i, size + 1] = pad[c, i, 1], pad[c, i, size]
        pad[c, 0, :] = pad[c, 1, :]
        pad[c, size + 1, :] = pad[c, size, :]
    blur, strength = scene[14], scene[15]
    i = offset
    for c in range(3):
        for y in range(size):
            for x in range(size):
                r0 = pad[c, y, x] + 2.0 * pad[c, y, x + 1] + pad[c, y, x + 2]
                r1 = pad[c, y + 1, x] + 2.0 * pad[c, y + 1, x + 1] + pad[c, y + 1, x + 2]
                r2 = pad[c, y + 2, x] + 2.0 * pad[c, y + 2, x + 1] + pad[c, y + 2, x + 2]
                v = pad[c, y + 1, x + 1] * (1.0 - blur) + (r0 + 2.0 * r1 + r2) * (blur / 16.0) + noise[i] * strength
                out[c, y, x] = min(max(v, 0.0), 1.0)
                i += 1


@numba.njit(parallel=True, cache=True)
def _render(table, colours, boxes, parent, face_part, head, jaw, scene, noise, offsets, size, planes, face, pad, out,
            coverage):
    for b in numba.prange(table.shape[0]):
        _composite_face(table[b], colours[b], boxes[b], parent, face_part, head, jaw, size, planes[b], face[b])
        _light_face(table[b, head], scene[b], size, planes[b], pad[b], coverage[b])
        _camera_face(scene[b], noise, offsets[b], size, pad[b], out[b])


def render_faces(table, colours, boxes, parent, face_part, head: int, jaw: int, scene, noise, offsets, size: int,
                 work, out: torch.Tensor, coverage: torch.Tensor) -> None:
    """Every per-pixel stage of ``render`` for a chunk of faces, faces in parallel, with as many threads as torch
    uses. Tensors are passed as their memory (no copies); ``work`` hands out the scratch buffers:
    table (B, K, 10), colours (B, K, 3), boxes (B, K, 4) int32 = x0, y0, x1, y1 (pixels, end exclusive),
    parent (K,) int32 = the part whose alpha clips part k or -1, face_part (K,) int32 = 1 for parts the head
    outline clips, scene (B, 16) = the light, background and camera numbers of ``render._scene``, noise (2 n,)
    the sensor noise table, offsets (B,) int64 each face's start in it. Writes out (B, 3, S, S) and coverage
    (B, S, S)."""
    B = table.shape[0]
    args = [table, colours, boxes, parent, face_part, head, jaw, scene, noise, offsets, size,
            work.get("planes", B, 4, size, size), work.get("face", B, size, size),
            work.get("pad", B, 3, size + 2, size + 2), out, coverage]
    with _LOCK:
        threads = torch.get_num_threads()
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
        try:
            _render(*(a.numpy() if isinstance(a, torch.Tensor) else a for a in args))
        finally:
            # numba's OpenMP pool, when it starts, sets the process's OpenMP thread count to its own (every core);
            # torch reads that count, so a run asked to use fewer threads (--threads, torch.set_num_threads) would
            # silently compute on every core after its first render
            torch.set_num_threads(threads)
