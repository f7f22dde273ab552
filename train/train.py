#!/usr/bin/env python3
"""FlexTok training recipe (CPU-friendly): stage 1 trains a small diffusers AutoencoderKL,
stage 2 trains the FlexTok encoder (registers, causal register mask, FSQ) and rectified-flow
decoder (nested dropout, null condition) on the frozen VAE's latents, then exports an
official-format checkpoint directory: model.safetensors (+ config in __metadata__),
config.json and vae/config.json.

Seeded and resumable: every stage keeps <work>/<stage>_ckpt.pt (weights, optimizer, EMA, step,
RNG states) and continues from it when rerun; losses go to <work>/<stage>_log.csv.

  python train/train.py --work runs/default --stage all      # vae -> tokenizer -> export
  python train/train.py --work runs/default --stage vae --steps 4000 --time-budget-min 25
  python train/train.py --work runs/default --stage tokenizer --steps 12000
  python train/train.py --work runs/default --stage export --out runs/default/model
See train/README.md.
"""
import argparse
import copy
import csv
import json
import os
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from flextok_train.config import save_checkpoint_dir  # noqa: E402
from flextok_train.data import CLASSES, make_dataset, save_grid, to_tensor  # noqa: E402
from flextok_train.model import FlexTok  # noqa: E402
from flextok_train.spec import Spec  # noqa: E402
from flextok_train.util import log, lr_at  # noqa: E402


def get_data(args, spec):
    """Cached procedural data set: train = first n_train, validation = the next n_val images."""
    path = Path(args.work) / f"data_s{args.data_seed}_{spec.image_size}px_{args.n_train}_{args.n_val}.npz"
    if not path.exists():
        log(f"generating {args.n_train + args.n_val} images ({spec.image_size}px) -> {path}")
        imgs, labels = make_dataset(args.n_train + args.n_val, args.data_seed, spec.image_size)
        np.savez(path, images=imgs, labels=labels)
    d = np.load(path)
    imgs, labels = d["images"], d["labels"]
    n = args.n_train
    return (to_tensor(imgs[:n]), torch.from_numpy(labels[:n]),
            to_tensor(imgs[n:]), torch.from_numpy(labels[n:]))


class Logger:
    def __init__(self, path, fields):
        new = not Path(path).exists()
        self.f = open(path, "a", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=fields)
        if new:
            self.w.writeheader()

    def write(self, row):
        self.w.writerow(row)
        self.f.flush()


def rng_state(py, gen):
    return {"py": py.getstate(), "torch": gen.get_state(), "global": torch.get_rng_state()}


def set_rng_state(st, py, gen):
    py.setstate(st["py"])
    gen.set_state(st["torch"])
    torch.set_rng_state(st["global"])


def save_ckpt(path, obj):
    tmp = str(path) + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def ema_update(ema, model, decay):
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            if pm.requires_grad:
                pe.lerp_(pm, 1 - decay)


# ------------------------------------------------------------------------------- stage 1: VAE
def train_vae(args, spec):
    work = Path(args.work)
    x_train, _, x_val, _ = get_data(args, spec)
    model = FlexTok(spec)
    vae = model.vae.vae
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, betas=(0.9, 0.99), weight_decay=0.0)
    py, gen = random.Random(args.seed), torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    step = 0
    ck = work / "vae_ckpt.pt"
    torch.manual_seed(args.seed)
    vae.load_state_dict(type(vae)(**vae.config).state_dict())  # seeded init
    if ck.exists():
        st = torch.load(ck, weights_only=False)
        vae.load_state_dict(st["vae"])
        opt.load_state_dict(st["opt"])
        set_rng_state(st["rng"], py, gen)
        step = st["step"]
        log(f"vae: resumed at step {step}")
    total, start = args.vae_steps, step
    logger = Logger(work / "vae_log.csv", ["step", "time_s", "lr", "loss", "l1", "mse", "kl"])
    t0, last_save = time.time(), time.time()
    vae.train()
    while step < total:
        if args.time_budget_min and time.time() - t0 > args.time_budget_min * 60:
            log("vae: time budget reached")
            break
        if args.max_new_steps and step - start >= args.max_new_steps:
            break
        idx = torch.randint(0, x_train.shape[0], (args.vae_batch,), generator=gen)
        x = x_train[idx]
        if py.random() < 0.5:
            x = x.flip(3)
        lr = lr_at(step, total, args.vae_lr, 100)
        for g in opt.param_groups:
            g["lr"] = lr
        post = vae.encode(x).latent_dist
        z = post.sample(generator=gen)
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        mse = ((rec - x) ** 2).mean()
        kl = post.kl().mean()
        loss = l1 + mse + args.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if step % args.log_every == 0 or step == start + 1:
            row = dict(step=step, time_s=round(time.time() - t0, 1), lr=f"{lr:.3e}", loss=f"{loss.item():.5f}",
                       l1=f"{l1.item():.5f}", mse=f"{mse.item():.5f}", kl=f"{kl.item():.2f}")
            logger.write(row)
            log(f"vae step {step}/{total} loss {row['loss']} l1 {row['l1']} mse {row['mse']} kl {row['kl']} "
                f"({(time.time() - t0) / (step - start):.3f}s/step)")
        if time.time() - last_save > args.save_every_min * 60:
            save_ckpt(ck, dict(vae=vae.state_dict(), opt=opt.state_dict(), rng=rng_state(py, gen), step=step))
            last_save = time.time()
    save_ckpt(ck, dict(vae=vae.state_dict(), opt=opt.state_dict(), rng=rng_state(py, gen), step=step))
    # Scaling factor: 1 / std of the posterior means over the training set (as SD's 0.18215).
    vae.eval()
    with torch.no_grad():
        zs = torch.cat([vae.encode(x_train[i:i + 256]).latent_dist.mode() for i in range(0, min(4096, len(x_train)), 256)])
        scale = float(1.0 / zs.std())
        rec = vae.decode(vae.encode(x_val[:16]).latent_dist.mode()).sample
        val_mse = float(((rec - x_val[:16]) ** 2).mean())
    save_grid(work / "vae_recon.png", torch.cat([x_val[:16], rec]), 16)
    torch.save(dict(vae=vae.state_dict(), scaling_factor=scale, step=step), work / "vae_final.pt")
    log(f"vae: step {step}, scaling_factor {scale:.4f}, val mse {val_mse:.5f}; wrote vae_final.pt, vae_recon.png")
    return step >= total


# ------------------------------------------------------------------------- stage 2: tokenizer
def load_vae_into(model, work):
    st = torch.load(Path(work) / "vae_final.pt", weights_only=False)
    model.spec.scaling_factor = st["scaling_factor"]
    model.vae.vae.load_state_dict(st["vae"])
    for p in model.vae.parameters():
        p.requires_grad_(False)
    model.vae.eval()


def init_state(d, prefix=""):
    """The state dict of an exported model directory (model.safetensors), keys under prefix."""
    from safetensors.torch import load_file

    sd = load_file(str(Path(d) / "model.safetensors"))
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def init_from(model, d):
    """Loads an exported model (train.py export, or models/default) strictly, VAE included, and
    freezes the VAE: fine-tuning starts from it (--init-from; its spec comes from its config)."""
    model.load_state_dict(init_state(d), strict=True)
    for p in model.vae.parameters():
        p.requires_grad_(False)
    model.vae.eval()
    log(f"tokenizer: initialised from {d}")


def cached_latents(args, model, x, name):
    path = Path(args.work) / f"latents_{name}_{x.shape[0]}.pt"
    if path.exists():
        return torch.load(path)
    log(f"encoding {x.shape[0]} images with the VAE -> {path.name}")
    with torch.no_grad():
        z = torch.cat([model.vae.encode(x[i:i + 256]) for i in range(0, x.shape[0], 256)])
    torch.save(z, path)
    return z


def preview(model, x_val, path, steps, guidance, seed):
    """Rows: original, then detokenized with k = 1, 2, 4, ..., R tokens."""
    model.eval()
    R = model.spec.n_registers
    ks = [1 << i for i in range(R.bit_length()) if (1 << i) <= R]
    x = x_val[:8]
    with torch.no_grad():
        ids, _ = model.tokenize_latents(model.vae.encode(x))
        rows = [x]
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn((x.shape[0], model.spec.latent_channels, model.spec.latent_size, model.spec.latent_size), generator=g)
        for k in ks:
            rows.append(model.detokenize(ids, torch.full((x.shape[0],), k), steps, guidance, noise=noise))
    save_grid(path, torch.cat(rows), x.shape[0])
    return ks


def train_tokenizer(args, spec):
    work = Path(args.work)
    x_train, y_train, x_val, _ = get_data(args, spec)
    torch.manual_seed(args.seed)
    model = FlexTok(spec)  # seeded init of encoder/decoder
    if args.init_from:
        init_from(model, args.init_from)  # fine-tune an exported model (its VAE included)
    else:
        load_vae_into(model, work)
    z_train = cached_latents(args, model, x_train, "train")
    z_flip = cached_latents(args, model, x_train.flip(3), "train_flip")
    params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("vae.")]
    # --aux-class: a small classifier of the first --aux-tokens registers' FSQ codes, trained
    # with the tokenizer (cross-entropy with the image's class, weight --aux-class), so that the
    # first tokens carry the class; it is not part of the exported model.
    aux = None
    if args.aux_class > 0:
        aux = torch.nn.Sequential(torch.nn.Linear(len(spec.fsq_levels) * args.aux_tokens, 64), torch.nn.GELU(),
                                  torch.nn.Linear(64, len(CLASSES)))
        params += list(aux.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)
    py, gen = random.Random(args.seed), torch.Generator().manual_seed(args.seed)
    step = 0
    ck = work / "tokenizer_ckpt.pt"
    if ck.exists():
        st = torch.load(ck, weights_only=False)
        model.load_state_dict(st["model"])
        if aux is not None:
            aux.load_state_dict(st["aux"])
        opt.load_state_dict(st["opt"])
        set_rng_state(st["rng"], py, gen)
        step = st["step"]
        ema = copy.deepcopy(model)
        ema.load_state_dict(st["ema"])
        log(f"tokenizer: resumed at step {step}")
    else:
        ema = copy.deepcopy(model)
    ema.eval()
    total, start = args.steps, step
    fields = ["step", "time_s", "lr", "loss", "loss_k1", "loss_kR", "grad_norm"] + (["aux_loss", "aux_acc"] if aux else [])
    logger = Logger(work / "tokenizer_log.csv", fields)
    t0, last_save = time.time(), time.time()
    R = spec.n_registers
    while step < total:
        if args.time_budget_min and time.time() - t0 > args.time_budget_min * 60:
            log("tokenizer: time budget reached")
            break
        if args.max_new_steps and step - start >= args.max_new_steps:
            break
        model.train()
        idx = torch.randint(0, z_train.shape[0], (args.batch,), generator=gen)
        flip = torch.rand((args.batch,), generator=gen) < 0.5
        z = torch.where(flip[:, None, None, None], z_flip[idx], z_train[idx])
        lr = lr_at(step, total, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, info = model.flow_loss(z, py, gen)
        if aux is not None:
            logits = aux(info["quants"][:, :args.aux_tokens].flatten(1))
            aux_loss = torch.nn.functional.cross_entropy(logits, y_train[idx])
            aux_acc = (logits.argmax(-1) == y_train[idx]).float().mean()
            loss = loss + args.aux_class * aux_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema_update(ema, model, args.ema if step > args.warmup else 0.0)
        step += 1
        if step % args.log_every == 0 or step == start + 1:
            per, k = info["per"].detach(), info["keep_k"]
            l1 = per[k == 1].mean().item() if (k == 1).any() else float("nan")
            lR = per[k == R].mean().item() if (k == R).any() else float("nan")
            row = dict(step=step, time_s=round(time.time() - t0, 1), lr=f"{lr:.3e}", loss=f"{loss.item():.5f}",
                       loss_k1=f"{l1:.5f}", loss_kR=f"{lR:.5f}", grad_norm=f"{gn.item():.3f}")
            if aux is not None:
                row.update(aux_loss=f"{aux_loss.item():.4f}", aux_acc=f"{aux_acc.item():.3f}")
            logger.write(row)
            sps = (time.time() - t0) / (step - start)
            eta = sps * (total - step) / 60
            log(f"tok step {step}/{total} loss {row['loss']} (k=1 {row['loss_k1']}, k={R} {row['loss_kR']}) "
                f"{sps:.3f}s/step eta {eta:.1f} min")
        if args.preview_every and step % args.preview_every == 0:
            preview(ema, x_val, work / f"preview_{step:06d}.png", args.sample_steps, args.guidance, args.seed)
        if time.time() - last_save > args.save_every_min * 60:
            save_ckpt(ck, dict(model=model.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(),
                               rng=rng_state(py, gen), step=step, spec=spec.to_dict(),
                               aux=aux.state_dict() if aux is not None else None))
            last_save = time.time()
    save_ckpt(ck, dict(model=model.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(),
                       rng=rng_state(py, gen), step=step, spec=spec.to_dict(),
                               aux=aux.state_dict() if aux is not None else None))
    ks = preview(ema, x_val, work / "preview_final.png", args.sample_steps, args.guidance, args.seed)
    log(f"tokenizer: step {step}; wrote preview_final.png (rows: input, k={ks})")
    return step >= total


def export(args, spec):
    work = Path(args.work)
    out = Path(args.out or work / "model")
    model = FlexTok(spec)
    st = torch.load(work / "tokenizer_ckpt.pt", weights_only=False)
    model.load_state_dict(st["ema"])  # EMA weights; the VAE part is the stage-1 VAE
    if args.init_from:
        model.vae.load_state_dict(init_state(args.init_from, "vae."))
    else:
        load_vae_into(model, work)
    save_checkpoint_dir(model, out)
    (out / "labels.json").write_text(json.dumps({"classes": CLASSES}, indent=2) + "\n")
    size = (out / "model.safetensors").stat().st_size
    log(f"export: {out} (model.safetensors {size / 1e6:.2f} MB, tokenizer step {st['step']})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="work directory (checkpoints, logs, data cache, previews)")
    ap.add_argument("--out", default=None, help="export directory (default <work>/model)")
    ap.add_argument("--stage", choices=["vae", "tokenizer", "export", "all"], default="all")
    ap.add_argument("--spec", default=None, help="JSON file with Spec overrides (default: the SDK default model)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-seed", type=int, default=1234)
    ap.add_argument("--n-train", type=int, default=30000)
    ap.add_argument("--n-val", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-budget-min", type=float, default=0, help="stop the stage after this long (resume later)")
    ap.add_argument("--max-new-steps", type=int, default=0, help="stop the stage after this many steps (resume later)")
    ap.add_argument("--save-every-min", type=float, default=5)
    ap.add_argument("--log-every", type=int, default=25)
    # stage 1
    ap.add_argument("--vae-steps", type=int, default=1000)
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--kl-weight", type=float, default=1e-6)
    # stage 2
    ap.add_argument("--steps", type=int, default=3600)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--preview-every", type=int, default=1000)
    ap.add_argument("--sample-steps", type=int, default=10)
    ap.add_argument("--guidance", type=float, default=1.5)
    ap.add_argument("--init-from", default=None, help="tokenizer stage: fine-tune this exported model directory (its config is the spec)")
    ap.add_argument("--aux-class", type=float, default=0.0, help="tokenizer stage: weight of the first tokens' class loss (0: off)")
    ap.add_argument("--aux-tokens", type=int, default=1, help="how many first tokens the class loss reads")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    spec = Spec()
    if args.init_from:
        d = Path(args.init_from)
        spec = Spec.from_config(json.loads((d / "config.json").read_text()), json.loads((d / "vae" / "config.json").read_text()))
    elif args.spec:
        spec = Spec.from_dict({**spec.to_dict(), **json.loads(Path(args.spec).read_text())})
    (Path(args.work) / "spec.json").write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
    (Path(args.work) / "args.json").write_text(json.dumps(vars(args), indent=2) + "\n")
    done = True
    if args.stage in ("vae", "all"):
        done = train_vae(args, spec)
    if args.stage in ("tokenizer", "all") and done:
        done = train_tokenizer(args, spec)
    if args.stage in ("export",) or (args.stage == "all" and done):
        export(args, spec)


if __name__ == "__main__":
    main()
