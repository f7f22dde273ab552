"""Procedural "shapes" data set: colourful 32x32 RGB images with class labels, generated
deterministically from a seed (numpy PCG64). No download, no licence question: the images are
made by this code (same licence as the project).

Each image: a two-colour linear-gradient background, 0-2 small distractor shapes, and one large
main shape on top; the label is the class of the main shape. Shapes are rendered at 4x and
box-filtered down (anti-aliased). Random colour, size, position and rotation per shape.
"""
import numpy as np

CLASSES = ["circle", "ring", "square", "triangle", "cross", "star", "hexagon", "crescent"]
SS = 4  # supersampling factor


def _polygon(x, y, n, r, rot):
    """Inside test of a regular n-gon of circumradius r (convex: all half-planes)."""
    inside = np.ones_like(x, dtype=bool)
    apothem = r * np.cos(np.pi / n)
    for i in range(n):
        a = rot + (i + 0.5) * 2 * np.pi / n
        inside &= (x * np.cos(a) + y * np.sin(a)) <= apothem
    return inside


def _mask(cls, x, y, r, rot):
    """x, y: coordinates relative to the shape centre (image units); r: size."""
    c, s = np.cos(rot), np.sin(rot)
    xr, yr = c * x + s * y, -s * x + c * y
    d = np.hypot(x, y)
    name = CLASSES[cls]
    if name == "circle":
        return d <= r
    if name == "ring":
        return (d <= r) & (d >= 0.55 * r)
    if name == "square":
        h = r * 0.8
        return (np.abs(xr) <= h) & (np.abs(yr) <= h)
    if name == "triangle":
        return _polygon(x, y, 3, r, rot)
    if name == "cross":
        a, b = r, 0.33 * r
        return ((np.abs(xr) <= a) & (np.abs(yr) <= b)) | ((np.abs(xr) <= b) & (np.abs(yr) <= a))
    if name == "star":
        th = np.arctan2(yr, xr)
        # 5-pointed star: radius oscillates between 0.45 r and r.
        rr = r * (0.45 + 0.55 * np.abs(np.cos(2.5 * th)) ** 2)
        return d <= rr
    if name == "hexagon":
        return _polygon(x, y, 6, r, rot)
    if name == "crescent":
        ox, oy = 0.45 * r * c, 0.45 * r * s
        return (d <= r) & (np.hypot(x - ox, y - oy) > 0.8 * r)
    raise ValueError(cls)


def _colour(rng, avoid=None):
    for _ in range(20):
        col = rng.random(3)
        col = col / max(col.max(), 1e-3) * rng.uniform(0.55, 1.0)  # saturated-ish
        if rng.random() < 0.3:
            col = col * rng.uniform(0.2, 0.6)
        if avoid is None or np.abs(col - avoid).sum() > 0.6:
            return col
    return col


def render(rng, size=32):
    n = size * SS
    g = (np.arange(n) + 0.5) / n  # [0,1]
    y, x = np.meshgrid(g, g, indexing="ij")
    # background gradient
    c0, c1 = _colour(rng), _colour(rng)
    a = rng.uniform(0, 2 * np.pi)
    w = np.clip((x - 0.5) * np.cos(a) + (y - 0.5) * np.sin(a) + 0.5, 0, 1)[..., None]
    img = c0 * (1 - w) + c1 * w
    bg_mean = (c0 + c1) / 2
    for _ in range(rng.integers(0, 3)):  # distractors
        k = int(rng.integers(len(CLASSES)))
        r = rng.uniform(0.08, 0.16)
        cx, cy = rng.uniform(0.1, 0.9, 2)
        m = _mask(k, x - cx, y - cy, r, rng.uniform(0, 2 * np.pi))
        img = np.where(m[..., None], _colour(rng, bg_mean), img)
    label = int(rng.integers(len(CLASSES)))
    r = rng.uniform(0.22, 0.36)
    cx, cy = rng.uniform(0.5 - (0.45 - r), 0.5 + (0.45 - r), 2)
    m = _mask(label, x - cx, y - cy, r, rng.uniform(0, 2 * np.pi))
    img = np.where(m[..., None], _colour(rng, bg_mean), img)
    img = img.reshape(size, SS, size, SS, 3).mean(axis=(1, 3))
    return img.astype(np.float32), label


def make_dataset(n, seed, size=32):
    """Returns images uint8 [n, size, size, 3] and labels int64 [n]; image i depends only on
    (seed, i), so any prefix of a larger set is the same."""
    imgs = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        rng = np.random.Generator(np.random.PCG64([seed, i]))
        im, lab = render(rng, size)
        imgs[i] = np.clip(np.round(im * 255), 0, 255).astype(np.uint8)
        labels[i] = lab
    return imgs, labels


def to_tensor(imgs_u8):
    """uint8 [n,H,W,3] -> float32 [n,3,H,W] in [-1,1] (the official preprocessing range)."""
    import torch

    return torch.from_numpy(imgs_u8).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def save_grid(path, images, nrow):
    """images: float [n,3,H,W] in [-1,1] -> PNG grid."""
    from PIL import Image

    x = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    n, H, W, _ = x.shape
    rows = (n + nrow - 1) // nrow
    grid = np.full((rows * (H + 1) + 1, nrow * (W + 1) + 1, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        grid[1 + r * (H + 1): 1 + r * (H + 1) + H, 1 + c * (W + 1): 1 + c * (W + 1) + W] = x[i]
    Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST).save(path)
