"""The VAE's own ceiling for the issue #12 figures: the evaluation classifier's accuracy and proxy
FID on the first 256 images of train/eval/heldout passed through the default model's VAE alone
(encode, decode, 8-bit as batch_to_pil), against the last 256 (the split of train/cmd/areval).
No tokens are involved: no tokenizer decodes better than this through this VAE.

  tools/reference/.venv/bin/python train/vae_ceiling.py
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from flextok_train.classifier import embed, frechet_distance, load_classifier  # noqa: E402
from flextok_train.data import CLASSES, to_tensor  # noqa: E402
from flextok_train.model import FlexTok  # noqa: E402
from flextok_train.spec import Spec  # noqa: E402


def main():
    torch.set_num_threads(1)
    d = HERE.parent / "models" / "default"
    spec = Spec.from_config(json.loads((d / "config.json").read_text()), json.loads((d / "vae" / "config.json").read_text()))
    m = FlexTok(spec).eval()
    m.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
    files = sorted((HERE / "eval" / "heldout").glob("*.png"))
    imgs = np.stack([np.array(Image.open(f).convert("RGB")) for f in files])
    labels = np.array([CLASSES.index(f.stem.split("_", 1)[1]) for f in files])
    x = to_tensor(imgs)
    half = len(x) // 2
    with torch.no_grad():
        rec = m.vae.decode(m.vae.encode(x[:half]))
    rec8 = ((rec.clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # truncation, as batch_to_pil
    c = load_classifier(HERE / "eval" / "classifier.safetensors")
    p, f = embed(c, to_tensor(rec8))
    _, fr = embed(c, x[half:])
    print(f"VAE alone, first {half} held-out images: class accuracy {(p == labels[:half]).mean():.4f}, "
          f"proxy FID {frechet_distance(f, fr):.3f} (against the last {len(x) - half})")


if __name__ == "__main__":
    main()
