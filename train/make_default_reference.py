#!/usr/bin/env python3
"""Reference outputs of the default model, computed by the training recipe's own PyTorch modules,
for the Go engine's agreement test (models/default_test.go).

Writes conformance/testdata/default/reference.safetensors:
  image        [B,3,H,W] f32 in [-1,1]  held-out images (data seed 999, not training images)
  vae_latents  [B,C,h,w] f32            VAE posterior mean x scaling factor
  token_ids    [B,R] int64              FSQ token ids
  keep_k       [B] int64                prefix length decoded per image
  noise        [B,C,h,w] f32            injected initial noise x_1
  latents      [B,C,h,w] f32            after `steps` Euler steps with CFG `guidance` (no APG)
  decoded      [B,3,H,W] f32            VAE decode of latents (unclamped)
Settings are in the file's metadata.

Usage: tools/reference/.venv/bin/python train/make_default_reference.py models/default
"""
import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from flextok_train.data import make_dataset, to_tensor  # noqa: E402
from flextok_train.model import FlexTok  # noqa: E402
from flextok_train.spec import Spec  # noqa: E402

OUT = HERE.parent / "conformance" / "testdata" / "default" / "reference.safetensors"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--guidance", type=float, default=2.0)
    a = ap.parse_args()
    d = Path(a.dir)
    cfg = json.loads((d / "config.json").read_text())
    vcfg = json.loads((d / "vae" / "config.json").read_text())
    spec = Spec.from_config(cfg, vcfg)
    model = FlexTok(spec).eval()
    model.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
    torch.set_num_threads(1)
    imgs, _ = make_dataset(4, 999, spec.image_size)
    x = to_tensor(imgs).contiguous()
    keep_k = torch.tensor([1, 4, 16, spec.n_registers], dtype=torch.long)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        lat = model.vae.encode(x)
        ids, _ = model.tokenize(x)
        noise = torch.randn(lat.shape, generator=g)
        quants = model.regularizer.indices_to_codes(ids)
        out = model.decode_latents(quants, keep_k, a.steps, a.guidance, noise=noise)
        dec = model.vae.decode(out)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {"image": x, "vae_latents": lat.contiguous(), "token_ids": ids.long().contiguous(), "keep_k": keep_k,
         "noise": noise.contiguous(), "latents": out.contiguous(), "decoded": dec.contiguous()},
        str(OUT),
        metadata={"steps": str(a.steps), "guidance": str(a.guidance), "apg": "False",
                  "torch": torch.__version__, "script": "train/make_default_reference.py"},
    )
    print("wrote", OUT, {k: tuple(v.shape) for k, v in [("ids", ids), ("latents", out)]})


if __name__ == "__main__":
    main()
