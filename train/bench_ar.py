"""Generated tokens per second of an AR checkpoint (docs/ar-checkpoint.md): the PyTorch recipe
(flextok_train/ar.py, float32 weights upcast from the file, torch.inference_mode) and the Go
executor (sdk/ar BenchmarkGenerate on the same checkpoint, portable and fast paths), side by
side in one run, on the same number of threads (issue #12 item 8). The settings are the Go
benchmark's: k = the block size, CFG scale 2 (2·batch rows), top-k 100, batches 1 and 16.

  tools/reference/.venv/bin/python train/bench_ar.py --ar models/default/ar --threads 2

Go runs with GOMAXPROCS = --threads and its kernels and sampler on that many goroutines
(nn.Options Threads), PyTorch with torch.set_num_threads(--threads): the same cores.
"""
import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flextok_train.ar import generate  # noqa: E402
from flextok_train.ar_format import load_ar  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def torch_rate(model, batch, k, reps):
    labels = torch.arange(batch) % model.cfg.num_classes
    g = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        generate(model, labels, k, cfg_scale=2.0, top_k=100, generator=g)  # warm-up
        t0 = time.perf_counter()
        for _ in range(reps):
            generate(model, labels, k, cfg_scale=2.0, top_k=100, generator=g)
        dt = time.perf_counter() - t0
    return batch * k * reps / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ar", required=True, help="AR checkpoint directory")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_ar(args.ar)
    k = model.cfg.block_size
    rows = {}
    for batch in (1, 16):
        rows[batch] = {"pytorch": torch_rate(model, batch, k, args.reps)}
    env = dict(os.environ, GOMAXPROCS=str(args.threads), FLEXTOK_AR_BENCH_DIR=str(Path(args.ar).resolve()))
    out = subprocess.run(["go", "test", "./sdk/ar", "-run", "^$", "-short", "-bench", "BenchmarkGenerate/dir/",
                          "-benchtime", f"{args.reps}x"], cwd=REPO, env=env, check=True, capture_output=True, text=True).stdout
    for m in re.finditer(r"BenchmarkGenerate/dir/(\w+)/batch=(\d+)/k=\d+\S*\s.*?([\d.]+) tokens/s", out):
        rows[int(m.group(2))][m.group(1)] = float(m.group(3))
    print(f"# {args.ar}: k {k}, CFG 2, top-k 100, {args.threads} threads, torch {torch.__version__}")
    print("| batch | PyTorch recipe | Go portable | Go fast | Go fast / PyTorch |")
    print("|---|---|---|---|---|")
    for batch, r in rows.items():
        if "fast" not in r or "portable" not in r:
            sys.exit(f"go benchmark output not understood:\n{out}")
        print(f"| {batch} | {r['pytorch']:,.0f} tokens/s | {r['portable']:,.0f} tokens/s | {r['fast']:,.0f} tokens/s | {r['fast'] / r['pytorch']:.1f}× |")


if __name__ == "__main__":
    main()
