"""Recipe for the class-conditional AR model over the default tokenizer's ids (issue #12).

Stages (--stage data | train | export | all):
  data    images of the "shapes" set (flextok_train/data.py, --data-seed, the same images the
          tokenizer trained on: train = first --n-train, validation = the next --n-val) and, with
          --flip, their mirror images; tokenized by the SDK's Go engine
          (`go run ./train/cmd/artokens`, portable path, ids = the official code's) into
          <work>/ar_tokens.npz: ids uint16 [N, 32], labels int64 [N], val_ids, val_labels.
  train   AdamW + warm-up + cosine, class dropout (null class) for CFG, seeded, resumable from
          <work>/ar_ckpt.pt (saved every --ckpt-min minutes and at the end), CSV log
          <work>/ar_log.csv. --factorize 1 trains the token embedding and the output head as a
          per-code part plus parts shared by every code with the same FSQ digit
          (flextok_train/ar.py FactorizedARModel); export folds them into LlamaGen's two
          matrices, so the checkpoint format does not change.
  export  <work>/ar_model/: model.safetensors (--dtype, default bf16) + config.json as
          docs/ar-checkpoint.md, then reloads it and reports the validation loss of the stored
          weights.

  nice -n 19 python train/train_ar.py --work train/runs/ar --stage all
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flextok_train.ar import ARConfig, ARModel, FactorizedARModel, generate  # noqa: E402
from flextok_train.ar_format import load_ar, save_ar  # noqa: E402
from flextok_train.data import CLASSES, make_dataset  # noqa: E402
from flextok_train.util import log, lr_at  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# The tokenizer this recipe trains for: `go run ./train/cmd/artokens -identity` on the embedded
# default model (models/default). The data stage checks it again against the Go engine.
TOKENIZER = {
    "name": "flextok-sdk-shapes32",
    "digest": "sha256:da4b68e90cbdd5b57689b6821c6ea0b1b367d83ab0f6f5595642d3be4e142785",
    "fsq_levels": [8, 8, 8, 5, 5, 5],
    "codebook_size": 64000,
    "n_registers": 32,
}


def go_tokenize(imgs_u8, work, name, go):
    inp, out = Path(work) / f"{name}_images.npy", Path(work) / f"{name}_ids.npy"
    np.save(inp, np.ascontiguousarray(imgs_u8))
    log(f"tokenizing {len(imgs_u8)} images with the Go engine ({name})")
    subprocess.run(go + ["-in", str(inp.resolve()), "-out", str(out.resolve())], cwd=REPO, check=True)
    ids = np.load(out)
    inp.unlink()
    out.unlink()
    return ids


def stage_data(args):
    work = Path(args.work)
    out = work / "ar_tokens.npz"
    if out.exists():
        log(f"{out} exists")
        return
    go = ["nice", "-n", "19", "go", "run", "./train/cmd/artokens"]
    if args.tokenizer:  # another tokenizer (an experiment): its identity is whatever it says
        go += ["-m", str(Path(args.tokenizer).resolve())]
    ident = json.loads(subprocess.run(go + ["-identity"], cwd=REPO, check=True, capture_output=True, text=True).stdout)
    tok = {k: ident[k] for k in TOKENIZER} if args.tokenizer else TOKENIZER
    for k, v in tok.items():
        if ident[k] != v:
            raise SystemExit(f"the embedded default tokenizer's {k} is {ident[k]!r}, this recipe expects {v!r}: update TOKENIZER")
    cache = Path(args.data_npz) if args.data_npz else work / f"data_s{args.data_seed}_32px_{args.n_train}_{args.n_val}.npz"
    if not cache.exists():
        log(f"generating {args.n_train + args.n_val} images -> {cache}")
        imgs, labels = make_dataset(args.n_train + args.n_val, args.data_seed, 32)
        np.savez(cache, images=imgs, labels=labels)
    d = np.load(cache)
    imgs, labels = d["images"], d["labels"]
    n = args.n_train
    if len(imgs) < n + args.n_val:
        raise SystemExit(f"{cache}: {len(imgs)} images, need {n + args.n_val}")
    tr, trl = imgs[:n], labels[:n]
    if args.flip:
        tr, trl = np.concatenate([tr, tr[:, :, ::-1]]), np.concatenate([trl, trl])
    ids = go_tokenize(tr, work, "train", go)
    val = go_tokenize(imgs[n:n + args.n_val], work, "val", go)
    np.savez(out, ids=ids, labels=trl, val_ids=val, val_labels=labels[n:n + args.n_val],
             tokenizer=json.dumps(tok), data_seed=args.data_seed, flip=args.flip)
    log(f"wrote {out}: {ids.shape} train ids (flip={args.flip}), {val.shape} validation ids, "
        f"{len(np.unique(ids))} distinct codes in train")


def tokenizer_of(args):
    """The tokenizer the data stage tokenized with (ar_tokens.npz records it)."""
    return json.loads(str(np.load(Path(args.work) / "ar_tokens.npz")["tokenizer"]))


def model_config(args):
    cfg = ARConfig(**json.loads(args.arch)) if args.arch else ARConfig()
    tok = tokenizer_of(args)
    cfg.vocab_size, cfg.block_size = tok["codebook_size"], tok["n_registers"]
    cfg.num_classes, cfg.class_dropout = len(CLASSES), args.class_dropout
    return cfg


def load_tokens(args):
    d = np.load(Path(args.work) / "ar_tokens.npz")
    t = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return t(d["ids"]), t(d["labels"]), t(d["val_ids"]), t(d["val_labels"])


@torch.no_grad()
def val_loss(model, vi, vl, bs=128):
    model.eval()
    tot = 0.0
    for i in range(0, len(vi), bs):
        tot += model.loss(vl[i:i + bs], vi[i:i + bs]).item() * len(vi[i:i + bs])
    model.train()
    return tot / len(vi)


def stage_train(args):
    work = Path(args.work)
    ids, labels, vi, vl = load_tokens(args)
    cfg = model_config(args)
    torch.manual_seed(args.seed)
    model = FactorizedARModel(cfg, tokenizer_of(args)["fsq_levels"]) if args.factorize else ARModel(cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": other, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(args.seed)
    step, perm, pos = 0, None, 0
    ck = work / "ar_ckpt.pt"
    if ck.exists():
        st = torch.load(ck, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["global"])
        step, perm, pos = st["step"], st["perm"], st["pos"]
        if bool(st.get("factorize")) != bool(args.factorize):
            raise SystemExit(f"{ck} was trained with --factorize {int(bool(st.get('factorize')))}: resume with the same")
        log(f"resumed at step {step}")
    if step >= args.steps:
        log(f"training already reached {step} >= --steps {args.steps}")
        return
    nparam = sum(p.numel() for p in model.parameters())
    log(f"AR model {nparam:,} parameters, {len(ids)} sequences, batch {args.batch}, steps {args.steps}")
    logf = work / "ar_log.csv"
    new = not logf.exists()
    f = open(logf, "a", newline="")
    w = csv.writer(f)
    if new:
        w.writerow(["step", "lr", "loss", "val_loss", "sec_per_step", "cpu_sec_per_step"])

    def save():
        tmp = str(ck) + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                    "global": torch.get_rng_state(), "step": step, "perm": perm, "pos": pos,
                    "config": vars(cfg), "args": vars(args), "factorize": bool(args.factorize)}, tmp)
        os.replace(tmp, ck)

    model.train()
    t_ck = time.time()
    new_steps = 0
    while step < args.steps and (args.max_new_steps is None or new_steps < args.max_new_steps):
        t0, c0 = time.time(), time.process_time()
        if perm is None or pos + args.batch > len(perm):
            perm, pos = torch.randperm(len(ids), generator=gen), 0
        b = perm[pos:pos + args.batch]
        pos += args.batch
        lr = lr_at(step, args.steps, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = model.loss(labels[b], ids[b], generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        step += 1
        new_steps += 1
        vloss = ""
        if step % args.val_every == 0 or step == args.steps:
            vloss = f"{val_loss(model, vi, vl):.5f}"
        w.writerow([step, f"{lr:.3e}", f"{loss.item():.5f}", vloss, f"{time.time() - t0:.3f}",
                    f"{time.process_time() - c0:.3f}"])
        f.flush()
        if step % args.log_every == 0 or vloss:
            log(f"step {step} loss {loss.item():.4f} val {vloss or '-'} lr {lr:.2e} {time.time() - t0:.2f}s/step")
        if time.time() - t_ck > 60 * args.ckpt_min:
            save()
            t_ck = time.time()
    save()
    log(f"saved {ck} at step {step}")


def stage_export(args):
    work = Path(args.work)
    st = torch.load(work / "ar_ckpt.pt", weights_only=False)
    cfg = ARConfig(**st["config"])
    if st.get("factorize"):
        fm = FactorizedARModel(cfg, tokenizer_of(args)["fsq_levels"])
        fm.load_state_dict(st["model"])
        model = fm.materialize()  # the digit parts folded into LlamaGen's two matrices
    else:
        model = ARModel(cfg)
        model.load_state_dict(st["model"])
    out = work / "ar_model"
    extra = {"name": args.name, "classes": CLASSES, "tokenizer": tokenizer_of(args),
             "sampling_hints": {"cfg_scale": args.hint_cfg, "temperature": args.hint_temperature, "top_k": 0, "top_p": 1.0}}
    save_ar(out, model, dtype=args.dtype, extra=extra)
    m2, conf = load_ar(out)
    _, _, vi, vl = load_tokens(args)
    log(f"exported {out} ({(out / 'model.safetensors').stat().st_size:,} bytes, {args.dtype}); "
        f"val loss f32 {val_loss(model, vi, vl):.4f}, stored weights {val_loss(m2, vi, vl):.4f}")
    g = torch.Generator().manual_seed(0)
    ids = generate(m2, torch.arange(cfg.num_classes), cfg.block_size, cfg_scale=args.hint_cfg,
                   temperature=args.hint_temperature, generator=g)
    np.save(out.parent / "ar_samples_ids.npy", ids.numpy().astype(np.uint16))
    log(f"one sample per class -> {out.parent / 'ar_samples_ids.npy'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True)
    ap.add_argument("--stage", choices=["data", "train", "export", "all"], default="all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-seed", type=int, default=1234)
    ap.add_argument("--n-train", type=int, default=30000)
    ap.add_argument("--n-val", type=int, default=256)
    ap.add_argument("--tokenizer", help="data stage: tokenize with this model directory instead of the embedded default (an experiment)")
    ap.add_argument("--data-npz", help="reuse train.py's data cache (<work>/data_s1234_32px_30000_256.npz)")
    ap.add_argument("--flip", type=int, default=1, help="also train on mirrored images (the tokenizer did)")
    ap.add_argument("--arch", help='JSON overrides of ARConfig, e.g. {"dim": 64, "n_layer": 6}')
    ap.add_argument("--class-dropout", type=float, default=0.1)
    ap.add_argument("--factorize", type=int, default=0,
                    help="1: train the embedding and head with shared FSQ-digit parts (FactorizedARModel); the export is an ordinary checkpoint")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--max-new-steps", type=int)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--val-every", type=int, default=200)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--ckpt-min", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", choices=["bf16", "f16", "f32"], default="bf16")
    ap.add_argument("--name", default="flextok-sdk-shapes32-ar")
    ap.add_argument("--hint-cfg", type=float, default=4.0, help="sampling hint: CFG scale (train/cmd/areval picks it)")
    ap.add_argument("--hint-temperature", type=float, default=0.5, help="sampling hint: temperature")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    for s in (["data", "train", "export"] if args.stage == "all" else [args.stage]):
        globals()["stage_" + s](args)


if __name__ == "__main__":
    main()
