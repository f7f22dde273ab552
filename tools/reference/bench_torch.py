#!/usr/bin/env python3
"""Times the OFFICIAL FlexTok code (apple/ml-flextok under tools/reference/.official) on a
checkpoint, in float32 and under torch.autocast("cpu", torch.bfloat16), and, with --go, the Go
engine (fp32 and bf16) and ONNX Runtime through a built flextok binary, interleaved: each round
runs every arm of an op once, in turn, so the machine's noise falls on all alike. Not part of
CI; docs/benchmarks.md has its numbers (make bench-bf16).

The Go arms run in one `flextok bench --driven` process, started before the rounds: it loads
each backend once, then runs the op this script names on its stdin and prints the op's own time
(load and pipe excluded), as the PyTorch arms are timed around the call in this process. Every
arm has one untimed call first.

Ops (the checkpoint's native size, 256 px at d12):
  tokenize   FlexTok.tokenize of one image
  decode-20  FlexTok.detokenize of one image's ids: 20 steps, guidance 7.5, APG (the
             official README's settings), as the Go engine's decode-20

Usage (from the repository root; setup.sh made tools/reference/.venv):
    go run ./tools/mkcheckpoint -size d12 -o /tmp/d12
    go build -o bin/flextok ./cmd/flextok
    FLEXTOK_ORT_LIB=$PWD/.deps/ort/libonnxruntime.so nice tools/reference/.venv/bin/python \
        tools/reference/bench_torch.py /tmp/d12 --rounds 3 --go bin/flextok --go-backends go,go-bf16,ort

CPU deviations as make_reference.py (numerically equivalent): FlexAttention.use_flex_attention
= False (SDPA with a boolean mask), BlockWiseSequencePacker.return_materialized_mask = True.
"""
import argparse
import json
import os
import subprocess
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
    ap.add_argument("--go", metavar="FLEXTOK", help="a built flextok binary: adds its --go-backends as arms")
    ap.add_argument("--go-backends", default="go,go-bf16,ort",
                    help="the flextok bench backends to add with --go (default go,go-bf16,ort)")
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

    def timed(fn):
        def run():
            t = time.perf_counter()
            fn()
            return time.perf_counter() - t
        return run

    decode_op = f"decode-{args.steps}"
    ops = [("tokenize", [("torch-fp32", timed(tokenize)), ("torch-bf16-autocast", timed(autocast(tokenize)))]),
           (decode_op, [("torch-fp32", timed(detok)), ("torch-bf16-autocast", timed(autocast(detok)))])]
    go = None
    if args.go:
        go = GoArms(args.go, args.checkpoint, args.go_backends, args.threads, args.steps)
        print(f"flextok bench --driven: {go.ready}")
        for name, arms in ops:
            arms += go.arms("tokenize" if name == "tokenize" else "decode")
    with open("/proc/loadavg") as f:
        load_before = " ".join(f.read().split()[:3])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, official {args.official}, "
          f"load {load_s:.1f}s, {args.rounds} rounds, load average before: {load_before}")
    print("ratios are of medians, above 1: the arm is faster than the column's arm")
    cols = [c for c in ("torch-fp32", "torch-bf16-autocast", "ort") if any(a == c for a, _ in ops[0][1])]
    print(f"{'op':>10} {'arm':>20} {'median s':>9} {'min s':>8} {'max s':>8} " + " ".join(f"{c + '/arm':>24}" for c in cols))
    try:
        for name, arms in ops:
            for _, fn in arms:  # warm-up, untimed
                fn()
            times = [[] for _ in arms]
            for _ in range(args.rounds):
                for i, (_, fn) in enumerate(arms):
                    times[i].append(fn())
            med = {arm: statistics.median(t) for (arm, _), t in zip(arms, times)}
            for i, (arm, _) in enumerate(arms):
                ratios = " ".join(f"{med[c] / med[arm]:24.2f}" for c in cols)
                print(f"{name:>10} {arm:>20} {med[arm]:9.3f} {min(times[i]):8.3f} {max(times[i]):8.3f} {ratios}", flush=True)
    finally:
        if go:
            go.close()
    with open("/proc/loadavg") as f:
        print("load average after:", " ".join(f.read().split()[:3]))


class GoArms:
    """A `flextok bench --driven` process: the Go engine and ONNX Runtime arms."""

    def __init__(self, binary, checkpoint, backends, threads, steps):
        cmd = [binary, "bench", "--driven", "-m", checkpoint, "--backends", backends,
               "--threads", str(threads), "--steps", str(steps), "--provider", "cpu"]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.ready = self._read()
        if not self.ready.get("ready"):
            sys.exit(f"bench_torch: {' '.join(cmd)}: {self.ready}")
        self.backends = [b.strip() for b in backends.split(",") if b.strip()]

    def _read(self):
        line = self.p.stdout.readline()
        if not line:
            sys.exit(f"bench_torch: flextok bench --driven exited ({self.p.wait()})")
        return json.loads(line)

    def run(self, backend, op):
        self.p.stdin.write(f"{backend} {op}\n")
        self.p.stdin.flush()
        r = self._read()
        if r.get("error"):
            sys.exit(f"bench_torch: flextok {backend} {op}: {r['error']}")
        return r["seconds"]

    def arms(self, op):
        # "go" is the Go engine at fp32 (flextok bench's name); shown as go-fp32.
        return [(("go-fp32" if b == "go" else b), (lambda b=b: self.run(b, op))) for b in self.backends]

    def close(self):
        self.p.stdin.close()
        self.p.wait()


if __name__ == "__main__":
    main()
