#!/usr/bin/env python3
"""Times the OFFICIAL FlexTok code (apple/ml-flextok under tools/reference/.official) on a
checkpoint, in float32 and under torch.autocast("cpu", torch.bfloat16), interleaved: each round
runs every arm of an op once, in turn, so the machine's noise falls on both alike. Not part of
CI; docs/benchmarks.md has its numbers next to the Go engine's (make bench-bf16).

Ops (the checkpoint's native size, 256 px at d12):
  tokenize   FlexTok.tokenize of one image
  decode-20  FlexTok.detokenize of one image's ids: 20 steps, guidance 7.5, APG (the
             official README's settings), as the Go engine's decode-20

Usage (from the repository root; setup.sh made tools/reference/.venv):
    go run ./tools/mkcheckpoint -size d12 -o /tmp/d12
    nice tools/reference/.venv/bin/python tools/reference/bench_torch.py /tmp/d12 --rounds 3

CPU deviations as make_reference.py (numerically equivalent): FlexAttention.use_flex_attention
= False (SDPA with a boolean mask), BlockWiseSequencePacker.return_materialized_mask = True.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="checkpoint directory (model.safetensors, vae/config.json)")
    ap.add_argument("--official", default=os.environ.get("FLEXTOK_OFFICIAL", str(HERE / ".official")),
                    help="the official code's checkout (default: tools/reference/.official)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    if not (Path(args.official) / "flextok").is_dir():
        sys.exit(f"bench_torch: no official code at {args.official} (tools/reference/checkout_official.sh)")
    ckpt = Path(args.checkpoint)
    if not (ckpt / "model.safetensors").is_file():
        sys.exit(f"bench_torch: {ckpt}/model.safetensors not found")
    sys.path.insert(0, args.official)

    import torch
    from safetensors.torch import load_file, save_file
    from flextok.utils.checkpoint import load_model_from_safetensors
    from flextok.model.layers.attention import FlexAttention
    from flextok.model.preprocessors.flex_seq_packing import BlockWiseSequencePacker

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        # StableDiffusionVAE(hf_hub_path='vae') loads vae/ from the cwd: its config plus the
        # vae.vae.* weights of the checkpoint (make_reference.py:vae_workdir).
        (Path(tmp) / "vae").mkdir()
        shutil.copy(ckpt / "vae" / "config.json", Path(tmp) / "vae" / "config.json")
        sd = load_file(str(ckpt / "model.safetensors"))
        save_file({k[len("vae.vae."):]: v.float().contiguous() for k, v in sd.items() if k.startswith("vae.vae.")},
                  str(Path(tmp) / "vae" / "diffusion_pytorch_model.safetensors"))
        del sd
        os.chdir(tmp)
        try:
            model = load_model_from_safetensors(str((Path(cwd) / ckpt / "model.safetensors").resolve()), device="cpu", to_eval=True)
        finally:
            os.chdir(cwd)
    for m in model.modules():
        if isinstance(m, FlexAttention):
            m.use_flex_attention = False
        if isinstance(m, BlockWiseSequencePacker):
            m.return_materialized_mask = True
    load_s = time.perf_counter() - t0

    size = 256
    vae_size = size // 8
    gen = torch.Generator().manual_seed(0)
    img = (torch.rand((1, 3, size, size), generator=gen) * 2 - 1)
    with torch.no_grad():
        ids = model.tokenize(img)

    def tokenize():
        with torch.no_grad():
            model.tokenize(img)

    def detok():
        with torch.no_grad():
            model.detokenize(ids, vae_image_sizes=vae_size, timesteps=args.steps, guidance_scale=7.5,
                             perform_norm_guidance=True, verbose=False)

    def autocast(fn):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                fn()
        return run

    ops = [("tokenize", [("torch-fp32", tokenize), ("torch-bf16-autocast", autocast(tokenize))]),
           ("decode-20", [("torch-fp32", detok), ("torch-bf16-autocast", autocast(detok))])]
    with open("/proc/loadavg") as f:
        load_before = " ".join(f.read().split()[:3])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, official {args.official}, "
          f"load {load_s:.1f}s, {args.rounds} rounds, load average before: {load_before}")
    print(f"{'op':>10} {'arm':>20} {'median s':>9} {'min s':>8} {'max s':>8} {'fp32/arm':>9}")
    for name, arms in ops:
        for _, fn in arms:  # warm-up, untimed
            fn()
        times = [[] for _ in arms]
        for _ in range(args.rounds):
            for i, (_, fn) in enumerate(arms):
                t = time.perf_counter()
                fn()
                times[i].append(time.perf_counter() - t)
        med = [statistics.median(t) for t in times]
        for i, (arm, _) in enumerate(arms):
            print(f"{name:>10} {arm:>20} {med[i]:9.3f} {min(times[i]):8.3f} {max(times[i]):8.3f} {med[0] / med[i]:9.2f}")
    with open("/proc/loadavg") as f:
        print("load average after:", " ".join(f.read().split()[:3]))


if __name__ == "__main__":
    main()
