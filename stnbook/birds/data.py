"""A synthetic fine-grained data set with the structure of CUB-200-2011 (paper Sec. 4.3): find the head and the body.

Why a proxy. CUB-200-2011 cannot be downloaded here (:mod:`stnlib.data.cub` loads it where it exists), so the
book's birds chapter runs on images that pose the same problem (where CUB is present,
:mod:`stnbook.birds.cub` trains the same models on it). Each image shows an *object* made of a small
round **head** and a larger elliptical **body**, joined by a neck, at a random place, scale and pose
(rotation) on a cluttered background. Head and body each wear one of ``K`` fine **textures**; the class is the
pair (head texture, body texture), ``K * K`` classes, so neither part alone is enough and a model has to know
which texture sits on which part. The clutter is made of blobs wearing the same textures, so counting textures
over the whole image does not work either.

What "fine" means here, exactly. Every texture is a ``period x period`` tile repeated over the image (in the
image's pixel frame, with a random phase per part) holding the same number of ink pixels, so every texture
has the same mean colour over *any* ``period x period`` block. Averaging the image down by ``period``
(:func:`low_res`, what the plain CNN and the localisation nets see) therefore maps every texture to the same
flat colour: the global low-resolution view keeps the object's silhouette, but the class survives only in
the few pixels where a part's edge cuts a block. A crop sampled from the full-resolution image keeps the
textures (bilinear sampling at sub-pixel offsets blurs them, but at ``period = 3`` they stay distinct).
This is the paper's 448 px / 224 px argument, made extreme on purpose.

Conventions. Images are ``(B, 3, S, S)`` uint8 (values 0..255; models divide by 255); part locations are
(x, y) in the normalised coordinates of :mod:`stnlib.coords` (``align_corners=False``, x along the width,
[-1, 1] over the image), the frame in which an attention theta (s, t_x, t_y) places its crop. Rendering is
batched and on the fly: a step's batch depends only on ``(seed, step)`` through a named random stream, so a
resumed run sees the same images; the test set is fixed by :data:`PARTS_TEST_SEED`.

Sizes are given as fractions of the canvas side, so ``size`` can change (120 px by default); the texture
period is in pixels. The default geometry keeps head and body far enough apart that no square window of
side ``part_gap()`` pixels can hold textured pixels of both (at every pose and scale): with the birds
chapter's 20 px crops, a single transformer can read one part's texture, never both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from stnlib.coords import pixel_to_normalized
from stnlib.data.streams import register_stream, stream_generator

PARTS_TEST_SEED = 5678
"""Seed of the fixed test set of :func:`parts_test_set` (shared by every model, never used for training)."""

register_stream("birds.train", 31)
register_stream("birds.test", 32)
_TEST_CHUNK = 256  # fixed: part of what makes the test set bit-identical

# Ink patterns on a 3 x 3 tile, three ink pixels each (so all have the same block mean):
# horizontal, vertical, diagonal and anti-diagonal lines, an L and a broken diagonal.
_PATTERNS_3 = [
    [(0, 0), (0, 1), (0, 2)],
    [(0, 0), (1, 0), (2, 0)],
    [(0, 0), (1, 1), (2, 2)],
    [(0, 2), (1, 1), (2, 0)],
    [(0, 0), (0, 1), (1, 0)],
    [(0, 1), (1, 2), (2, 0)],
]
PATTERN_NAMES = ("horizontal", "vertical", "diagonal", "anti-diagonal", "corner", "broken")

# (ink, base) colours, RGB in [0, 1]: the head's scheme and the body's scheme. Clutter uses both.
HEAD_COLOURS = ((0.55, 0.05, 0.05), (0.95, 0.85, 0.55))
BODY_COLOURS = ((0.05, 0.10, 0.45), (0.75, 0.85, 0.95))
NECK_COLOUR = (0.25, 0.22, 0.20)


@dataclass(frozen=True)
class PartsSpec:
    """How the synthetic birds are drawn (saved with every result).

    Attributes:
        size: canvas side S in pixels (images are S x S, RGB).
        num_attributes: K textures per part; there are K * K classes (K <= 6).
        period: texture period in pixels; :func:`low_res` averages by this factor. Only 3 is implemented.
        body_axes: body ellipse semi-axes (along, across the pose direction), fraction of S.
        head_radius: head radius, fraction of S.
        neck: distance from the body's centre to the head's centre, fraction of S.
        scale_range: the object's scale is uniform in this range.
        pose_range: the direction from body to head, uniform in this range of degrees (0 = right, -90 = up:
            y runs down the image). The default keeps birds upright-ish, head above the body, as in CUB.
        clutter: number of clutter blobs per image.
        clutter_radius: clutter blob radius range, fraction of S.
    """

    size: int = 120
    num_attributes: int = 4
    period: int = 3
    body_axes: tuple[float, float] = (0.092, 0.0625)
    head_radius: float = 0.042
    neck: float = 0.44
    scale_range: tuple[float, float] = (0.9, 1.1)
    pose_range: tuple[float, float] = (-150.0, -30.0)
    clutter: int = 8
    clutter_radius: tuple[float, float] = (0.025, 0.055)

    def __post_init__(self) -> None:
        problems = []
        if self.period != 3:
            problems.append(f"period must be 3 (the implemented tiles), got {self.period}")
        if not 2 <= self.num_attributes <= len(_PATTERNS_3):
            problems.append(f"num_attributes must be in [2, {len(_PATTERNS_3)}], got {self.num_attributes}")
        if self.size % self.period or self.size < 8 * self.period:
            problems.append(f"size must be a multiple of period ({self.period}) and at least {8 * self.period}, "
                            f"got {self.size}")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            problems.append(f"scale_range must be increasing and positive, got {self.scale_range}")
        if not self.pose_range[0] <= self.pose_range[1]:
            problems.append(f"pose_range must be increasing, got {self.pose_range}")
        if self.clutter < 0:
            problems.append(f"clutter must be >= 0, got {self.clutter}")
        if math.ceil(self.extent() * self.size) + 3 > self.size / 2:  # the margin used by sample_parts
            problems.append(f"the object (half-extent {self.extent():.2f} of the canvas at the largest scale) "
                            "does not fit: lower neck, body_axes or scale_range")
        if problems:
            raise ValueError("invalid PartsSpec: " + "; ".join(problems))

    @property
    def num_classes(self) -> int:
        return self.num_attributes ** 2

    @property
    def low_res(self) -> int:
        """Side of the low-resolution view (:func:`low_res`)."""
        return self.size // self.period

    def extent(self) -> float:
        """Largest distance from the object's midpoint (between head and body centres) to its outline, fraction of S."""
        far = max(self.neck / 2 + self.body_axes[0], self.neck / 2 + self.head_radius)
        return far * self.scale_range[1]

    def part_gap(self) -> float:
        """Smallest Chebyshev (L-infinity) distance in pixels between the head's and the body's outlines, over the
        pose range at the smallest scale, less one pixel for the soft edges: an axis-aligned square window whose
        footprint is narrower than this never holds textured pixels of both parts. Computed numerically
        (61 poses, 120 outline points per part).

        Examples:
            >>> round(PartsSpec().part_gap(), 1)  # > 21: the chapter's 20 px crops plus the sampler's 1 px reach
            22.4
        """
        scale = self.scale_range[0] * self.size
        t = torch.linspace(0, 2 * math.pi, 121)[:-1]
        circle = torch.stack([t.cos(), t.sin()], 1)  # (120, 2)
        ang = torch.deg2rad(torch.linspace(self.pose_range[0], self.pose_range[1], 61))  # (61,)
        c, s = ang.cos()[:, None], ang.sin()[:, None]
        head = self.neck * scale * torch.stack([c, s], -1) + self.head_radius * scale * circle  # (61, 120, 2)
        u, v = self.body_axes[0] * scale * circle[:, 0], self.body_axes[1] * scale * circle[:, 1]
        body = torch.stack([u * c - v * s, u * s + v * c], -1)  # rotated ellipse outline, (61, 120, 2)
        dist = (head[:, :, None] - body[:, None]).abs().amax(-1)  # (61, 120, 120)
        return dist.min().item() - 1.0

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> PartsSpec:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def class_of(head: torch.Tensor, body: torch.Tensor, num_attributes: int) -> torch.Tensor:
    """Class index of (head texture, body texture): ``head * K + body``.

    Examples:
        >>> class_of(torch.tensor([0, 3]), torch.tensor([1, 2]), 4).tolist()
        [1, 14]
    """
    return head * num_attributes + body


def tiles(spec: PartsSpec) -> torch.Tensor:
    """(K, period, period) 0/1 ink tiles of the K textures (row = y, column = x)."""
    out = torch.zeros(spec.num_attributes, spec.period, spec.period)
    for k, pix in enumerate(_PATTERNS_3[:spec.num_attributes]):
        for r, c in pix:
            out[k, r, c] = 1.0
    return out


def sample_parts(spec: PartsSpec, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random parameters of ``n`` images (all CPU tensors; pixel units, pixel centres at integers).

    Returns:
        dict with "head_attr", "body_attr", "label" (n,) int64; "scale", "angle" (n,) (radians, the
        direction from body to head); "mid" (n, 2) pixel (x, y) of the midpoint between the part centres;
        "phase" (n, 2, 2) integer texture phases (head, body) x (x, y); "bg" (n, 3, 4, 4) background
        colours; clutter "c_xy" (n, C, 2), "c_r" (n, C), "c_aspect" (n, C), "c_angle" (n, C),
        "c_attr" (n, C), "c_scheme" (n, C) (0 head colours, 1 body colours), "c_phase" (n, C, 2).
    """
    g, S, K, C = generator, spec.size, spec.num_attributes, spec.clutter

    def u(*shape, lo=0.0, hi=1.0):
        return lo + (hi - lo) * torch.rand(*shape, generator=g)

    head = torch.randint(K, (n,), generator=g)
    body = torch.randint(K, (n,), generator=g)
    scale = u(n, lo=spec.scale_range[0], hi=spec.scale_range[1])
    angle = u(n, lo=math.radians(spec.pose_range[0]), hi=math.radians(spec.pose_range[1]))
    margin = math.ceil(spec.extent() * S) + 3.0  # the object's drawing window stays inside the canvas
    mid = u(n, 2, lo=margin - 0.5, hi=S - 0.5 - margin)
    phase = torch.randint(spec.period, (n, 2, 2), generator=g)
    bg = u(n, 3, 4, 4, lo=0.15, hi=0.85)
    c_xy = u(n, C, 2, lo=-0.5, hi=S - 0.5)
    c_r = u(n, C, lo=spec.clutter_radius[0] * S, hi=spec.clutter_radius[1] * S)
    c_aspect = u(n, C, lo=0.6, hi=1.0)
    c_angle = u(n, C, lo=-math.pi, hi=math.pi)
    c_attr = torch.randint(K, (n, C), generator=g)
    c_scheme = torch.randint(2, (n, C), generator=g)
    c_phase = torch.randint(spec.period, (n, C, 2), generator=g)
    return {"head_attr": head, "body_attr": body, "label": class_of(head, body, K), "scale": scale, "angle": angle,
            "mid": mid, "phase": phase, "bg": bg, "c_xy": c_xy, "c_r": c_r, "c_aspect": c_aspect, "c_angle": c_angle,
            "c_attr": c_attr, "c_scheme": c_scheme, "c_phase": c_phase}


def part_geometry(spec: PartsSpec, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Pixel geometry of head and body: "head_xy", "body_xy" (n, 2), "head_r" (n,), "body_ab" (n, 2), "dir" (n, 2)."""
    S = spec.size
    d = torch.stack([params["angle"].cos(), params["angle"].sin()], 1)
    half = (spec.neck * S * params["scale"] / 2)[:, None]
    return {"head_xy": params["mid"] + half * d, "body_xy": params["mid"] - half * d, "dir": d,
            "head_r": spec.head_radius * S * params["scale"],
            "body_ab": torch.stack([spec.body_axes[0] * S * params["scale"], spec.body_axes[1] * S * params["scale"]], 1)}


def _ellipse_mask(px: torch.Tensor, py: torch.Tensor, cx, cy, a, b, ca, sa) -> torch.Tensor:
    """Soft (about 1 px) mask of ellipses; all centre/axis arguments broadcast against the pixel grids."""
    dx, dy = px - cx, py - cy
    u = (dx * ca + dy * sa) / a
    v = (dy * ca - dx * sa) / b
    rho = torch.sqrt(u * u + v * v + 1e-12)
    return ((1 - rho) * torch.minimum(a, b) + 0.5).clamp_(0, 1)


def _segment_mask(px, py, p0, p1, width) -> torch.Tensor:
    """Soft mask of segments p0 -> p1 ((n, 2) pixel points) of the given width (n,)."""
    d = p1 - p0
    L2 = (d * d).sum(1).clamp_min(1e-9)
    vx, vy = d[:, 0, None, None], d[:, 1, None, None]
    ox, oy = px - p0[:, 0, None, None], py - p0[:, 1, None, None]
    t = ((ox * vx + oy * vy) / L2[:, None, None]).clamp_(0, 1)
    ex, ey = ox - t * vx, oy - t * vy
    dist = torch.sqrt(ex * ex + ey * ey)
    return (width[:, None, None] / 2 - dist + 0.5).clamp_(0, 1)


_COLOURS = torch.tensor([HEAD_COLOURS, BODY_COLOURS])  # (scheme, ink/base, rgb)


def _paint(canvas: torch.Tensor, mask: torch.Tensor, ink: torch.Tensor, scheme: torch.Tensor) -> torch.Tensor:
    """Blend textures of colour ``scheme`` (n,) and ink ``ink`` (n, h, w) over ``canvas`` (n, 3, h, w) by ``mask``."""
    c = _COLOURS[scheme]  # (n, 2, 3)
    ink_c, base_c = c[:, 0, :, None, None], c[:, 1, :, None, None]
    tex = base_c + (ink_c - base_c) * ink[:, None]
    return canvas + (tex - canvas) * mask[:, None]


def _ink(tile: torch.Tensor, attr: torch.Tensor, phase: torch.Tensor, gy: torch.Tensor, gx: torch.Tensor) -> torch.Tensor:
    """(n, h, w) ink of textures ``attr`` (n,) with phases (n, 2) (x, y) at pixel rows gy (n, h) and columns gx (n, w)."""
    p = tile.shape[-1]
    ry = (gy + phase[:, 1, None]) % p
    rx = (gx + phase[:, 0, None]) % p
    return tile[attr[:, None, None], ry[:, :, None], rx[:, None, :]]


def _window_axes(first: torch.Tensor, length: int, size: int) -> torch.Tensor:
    """(n, length) pixel indices of windows starting at ``first`` (n,), shifted to lie inside [0, size)."""
    return first.clamp(0, size - length)[:, None] + torch.arange(length)


def _get(img: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """(n, C, h, w) windows of ``img`` (n, C, H, W) at columns gx (n, w) and rows gy (n, h)."""
    b = torch.arange(img.shape[0])[:, None, None]
    return img[b, :, gy[:, :, None], gx[:, None, :]].permute(0, 3, 1, 2)


def _put(img: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor, win: torch.Tensor) -> None:
    """Write (n, C, h, w) windows back into ``img`` (in place); the inverse of :func:`_get`."""
    b = torch.arange(img.shape[0])[:, None, None]
    img[b, :, gy[:, :, None], gx[:, None, :]] = win.permute(0, 2, 3, 1)


def _neck_span(spec: PartsSpec) -> tuple[int, int]:
    """Width and height of a window that holds the neck segment (plus a margin) at every pose and scale."""
    length = spec.neck * spec.size * spec.scale_range[1]
    ang = torch.deg2rad(torch.linspace(spec.pose_range[0], spec.pose_range[1], 181))
    w = length * ang.cos().abs().max().item()
    h = length * ang.sin().abs().max().item()
    pad = math.ceil(0.025 * spec.size * spec.scale_range[1]) + 5
    return min(spec.size, math.ceil(w) + pad), min(spec.size, math.ceil(h) + pad)


def render_parts(spec: PartsSpec, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Draw the images of ``params`` (from :func:`sample_parts`): (n, 3, S, S) uint8.

    Back to front: a smooth background (a 4 x 4 colour field, bilinearly upsampled), the clutter blobs, the
    neck, the body, the head. Each shape has a soft edge about one pixel wide. Clutter is drawn in a small
    window around each blob (a padded canvas keeps windows at the border inside it), which is what makes
    rendering cheap next to a training step.
    """
    S = spec.size
    n = params["label"].shape[0]
    tile = tiles(spec)
    # Bilinear upsampling of the 4 x 4 colour field as two small matrix products (cheaper than interpolate).
    up = F.interpolate(torch.eye(4)[:, None], size=S, mode="linear", align_corners=False)[:, 0].T  # (S, 4)
    img = torch.einsum("yi,ncij,xj->ncyx", up, params["bg"], up)
    if spec.clutter:
        P = int(math.ceil(spec.clutter_radius[1] * S)) + 2
        W = 2 * P
        canvas = F.pad(img, (P, P, P, P))
        offs = torch.arange(W)
        for k in range(spec.clutter):
            c = params["c_xy"][:, k]
            start = c.round().long()  # window start in padded coordinates = global start + P
            gx = start[:, 0, None] - P + offs  # (n, W) global pixel columns of the window
            gy = start[:, 1, None] - P + offs
            r = params["c_r"][:, k, None, None]
            ang = params["c_angle"][:, k]
            m = _ellipse_mask(gx[:, None, :].float(), gy[:, :, None].float(), c[:, 0, None, None], c[:, 1, None, None],
                              r, r * params["c_aspect"][:, k, None, None], ang.cos()[:, None, None],
                              ang.sin()[:, None, None])
            ink = _ink(tile, params["c_attr"][:, k], params["c_phase"][:, k], gy, gx)
            _put(canvas, gx + P, gy + P, _paint(_get(canvas, gx + P, gy + P), m, ink, params["c_scheme"][:, k]))
        img = canvas[:, :, P:P + S, P:P + S]
    # The object: neck, body and head, each in a tight window of its own.
    geo = part_geometry(spec, params)
    img = img.contiguous()
    neck_w = 0.025 * S * params["scale"]
    lo = torch.minimum(geo["body_xy"], geo["head_xy"])
    span = _neck_span(spec)  # (w, h) that holds the neck at every pose and scale
    gx, gy = _window_axes(lo[:, 0].floor().long() - 2, span[0], S), _window_axes(lo[:, 1].floor().long() - 2, span[1], S)
    win = _get(img, gx, gy)
    m = _segment_mask(gx[:, None, :].float(), gy[:, :, None].float(), geo["body_xy"], geo["head_xy"], neck_w)
    _put(img, gx, gy, win + (torch.tensor(NECK_COLOUR).view(1, 3, 1, 1) - win) * m[:, None])
    ca, sa = geo["dir"][:, 0, None, None], geo["dir"][:, 1, None, None]
    largest = S * spec.scale_range[1]
    for key, attr, scheme, axes, half in (
            ("body_xy", "body_attr", 1, geo["body_ab"], math.ceil(spec.body_axes[0] * largest) + 2),
            ("head_xy", "head_attr", 0, geo["head_r"][:, None].expand(-1, 2), math.ceil(spec.head_radius * largest) + 2)):
        c = geo[key]
        first = c.round().long() - half
        gx, gy = _window_axes(first[:, 0], 2 * half, S), _window_axes(first[:, 1], 2 * half, S)
        m = _ellipse_mask(gx[:, None, :].float(), gy[:, :, None].float(), c[:, 0, None, None], c[:, 1, None, None],
                          axes[:, 0, None, None], axes[:, 1, None, None], ca, sa)
        ink = _ink(tile, params[attr], params["phase"][:, 1 - scheme], gy, gx)
        _put(img, gx, gy, _paint(_get(img, gx, gy), m, ink, torch.full((n,), scheme, dtype=torch.long)))
    return img.clamp_(0, 1).mul_(255).round_().to(torch.uint8)


def part_masks(spec: PartsSpec, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """(n, 2, S, S) soft masks (0..1) of the head and the body as drawn (before the head covers the body's edge)."""
    S = spec.size
    geo = part_geometry(spec, params)
    grid = torch.arange(S, dtype=torch.float32)
    px, py = grid.view(1, 1, S), grid.view(1, S, 1)
    ca, sa = geo["dir"][:, 0, None, None], geo["dir"][:, 1, None, None]
    r = geo["head_r"][:, None, None]
    head = _ellipse_mask(px, py, geo["head_xy"][:, 0, None, None], geo["head_xy"][:, 1, None, None], r, r, ca, sa)
    a, b = geo["body_ab"][:, 0, None, None], geo["body_ab"][:, 1, None, None]
    body = _ellipse_mask(px, py, geo["body_xy"][:, 0, None, None], geo["body_xy"][:, 1, None, None], a, b, ca, sa)
    return torch.stack([head, body], 1)


def part_locations(spec: PartsSpec, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Ground truth in normalised coordinates: "parts" (n, 2, 2) centres of (head, body), (x, y) each;
    "part_radius" (n, 2): head radius and body semi-major axis, as fractions of the half-side (normalised units)."""
    geo = part_geometry(spec, params)
    size = (spec.size, spec.size)
    centres = torch.stack([pixel_to_normalized(geo["head_xy"], size), pixel_to_normalized(geo["body_xy"], size)], 1)
    radius = torch.stack([geo["head_r"], geo["body_ab"][:, 0]], 1) * 2 / spec.size
    return {"parts": centres, "part_radius": radius}


def make_parts_batch(spec: PartsSpec, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``n`` fresh images: "x" (n, 3, S, S) uint8, "y" (n,) classes, "parts", "part_radius", "head_attr", "body_attr".

    Examples:
        >>> b = make_parts_batch(PartsSpec(size=48), 2, torch.Generator().manual_seed(0))
        >>> b["x"].shape, b["x"].dtype, b["parts"].shape
        (torch.Size([2, 3, 48, 48]), torch.uint8, torch.Size([2, 2, 2]))
    """
    params = sample_parts(spec, n, generator)
    return {"x": render_parts(spec, params), "y": params["label"], "head_attr": params["head_attr"],
            "body_attr": params["body_attr"], **part_locations(spec, params)}


def low_res(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Average ``factor x factor`` blocks: (B, C, H, W) -> (B, C, H / factor, W / factor), as float.

    This is the "downsampled whole image" of the plain CNN and the input of the localisation nets; with
    ``factor = spec.period`` it maps every texture of :func:`tiles` to the same colour.

    Examples:
        >>> low_res(torch.arange(16.0).view(1, 1, 4, 4), 2)[0, 0].tolist()
        [[2.5, 4.5], [10.5, 12.5]]
    """
    if images.dim() != 4 or images.shape[-1] % factor or images.shape[-2] % factor:
        raise ValueError(f"images must be (B, C, H, W) with H and W divisible by {factor}, got {tuple(images.shape)}")
    return F.avg_pool2d(images.float(), factor)


class PartsBatches:
    """Step-indexed training batches of synthetic birds: ``batch(step) -> (x, y, parts)``.

    Step ``t`` is rendered from the stream ``"birds.train"`` keyed by ``t`` (:mod:`stnlib.data.streams`), so a batch depends
    only on (seed, step) and every run with the same seed sees the same images (an infinite stream: there
    are no epochs). ``parts`` (B, 2, 2) holds the normalised (x, y) centres of head and body, so a loss can
    measure where the transformers look (:class:`~stnlib.train.classification_loss` ignores it).

    Examples:
        >>> data = PartsBatches(PartsSpec(size=48), batch_size=4, seed=0)
        >>> x, y, parts = data.batch(7)
        >>> torch.equal(x, data.batch(7)[0]), x.shape, y.shape, parts.shape
        (True, torch.Size([4, 3, 48, 48]), torch.Size([4]), torch.Size([4, 2, 2]))
    """

    def __init__(self, spec: PartsSpec, batch_size: int, seed: int, device: str | torch.device = "cpu"):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.spec = spec
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.device = torch.device(device)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if int(step) < 0:
            raise ValueError(f"step must be non-negative, got {step}")
        g = stream_generator(self.seed, "birds.train", int(step))
        b = make_parts_batch(self.spec, self.batch_size, g)
        return b["x"].to(self.device), b["y"].to(self.device), b["parts"].to(self.device)


def parts_test_set(spec: PartsSpec, n: int, seed: int = PARTS_TEST_SEED) -> dict[str, torch.Tensor]:
    """The fixed test set: ``n`` images made in chunks of 256, chunk ``i`` from the stream ``"birds.test"`` keyed by ``i``.

    Chunks are independent, so sets of different sizes share their complete chunks (the first 256 images
    of every set of at least 256 are the same). Keys as in :func:`make_parts_batch`.
    """
    chunks = []
    for i, start in enumerate(range(0, n, _TEST_CHUNK)):
        g = stream_generator(seed, "birds.test", i)
        chunks.append(make_parts_batch(spec, min(_TEST_CHUNK, n - start), g))
    return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}


def crop_contains(theta: torch.Tensor, parts: torch.Tensor, scale: float) -> torch.Tensor:
    """Whether each attention crop contains each part's centre.

    Args:
        theta: (B, N, 2) crop centres (t_x, t_y) of N attention transformers with fixed ``scale``, or
            (B, N, 3) (s, t_x, t_y) (then ``scale`` is ignored). The crop covers [t - s, t + s] on each axis.
        parts: (B, P, 2) part centres, normalised (x, y).
        scale: the fixed attention scale s.

    Returns:
        (B, N, P) bool.

    Examples:
        >>> theta = torch.tensor([[[0.5, 0.5], [-0.5, 0.0]]])
        >>> parts = torch.tensor([[[0.6, 0.3], [0.0, 0.0]]])
        >>> crop_contains(theta, parts, 0.25).tolist()
        [[[True, False], [False, False]]]
    """
    if theta.shape[-1] == 3:
        s, t = theta[..., :1], theta[..., 1:]
    else:
        s, t = torch.full_like(theta[..., :1], float(scale)), theta
    diff = (parts[:, None, :, :] - t[:, :, None, :]).abs()  # (B, N, P, 2)
    return (diff <= s[:, :, None, :]).all(-1)


__all__ = ["PARTS_TEST_SEED", "PATTERN_NAMES", "PartsSpec", "PartsBatches", "class_of", "tiles", "sample_parts",
           "part_geometry", "part_masks", "render_parts", "part_locations", "make_parts_batch", "low_res", "parts_test_set",
           "crop_contains"]
