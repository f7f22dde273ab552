"""Trains the evaluation classifier (flextok_train/classifier.py) on the real training images of
the "shapes" set (train split of --data-seed, the images the tokenizer and the AR model train on)
and reports its accuracy on held-out images (the validation split, images n_train.. of the same
seed, which no model trained on). Writes <out>/classifier.safetensors (f32), classifier_log.csv
and classifier.json (accuracy, per-class accuracy, proxy-FID sanity figures).

  nice -n 19 python train/train_classifier.py --out train/eval
"""
import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flextok_train.classifier import ShapesNet, embed, frechet_distance  # noqa: E402
from flextok_train.data import CLASSES, make_dataset, render, to_tensor  # noqa: E402


def heldout(n, seed, n_train):
    imgs, labels = np.empty((n, 32, 32, 3), np.uint8), np.empty(n, np.int64)
    for j in range(n):
        im, labels[j] = render(np.random.Generator(np.random.PCG64([seed, n_train + j])), 32)
        imgs[j] = np.clip(np.round(im * 255), 0, 255).astype(np.uint8)
    return imgs, labels


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=8000, help="training images (first n of the train split)")
    ap.add_argument("--n-heldout", type=int, default=512)
    ap.add_argument("--n-train-split", type=int, default=30000, help="train.py --n-train: where held-out starts")
    ap.add_argument("--data-seed", type=int, default=1234)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    imgs, labels = make_dataset(args.n, args.data_seed, 32)
    himgs, hlabels = heldout(args.n_heldout, args.data_seed, args.n_train_split)
    x, y = to_tensor(imgs), torch.from_numpy(labels)
    hx = to_tensor(himgs)
    print(f"data {time.time() - t0:.0f}s", flush=True)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    model = ShapesNet(len(CLASSES))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * (len(x) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.15)
    log = open(out / "classifier_log.csv", "w", newline="")
    w = csv.writer(log)
    w.writerow(["step", "epoch", "loss", "train_acc", "heldout_acc"])
    step = 0
    for ep in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - args.batch + 1, args.batch):
            b = perm[i:i + args.batch]
            xb = x[b]
            flip = torch.rand(len(b), generator=g) < 0.5  # the classes are mirror-symmetric sets
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            lg, _ = model(xb)
            loss = F.cross_entropy(lg, y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            acc = ""
            if step % 50 == 0 or step == steps:
                acc = f"{(embed(model, hx)[0] == hlabels).mean():.4f}"
                model.train()
                print(f"step {step}/{steps} loss {loss.item():.4f} heldout acc {acc} {time.time() - t0:.0f}s", flush=True)
            w.writerow([step, ep, f"{loss.item():.5f}", f"{(lg.argmax(-1) == y[b]).float().mean().item():.4f}", acc])
            log.flush()
    pred, feats = embed(model, hx)
    acc = float((pred == hlabels).mean())
    per = {c: float((pred[hlabels == i] == i).mean()) for i, c in enumerate(CLASSES)}
    # sanity of the proxy FID: two disjoint halves of the held-out set (the noise floor at this n)
    h = len(feats) // 2
    _, trf = embed(model, x[:len(hx)])
    res = {"heldout_accuracy": acc, "per_class": per, "n_train": args.n, "n_heldout": args.n_heldout,
           "epochs": args.epochs, "params": sum(p.numel() for p in model.parameters()),
           "proxy_fid_heldout_half_vs_half": frechet_distance(feats[:h], feats[h:]),
           "proxy_fid_train_vs_heldout": frechet_distance(trf, feats),
           "seconds": round(time.time() - t0)}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "classifier.safetensors"))
    (out / "classifier.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
