#!/usr/bin/env python3
"""Checks our modules against the reference data made with the OFFICIAL code
(conformance/testdata/official/*/reference.safetensors): same state_dict keys and shapes
(strict load), same token ids, decoder velocities, guided detokenize and VAE decode.

Usage (from the repository root): train/.venv/bin/python train/verify_reference.py
"""
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from flextok_train.model import FlexTok  # noqa: E402
from flextok_train.spec import Spec  # noqa: E402

ROOT = HERE.parent / "conformance" / "testdata" / "official"
torch.set_num_threads(2)


def close(name, a, b, tol):
    d = (a.float() - b.float()).abs().max().item()
    ok = d <= tol
    print(f"  {'ok ' if ok else 'BAD'} {name:28s} max|d| {d:.2e} (tol {tol:g})")
    return ok


def check(case_dir: Path):
    print(case_dir.name)
    cfg = json.loads((case_dir / "config.json").read_text())
    vcfg = json.loads((case_dir / "vae" / "config.json").read_text())
    spec = Spec.from_config(cfg, vcfg)
    model = FlexTok(spec).eval()
    sd = load_file(str(case_dir / "model.safetensors"))
    ours = model.state_dict()
    missing, extra = set(ours) - set(sd), set(sd) - set(ours)
    bad_shape = [k for k in set(ours) & set(sd) if tuple(ours[k].shape) != tuple(sd[k].shape)]
    if missing or extra or bad_shape:
        print("  key mismatch: missing", sorted(missing)[:5], "extra", sorted(extra)[:5], "shape", bad_shape[:5])
        return False
    # Fixed sin-cos tables: our construction vs the official one (c3 stores them bf16-rounded).
    ok = True
    for k in sd:
        if k.endswith("posemb_module.posembs") and "registers" not in k:
            ok &= close(k.split(".")[2], ours[k], sd[k].float(), 0 if sd[k].dtype == torch.float32 else 4e-3)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    ref = load_file(str(case_dir / "reference.safetensors"))
    with torch.no_grad():
        lat = model.vae.encode(ref["image"])
        ok &= close("vae_latents", lat, ref["vae_latents"], 1e-5)
        feats = model.encoder(ref["vae_latents"])
        ok &= close("enc_registers", feats, ref["enc_registers"], 1e-4)
        ids, quants = model.tokenize_latents(ref["vae_latents"])
        ok &= close("quants", quants, ref["quants"], 0)
        same = torch.equal(ids, ref["token_ids"])
        print(f"  {'ok ' if same else 'BAD'} token_ids equal")
        ok &= same
        ok &= close("indices_to_codes", model.regularizer.indices_to_codes(ids), ref["quants"], 0)
        B = ids.shape[0]
        for j, t in enumerate(ref["dec_t"].tolist()):
            k = ref["dec_k"][j]
            tt = torch.full((B,), t)
            vc = model.decoder(ref["dec_x_t"][j], tt, ref["quants"], k, torch.zeros(B, dtype=torch.bool))
            vu = model.decoder(ref["dec_x_t"][j], tt, ref["quants"], k, torch.ones(B, dtype=torch.bool))
            ok &= close(f"velocity_cond[{j}]", vc, ref["velocity_cond"][j], 1e-4)
            ok &= close(f"velocity_uncond[{j}]", vu, ref["velocity_uncond"][j], 1e-4)
        R = spec.n_registers
        k = ref["detok_k"]
        pad = torch.zeros_like(ids)
        for i in range(B):
            pad[i, : k[i]] = ids[i, : k[i]]
        for name, g in (("none", 1.0), ("cfg", 3.0)):
            img = model.detokenize(pad, k, steps=4, guidance_scale=g, noise=ref["detok_noise"])
            lat = model.decode_latents(model.regularizer.indices_to_codes(pad), k, 4, g, ref["detok_noise"])
            ok &= close(f"detok_{name}_latents", lat, ref[f"detok_{name}_latents"], 1e-4)
            ok &= close(f"detok_{name}_image", img, ref[f"detok_{name}_image"], 1e-4)
        ok &= close("vae_decode_out", model.vae.decode(ref["vae_decode_in"]), ref["vae_decode_out"], 1e-5)
    assert R == ids.shape[1]
    return ok


if __name__ == "__main__":
    cases = sorted(p for p in ROOT.iterdir() if (p / "reference.safetensors").exists())
    results = [check(c) for c in cases]
    print("ALL OK" if all(results) else "MISMATCH")
    sys.exit(0 if all(results) else 1)
