"""Helpers shared by the recipe's scripts (train.py, train_ar.py)."""
import math
import time


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def lr_at(step, total, base, warmup):
    """Linear warm-up over `warmup` steps, then cosine from base down to 10 % of it at `total`."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))
