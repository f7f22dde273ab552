# Generates pil_golden.json: what Pillow + torchvision-style preprocessing give for synthetic
# images that image_test.go builds with the same formulas. Run from this folder with Pillow and
# numpy installed (no torch needed: Resize/CenterCrop/ToTensor/Normalize are reproduced with the
# exact torchvision rules on PIL images, in float32 as torch computes them):
#
#   python3 gen_pil.py > pil_golden.json
import hashlib, json, sys

import numpy as np
from PIL import Image, __version__ as pil_version


def pattern(w, h, seed):
    """Same as patternRGB in image_test.go: an LCG for noise plus gradients."""
    a = np.zeros((h, w, 3), dtype=np.uint8)
    s = seed
    for y in range(h):
        for x in range(w):
            for c in range(3):
                s = (s * 1103515245 + 12345) & 0xFFFFFFFF
                noise = (s >> 16) & 0x3F
                a[y, x, c] = (x * 7 + y * 13 + c * 50 + noise + ((x * y) % 31) * 3) & 0xFF
    return a


def plan(w, h, size):
    # torchvision _compute_resized_output_size for an int size, then center_crop offsets.
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    rw, rh = (new_short, new_long) if w <= h else (new_long, new_short)
    left = int(round((rw - size) / 2.0))
    top = int(round((rh - size) / 2.0))
    return rw, rh, left, top


cases = []
for (w, h, size, seed) in [(97, 61, 32, 1), (640, 480, 256, 2), (61, 97, 128, 3), (300, 256, 256, 4), (33, 33, 256, 5), (1000, 7, 16, 6)]:
    a = pattern(w, h, seed)
    im = Image.fromarray(a, "RGB")
    for name, flt in [("bilinear", Image.BILINEAR), ("catmull-rom", Image.BICUBIC)]:
        rw, rh, left, top = plan(w, h, size)
        r = im if (rw, rh) == (w, h) else im.resize((rw, rh), flt)
        c = np.asarray(r.crop((left, top, left + size, top + size)))
        t = (c.astype(np.float32).transpose(2, 0, 1) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
        cases.append({
            "width": w, "height": h, "size": size, "seed": seed, "filter": name,
            "resize": [rw, rh], "crop": [left, top],
            "pixels_sha256": hashlib.sha256(c.tobytes()).hexdigest(),
            "tensor_sha256": hashlib.sha256(t.astype("<f4").tobytes()).hexdigest(),
            "first": c[0, 0].tolist(), "last": c[-1, -1].tolist(),
        })

# batch_to_pil for single values: ((x+1)/2).clamp(0,1).mul(255).byte(), all in float32.
xs = np.array([-2, -1, -0.999, -0.5, 0, 0.1, 0.5, 0.99, 0.999999, 1, 1.5, np.nan] +
              [float(v) for v in (np.arange(256, dtype=np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)],
              dtype=np.float32)
y = np.clip((xs + np.float32(1)) / np.float32(2), 0, 1)
with np.errstate(invalid="ignore"):
    b = np.nan_to_num(y * np.float32(255), nan=0).astype(np.uint8)
out = {
    "pillow": pil_version,
    "cases": cases,
    "to_byte": {"x_bits": [int(v) for v in xs.view(np.uint32)], "bytes": b.tolist()},
}
json.dump(out, sys.stdout, indent=1)
sys.stdout.write("\n")
