"""Synthetic photos of three house plants, so the demo can train a classifier offline.

Everything is drawn procedurally with Pillow and numpy (no Django, no downloads).
The three plants differ the way the real ones do, so a CNN has to learn leaf shape and
texture rather than a constant colour:

* monstera: big, dark, heart-shaped leaves with slits cut from the edge toward the
  midrib and oval holes beside it;
* spider_plant: many long, thin, arching leaves from one crown, each with a cream
  stripe down its middle (or cream margins);
* dieffenbachia: broad elliptic leaves, cream and yellow-green blotches in the middle,
  dark green edges and a pale midrib.

Backgrounds, pots, scale, rotation, position, leaf count, colour, blur and noise are all
randomised, and every random choice comes from one generator seeded by (label, seed), so
the same arguments always give the same pixels.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

LABELS = ("monstera", "spider_plant", "dieffenbachia")

# Drawing happens at this multiple of the output size and is then downsampled with
# LANCZOS: ImageDraw does not antialias, and jagged edges would be an artificial cue.
SUPERSAMPLE = 2

Color = tuple[int, int, int]

# Wall and floor colours of ordinary rooms; a few greens so "green" alone never means "plant".
_WALLS: tuple[Color, ...] = (
    (238, 236, 230), (225, 218, 205), (205, 205, 208), (180, 186, 192), (214, 226, 236),
    (236, 214, 212), (200, 214, 196), (120, 124, 130), (70, 72, 78), (246, 240, 222),
    (222, 196, 160), (168, 190, 170),
)
_FLOORS: tuple[Color, ...] = (
    (150, 110, 75), (120, 84, 56), (188, 150, 110), (170, 170, 168), (96, 96, 100),
    (225, 222, 215), (110, 70, 50), (200, 190, 170),
)
_POTS: tuple[Color, ...] = (
    (190, 100, 65), (170, 85, 55), (240, 240, 236), (60, 60, 64), (200, 200, 195),
    (90, 120, 150), (210, 180, 140), (40, 40, 40), (150, 60, 60),
)


# ---------------------------------------------------------------- public API


def generate_image(label: str, seed: int, size: int = 256) -> Image.Image:
    """Return a size x size RGB "photo" of the plant `label`, fully determined by `seed`."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; expected one of {', '.join(LABELS)}")
    # The label is part of the seed so that seed 0 of two labels share no random stream.
    rng = np.random.default_rng([LABELS.index(label), int(seed) % (1 << 64)])
    s = size * SUPERSAMPLE
    canvas = _background(rng, s)
    base, height, tilt = _plant_placement(rng, s)
    if rng.random() < 0.75:
        base = _draw_pot(canvas, rng, base, height)
    else:
        # Without a pot, frame it as a close-up whose stems enter from the bottom edge,
        # rather than a plant floating in mid-air.
        base = np.array([base[0], rng.uniform(0.85, 1.02) * s])
    _PAINTERS[label](canvas, rng, base, height, tilt)
    image = canvas.resize((size, size), Image.LANCZOS)
    return _camera_effects(image, rng)


def generate_dataset(
    directory, per_label: int = 60, size: int = 256, seed: int = 0
) -> list[tuple[Path, str]]:
    """Write directory/<label>/<label>_<i:03d>.jpg for every label; return [(path, label)].

    Names depend only on the label and index, so running it again overwrites the same
    files instead of piling up new ones.
    """
    root = Path(directory)
    written: list[tuple[Path, str]] = []
    for label in LABELS:
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            # Spread dataset seeds far apart so datasets made with seed 0 and seed 1
            # do not share images.
            image = generate_image(label, seed * 1_000_003 + i, size)
            path = folder / f"{label}_{i:03d}.jpg"
            image.save(path, "JPEG", quality=90)
            written.append((path, label))
    return written


# ---------------------------------------------------------------- small helpers


def _jitter(rng: np.random.Generator, color: Color, amount: int = 18) -> Color:
    """Nudge each channel so no two leaves, walls or pots share an exact colour."""
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color)


def _pick(rng: np.random.Generator, colors: tuple[Color, ...]) -> Color:
    return colors[int(rng.integers(len(colors)))]


def _mix(a: Color, b: Color, t: float) -> Color:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def _place(base, angle: float, length: float, u, v) -> np.ndarray:
    """Map leaf-local coordinates to canvas pixels.

    u runs along the midrib (0 at the stalk, 1 at the tip) and v across it, both in leaf
    lengths; `angle` is the midrib's direction, clockwise from straight up. Shapes are
    defined once in this frame so rotation and scale come for free.
    """
    d = np.array([math.sin(angle), -math.cos(angle)])
    n = np.array([math.cos(angle), math.sin(angle)])
    u = np.asarray(u, dtype=float)[..., None]
    v = np.asarray(v, dtype=float)[..., None]
    return np.asarray(base, dtype=float) + length * (u * d + v * n)


def _pts(arr: np.ndarray) -> list[tuple[float, float]]:
    """ImageDraw wants a list of tuples, not an array."""
    return [(float(x), float(y)) for x, y in arr]


def _ellipse_poly(center, a: float, b: float, angle: float, n: int = 16) -> np.ndarray:
    """A rotated ellipse as a polygon: ImageDraw.ellipse can only draw axis-aligned ones."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    ca, sa = math.cos(angle), math.sin(angle)
    x, y = a * np.cos(t), b * np.sin(t)
    return np.stack([center[0] + x * ca - y * sa, center[1] + x * sa + y * ca], axis=1)


def _strip(path: np.ndarray, half_widths: np.ndarray) -> np.ndarray:
    """Outline of a ribbon of varying width around a polyline (grass-like leaves, stalks)."""
    tangent = np.gradient(path, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-9
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1) * half_widths[:, None]
    return np.concatenate([path + normal, (path - normal)[::-1]])


def _bezier(p0, p1, p2, n: int = 12) -> np.ndarray:
    """Quadratic Bezier, for gently curved stalks."""
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=float) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _stalk(draw: ImageDraw.ImageDraw, start, end, bend: float, width: float, color: Color):
    """A tapering, slightly curved stalk from `start` to `end`."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    mid = (start + end) / 2 + bend * np.array([-(end - start)[1], (end - start)[0]])
    path = _bezier(start, mid, end)
    draw.polygon(_pts(_strip(path, np.linspace(width, width * 0.6, len(path)))), fill=color)


# ---------------------------------------------------------------- scene


def _background(rng: np.random.Generator, s: int) -> Image.Image:
    """A room-like backdrop: solid, gradient, or wall over floor, with blotchy texture."""
    wall = np.array(_jitter(rng, _pick(rng, _WALLS), 20), dtype=np.float32)
    y = np.linspace(0.0, 1.0, s, dtype=np.float32)[:, None, None]
    kind = rng.integers(3)
    if kind == 0:  # plain painted wall
        arr = np.broadcast_to(wall, (s, s, 3)).astype(np.float32)
    elif kind == 1:  # light falling off across the wall
        other = np.array(_jitter(rng, _pick(rng, _WALLS), 20), dtype=np.float32)
        arr = wall + (other - wall) * y
        if rng.random() < 0.5:
            arr = arr.transpose(1, 0, 2)
    else:  # wall meeting a floor or table at a random height
        floor = np.array(_jitter(rng, _pick(rng, _FLOORS), 20), dtype=np.float32)
        horizon = rng.uniform(0.45, 0.85)
        arr = np.where(y < horizon, wall, floor) * np.ones((1, s, 1), np.float32)
        if rng.random() < 0.5:  # wooden boards: faint horizontal streaks below the line
            streaks = np.sin(y * rng.uniform(40, 120) + rng.uniform(0, 6)) * rng.uniform(4, 12)
            arr = arr + np.where(y >= horizon, streaks, 0)
    arr = arr + _blotches(rng, s) * rng.uniform(3, 16)
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    _distractors(ImageDraw.Draw(image), rng, s)
    return image


def _blotches(rng: np.random.Generator, s: int) -> np.ndarray:
    """Smooth low-frequency noise (a tiny random grid upscaled), like uneven light or plaster."""
    grid = rng.normal(0, 1, (int(rng.integers(3, 9)),) * 2).astype(np.float32)
    smooth = np.asarray(Image.fromarray(grid).resize((s, s), Image.BICUBIC))
    return smooth[:, :, None]


def _distractors(draw: ImageDraw.ImageDraw, rng: np.random.Generator, s: int) -> None:
    """Frames, furniture and shelves, so straight edges and patches are not plant cues."""
    for _ in range(int(rng.integers(0, 3))):
        x0, y0 = rng.uniform(-0.2, 0.9, 2) * s
        w, h = rng.uniform(0.1, 0.5, 2) * s
        color = _jitter(rng, _pick(rng, _WALLS + _FLOORS), 25)
        if rng.random() < 0.5:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=color)
        else:  # an empty frame or window edge
            draw.rectangle([x0, y0, x0 + w, y0 + h], outline=color, width=int(s * 0.015))


def _plant_placement(rng: np.random.Generator, s: int):
    """Where the plant's crown sits, how tall the plant is and how far the camera is tilted."""
    base = np.array([rng.uniform(0.3, 0.7) * s, rng.uniform(0.68, 0.95) * s])
    height = rng.uniform(0.75, 1.25) * s  # > 1.0 makes close-ups where leaves leave the frame
    tilt = rng.uniform(-0.4, 0.4)  # radians; the whole plant leans with the camera
    return base, height, tilt


def _draw_pot(canvas: Image.Image, rng, base: np.ndarray, height: float) -> np.ndarray:
    """A tapered pot with a dark soil rim; returns the new crown position on the soil."""
    draw = ImageDraw.Draw(canvas)
    top_w = height * rng.uniform(0.16, 0.26)
    pot_h = height * rng.uniform(0.2, 0.35)
    bottom_w = top_w * rng.uniform(0.7, 0.95)
    x, y = base
    color = _jitter(rng, _pick(rng, _POTS), 15)
    shade = _mix(color, (0, 0, 0), 0.25)
    draw.polygon([(x - top_w, y), (x + top_w, y), (x + bottom_w, y + pot_h), (x - bottom_w, y + pot_h)], fill=color)
    # The far side of a lit pot is darker; a cheap hint of a round body.
    right = [(x + top_w * 0.35, y), (x + top_w, y), (x + bottom_w, y + pot_h), (x + bottom_w * 0.35, y + pot_h)]
    draw.polygon(right, fill=shade)
    rim = height * 0.025
    draw.rectangle([x - top_w * 1.05, y - rim, x + top_w * 1.05, y + rim], fill=_mix(color, (255, 255, 255), 0.1))
    soil = _jitter(rng, (60, 42, 30), 10)
    draw.ellipse([x - top_w * 0.95, y - rim * 1.6, x + top_w * 0.95, y + rim * 0.4], fill=soil)
    return np.array([x, y - rim * 0.6])


def _camera_effects(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Exposure, white balance, focus and sensor noise differ from photo to photo."""
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.78, 1.22))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.8, 1.2))
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.75, 1.25))
    # A small hue shift (about +-11 degrees) models white balance without turning leaves blue.
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int16) + int(rng.integers(-8, 9))) % 256
    image = Image.fromarray(hsv, "HSV").convert("RGB")
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.9)))
    noise = rng.normal(0, rng.uniform(1.5, 6.0), (image.height, image.width, 3))
    arr = np.asarray(image).astype(np.float32) + noise
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


# ---------------------------------------------------------------- monstera


def _monstera_outline(rng: np.random.Generator, n: int = 96):
    """Heart-shaped leaf outline in leaf-local (u, v) units, and a radius function.

    An ellipse in polar form around the leaf centre, pinched at the back into the cordate
    notch where the stalk attaches, with a slight drip tip. Returns the outline shifted so
    the stalk joins at u = 0, and `edge(phi)` giving the shifted (u, v) of any edge point.
    """
    a = 0.5
    b = a * rng.uniform(0.78, 0.95)  # monstera leaves are almost as wide as they are long
    notch = rng.uniform(0.3, 0.45)
    wobble, phase = rng.uniform(0.0, 0.03), rng.uniform(0, 2 * math.pi)

    def radius(phi):
        r = a * b / np.sqrt((b * np.cos(phi)) ** 2 + (a * np.sin(phi)) ** 2)
        from_tip = np.minimum(phi, 2 * math.pi - phi)
        r = r * (1 - notch * np.exp(-(((phi - math.pi) / 0.25) ** 2)))
        r = r * (1 + 0.1 * np.exp(-((from_tip / 0.15) ** 2)))
        return r * (1 + wobble * np.sin(3 * phi + phase))

    attach = a - float(radius(math.pi))

    def edge(phi):
        r = radius(phi)
        return np.stack([a + r * np.cos(phi) - attach, r * np.sin(phi)], axis=-1)

    phi = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return edge(phi), edge, float(edge(0.0)[0])


def _monstera_leaf(canvas: Image.Image, rng, base, angle: float, length: float, green: Color):
    """One fenestrated leaf, drawn on its own mask so slits and holes show what is behind."""
    outline, edge, tip = _monstera_outline(rng)
    place = lambda uv: _place(base, angle, length, uv[..., 0], uv[..., 1])  # noqa: E731
    poly = place(outline)
    x0, y0 = np.floor(poly.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(poly.max(axis=0)).astype(int) + 2
    offset = np.array([x0, y0])
    # Working in the leaf's bounding box keeps the per-leaf layers small and fast.
    leaf = Image.new("RGB", (int(x1 - x0), int(y1 - y0)), green)
    mask = Image.new("L", leaf.size, 0)
    ink, cut = ImageDraw.Draw(leaf), ImageDraw.Draw(mask)
    cut.polygon(_pts(poly - offset), fill=255)

    # Light catches one half of the glossy blade more than the other.
    half = outline[outline[:, 1] > 0]
    sheen = np.concatenate([[[tip, 0.0]], half, [[0.0, 0.0]]])  # tip, round one side, stalk
    ink.polygon(_pts(place(sheen) - offset), fill=_mix(green, (255, 255, 230), rng.uniform(0.05, 0.15)))

    vein = _mix(green, (200, 220, 120), 0.35)
    slit_w = rng.uniform(0.02, 0.032)
    for side in (1, -1):
        count = int(rng.integers(3, 8))
        phis = np.linspace(0.5, 2.55, count) + rng.uniform(-0.08, 0.08, count)
        for k, phi in enumerate(phis):
            p = edge(phi if side > 0 else 2 * math.pi - phi)
            # Lateral veins run out from the midrib and toward the tip, so each slit aims
            # back at a point on the midrib nearer the stalk than its edge end.
            m = np.array([np.clip(p[0] - rng.uniform(0.08, 0.2), 0.03, tip - 0.05), 0.0])
            ink.line(_pts(place(np.stack([m, p])) - offset), fill=vein, width=max(1, int(length * 0.006)))
            _cut_slit(cut, place, offset, p, m, slit_w, rng)
            if k + 1 < count and rng.random() < 0.75:
                _cut_hole(cut, place, offset, edge, phis[k], phis[k + 1], side, length, rng)
    midrib = place(np.array([[0.0, 0.0], [tip * 0.97, 0.0]])) - offset
    ink.line(_pts(midrib), fill=vein, width=max(2, int(length * 0.018)))
    canvas.paste(leaf, (int(x0), int(y0)), mask)


def _cut_slit(cut, place, offset, p, m, width, rng):
    """Remove a round-ended slit from the leaf edge most of the way in toward the midrib."""
    direction = (m - p) / np.linalg.norm(m - p)
    outside = p - direction * 0.06  # start beyond the edge so the cut opens cleanly
    end = p + (m - p) * rng.uniform(0.5, 0.8)
    normal = np.array([-direction[1], direction[0]])
    flare = width * 1.3  # slightly wider at the edge, where the tissue tore open
    slit = np.stack([outside + normal * flare, end + normal * width, end - normal * width, outside - normal * flare])
    cut.polygon(_pts(place(slit) - offset), fill=0)
    cut.polygon(_pts(place(_ellipse_poly(end, width, width, 0.0, 10)) - offset), fill=0)


def _cut_hole(cut, place, offset, edge, phi_a, phi_b, side, length, rng):
    """Remove an oval hole near the midrib, between two slits, lying along the vein."""
    mid = (phi_a + phi_b) / 2
    p = edge(mid if side > 0 else 2 * math.pi - mid)
    m = np.array([max(p[0] - 0.14, 0.05), 0.0])
    center = m + (p - m) * rng.uniform(0.2, 0.38)
    direction = p - m
    along = math.atan2(direction[1], direction[0])
    hole = _ellipse_poly(center, rng.uniform(0.04, 0.07), rng.uniform(0.014, 0.024), along)
    cut.polygon(_pts(place(hole) - offset), fill=0)


def _paint_monstera(canvas: Image.Image, rng, base, height: float, tilt: float) -> None:
    """A few long stalks fanning out from the crown, each ending in a big split leaf."""
    draw = ImageDraw.Draw(canvas)
    count = int(rng.integers(3, 7))
    green = _jitter(rng, (24, 72, 34), 12)
    stalk = _mix(green, (150, 170, 90), 0.35)
    # Spread stalks evenly (with jitter) so the leaves fan out instead of piling up.
    spread = rng.uniform(0.6, 1.1)
    fan = np.linspace(-spread, spread, count) + rng.uniform(-0.2, 0.2, count) + tilt
    rng.shuffle(fan)  # draw order decides overlaps; do not always paint left to right
    for a in fan:
        reach = height * rng.uniform(0.25, 0.45)
        joint = base + reach * np.array([math.sin(a), -math.cos(a)])
        _stalk(draw, base, joint, rng.uniform(-0.15, 0.15), height * 0.012, stalk)
        # Leaves hang off their stalks: point them further out than the stalk itself.
        leaf_angle = a * rng.uniform(1.1, 1.6) + rng.uniform(-0.4, 0.4)
        leaf_green = _jitter(rng, green, 10)
        _monstera_leaf(canvas, rng, joint, leaf_angle, height * rng.uniform(0.45, 0.65), leaf_green)


# ---------------------------------------------------------------- spider plant


def _spider_leaf(draw: ImageDraw.ImageDraw, rng, base, angle: float, length: float,
                 green: Color, cream: Color, margins: bool) -> None:
    """One long ribbon leaf that arches over under its own weight, striped lengthwise."""
    steps = 24
    t = np.linspace(0, 1, steps)
    # The heading turns steadily away from vertical along the leaf: an arch.
    side = 1.0 if angle >= 0 else -1.0
    heading = angle + side * rng.uniform(0.4, 2.0) * t**1.5
    step = length / (steps - 1)
    dx, dy = np.sin(heading) * step, -np.cos(heading) * step
    steps_xy = np.stack([dx[:-1], dy[:-1]], axis=1)
    path = np.asarray(base) + np.concatenate([[[0.0, 0.0]], np.cumsum(steps_xy, axis=0)])
    half = length * rng.uniform(0.026, 0.04) * (1 - t) ** 0.6 + 0.5
    outer, inner = (cream, green) if margins else (green, cream)
    draw.polygon(_pts(_strip(path, half)), fill=outer)
    # The stripe fades out before the tip, as on the real leaves.
    keep = t < rng.uniform(0.75, 0.95)
    draw.polygon(_pts(_strip(path[keep], half[keep] * rng.uniform(0.35, 0.5))), fill=inner)


def _paint_spider_plant(canvas: Image.Image, rng, base, height: float, tilt: float) -> None:
    """A fountain of many grass-like leaves from one crown."""
    draw = ImageDraw.Draw(canvas)
    count = int(rng.integers(36, 60))
    green = _jitter(rng, (82, 150, 50), 14)
    cream = _jitter(rng, (242, 242, 218), 10)
    margins = rng.random() < 0.3  # the 'Variegatum' form has cream edges instead
    angles = rng.uniform(-1.45, 1.45, count) + tilt
    # Shorter upright leaves in front, long arching ones behind, like a real rosette.
    order = np.argsort(-np.abs(angles - tilt))
    for i in order:
        crown = base + rng.normal(0, height * 0.015, 2)
        length = height * rng.uniform(0.45, 0.9)
        _spider_leaf(draw, rng, crown, angles[i], length, _jitter(rng, green, 10), cream, margins)


# ---------------------------------------------------------------- dieffenbachia


def _dieffenbachia_leaf(draw: ImageDraw.ImageDraw, rng, base, angle: float, length: float, green: Color) -> None:
    """A broad elliptic leaf: dark edges, a cream/yellow-green blotched centre, pale midrib."""
    u = np.linspace(0, 1, 40)
    # u^a (1-u)^b: rounded base, widest a third of the way up, tapering to a point.
    shape = u**0.45 * (1 - u) ** 0.8
    width = rng.uniform(0.2, 0.28) * shape / shape.max()
    blade = _place(base, angle, length, np.concatenate([u, u[::-1]]), np.concatenate([width, -width[::-1]]))
    draw.polygon(_pts(blade), fill=green)

    pale = _jitter(rng, (205, 215, 125), 15)
    cream = _jitter(rng, (236, 232, 178), 10)
    inner = rng.uniform(0.62, 0.82)
    core = (u > 0.04) & (u < rng.uniform(0.8, 0.92))
    cu, cw = u[core], width[core] * inner
    centre = _place(base, angle, length, np.concatenate([cu, cu[::-1]]), np.concatenate([cw, -cw[::-1]]))
    draw.polygon(_pts(centre), fill=pale)
    _speckle(draw, rng, base, angle, length, u, width * inner, cream, green)

    # Lateral veins in green cross the pale centre and give it the feathered look.
    vein = _mix(green, pale, 0.35)
    for u0 in np.linspace(0.1, 0.8, int(rng.integers(6, 11))):
        for side in (1, -1):
            w_end = np.interp(u0 + 0.12, u, width) * 0.95 * side
            line = _place(base, angle, length, [u0, u0 + 0.12], [0.0, w_end])
            draw.line(_pts(line), fill=vein, width=max(1, int(length * 0.008)))
    midrib = _place(base, angle, length, [0.0, 0.95], [0.0, 0.0])
    draw.line(_pts(midrib), fill=_mix(cream, pale, 0.4), width=max(2, int(length * 0.02)))


def _speckle(draw, rng, base, angle, length, u, half_width, cream, green) -> None:
    """Cream blotches and a few dark flecks scattered over the leaf's centre."""
    count = int(rng.integers(40, 110))
    su = rng.uniform(0.06, 0.88, count)
    sv = rng.uniform(-1, 1, count) * np.interp(su, u, half_width)
    centers = _place(base, angle, length, su, sv)
    radii = length * rng.uniform(0.008, 0.03, count)
    dark = rng.random(count) < 0.2
    for (x, y), r, is_dark in zip(centers, radii, dark):
        r2 = r * rng.uniform(0.5, 1.5)
        draw.ellipse([x - r, y - r2, x + r, y + r2], fill=green if is_dark else cream)


def _paint_dieffenbachia(canvas: Image.Image, rng, base, height: float, tilt: float) -> None:
    """A thick cane with leaves on short stalks spiralling up it."""
    draw = ImageDraw.Draw(canvas)
    green = _jitter(rng, (35, 95, 40), 14)
    cane_color = _jitter(rng, (150, 175, 110), 15)
    cane_len = height * rng.uniform(0.15, 0.45)
    top = base + cane_len * np.array([math.sin(tilt), -math.cos(tilt)])
    _stalk(draw, base, top, rng.uniform(-0.1, 0.1), height * 0.03, cane_color)
    count = int(rng.integers(5, 10))
    for k in range(count):
        # Leaves leave the cane at rising points and alternating sides.
        at = base + (top - base) * (0.35 + 0.65 * k / max(count - 1, 1))
        side = 1 if k % 2 else -1
        a = tilt + side * rng.uniform(0.25, 1.3)
        joint = at + height * rng.uniform(0.08, 0.2) * np.array([math.sin(a), -math.cos(a)])
        _stalk(draw, at, joint, rng.uniform(-0.1, 0.1), height * 0.01, cane_color)
        leaf_angle = a + side * rng.uniform(0.0, 0.5)
        _dieffenbachia_leaf(draw, rng, joint, leaf_angle, height * rng.uniform(0.45, 0.65), _jitter(rng, green, 10))


_PAINTERS = {
    "monstera": _paint_monstera,
    "spider_plant": _paint_spider_plant,
    "dieffenbachia": _paint_dieffenbachia,
}
