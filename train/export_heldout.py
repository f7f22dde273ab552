"""Write held-out images of the "shapes" data set as PNG files, for `flextok eval`.

The images are the training recipe's validation split: train.py's get_data takes
make_dataset(n_train + n_val, data_seed) and keeps images [n_train, n_train + n_val) for
validation. Image i depends only on (data_seed, i) (numpy PCG64 seeded with [seed, i]), so the
validation images are generated here directly, without the 30,000 training images before them.
With the defaults (data seed 1234, 30,000 training images, as train.py) the files are exactly
the first N images of the validation set the default model never trained on.

Files: NNN_<class>.png (NNN = index in the validation split, from 000), 8-bit RGB.
Needs numpy and Pillow only (no torch, nothing from the official repository):

    tools/reference/.venv/bin/python train/export_heldout.py --out testdata/heldout --n 64
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flextok_train.data import CLASSES, render  # noqa: E402


def heldout(n, seed, n_train, size):
    """Yields (index in the validation split, uint8 [size, size, 3], label) for the first n
    validation images: the same pixels as make_dataset(n_train + n, seed, size)[n_train:]."""
    for j in range(n):
        rng = np.random.Generator(np.random.PCG64([seed, n_train + j]))
        im, label = render(rng, size)
        yield j, np.clip(np.round(im * 255), 0, 255).astype(np.uint8), label


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (created if missing)")
    ap.add_argument("--n", type=int, default=64, help="number of images (<= --n-val)")
    ap.add_argument("--data-seed", type=int, default=1234, help="train.py --data-seed")
    ap.add_argument("--n-train", type=int, default=30000, help="train.py --n-train (where validation starts)")
    ap.add_argument("--n-val", type=int, default=256, help="train.py --n-val (size of the validation split)")
    ap.add_argument("--size", type=int, default=32, help="image side (the Spec's image_size)")
    ap.add_argument("--check", default=None,
                    help="optional train.py data cache (.npz): assert the images equal its validation split")
    ap.add_argument("--force", action="store_true", help="replace existing files")
    args = ap.parse_args()
    if not 1 <= args.n <= args.n_val:
        sys.exit(f"export_heldout: --n {args.n}, want 1..{args.n_val} (the validation split)")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ref = None
    if args.check:
        d = np.load(args.check)
        ref = d["images"][args.n_train:], d["labels"][args.n_train:]
    for j, img, label in heldout(args.n, args.data_seed, args.n_train, args.size):
        if ref is not None:
            assert np.array_equal(img, ref[0][j]) and label == ref[1][j], f"image {j} differs from {args.check}"
        path = out / f"{j:03d}_{CLASSES[label]}.png"
        if path.exists() and not args.force:
            sys.exit(f"export_heldout: {path} exists (use --force to replace it)")
        Image.fromarray(img, "RGB").save(path, optimize=True)
    print(f"wrote {args.n} images ({args.size}x{args.size}) to {out}" + (" (checked)" if ref is not None else ""))


if __name__ == "__main__":
    main()
