#!/usr/bin/env python3
"""Checks an exported checkpoint directory with our own modules (no official code):
  * __metadata__ entries parse (ast.literal_eval, `_target_` stays a string) to the same tree as
    config.json, with the same key order;
  * the model rebuilt from config.json + vae/config.json loads model.safetensors strictly;
  * tokenize -> detokenize runs; prints the reconstruction error per k.
Usage: train/.venv/bin/python train/check_export.py <dir> [--n 64]
"""
import argparse
import ast
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from flextok_train.data import make_dataset, to_tensor  # noqa: E402
from flextok_train.model import FlexTok  # noqa: E402
from flextok_train.spec import Spec  # noqa: E402


def literal(v):
    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--guidance", type=float, default=1.5)
    a = ap.parse_args()
    d = Path(a.dir)
    cfg = json.loads((d / "config.json").read_text())
    vcfg = json.loads((d / "vae" / "config.json").read_text())
    with safe_open(str(d / "model.safetensors"), "pt") as f:
        meta = {k: literal(v) for k, v in f.metadata().items()}
    assert set(meta) == set(cfg), (set(meta) ^ set(cfg))
    for k in cfg:
        assert json.dumps(meta[k]) == json.dumps(cfg[k]), f"metadata {k} differs from config.json"
    print("metadata == config.json (order preserved inside each entry)")
    spec = Spec.from_config(cfg, vcfg)
    model = FlexTok(spec).eval()
    model.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
    print("strict load OK:", sum(p.numel() for p in model.parameters()), "parameters")
    imgs, _ = make_dataset(a.n, 999, spec.image_size)  # a fresh seed: not the training images
    x = to_tensor(imgs)
    torch.manual_seed(0)
    with torch.no_grad():
        vae_mse = ((model.vae.decode(model.vae.encode(x)) - x) ** 2).mean().item()
        ids, _ = model.tokenize(x)
        print(f"VAE recon MSE {vae_mse:.4f}; ids {tuple(ids.shape)} range [{ids.min().item()}, {ids.max().item()}]")
        R = spec.n_registers
        k = 1
        while k <= R:
            g = torch.Generator().manual_seed(0)
            rec = model.detokenize(ids, torch.full((a.n,), k), a.steps, a.guidance, generator=g)
            print(f"k={k:3d}: MSE {((rec - x) ** 2).mean().item():.4f}")
            k *= 2


if __name__ == "__main__":
    main()
