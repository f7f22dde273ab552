"""Read and write the AR checkpoint format of docs/ar-checkpoint.md (model.safetensors +
config.json). `load_ar` applies the spec's loader rules (what a loader must refuse) and is the
Python reference for them."""
import json
import math
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .ar import ARConfig, ARModel, ffn_hidden

FORMAT, VERSION = "flextok-ar", 1
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
ARCH_KEYS = ["dim", "n_layer", "n_head", "n_kv_head", "multiple_of", "ffn_dim_multiplier", "norm_eps",
             "rope_base", "block_size", "cls_token_num", "num_classes", "class_dropout", "vocab_size"]
MAX_BYTES = 20_000_000  # the SDK's embedded-model budget (weights)


def config_json(cfg: ARConfig, extra=None) -> dict:
    d = {"format": FORMAT, "format_version": VERSION, "architecture": "llamagen-gpt-c2i",
         "positions": "rope1d"}
    for k in ARCH_KEYS:
        d[k] = getattr(cfg, k)
    d["ffn_hidden"] = cfg.hidden
    d.update(extra or {})
    return d


def save_ar(out, model: ARModel, dtype="bf16", extra=None):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to(DTYPES[dtype]).contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    conf = config_json(model.cfg, extra)
    (out / "config.json").write_text(json.dumps(conf, indent=2) + "\n")
    return conf


class ARFormatError(ValueError):
    pass


def _int(conf, k, lo, hi):
    v = conf.get(k)
    if type(v) is not int or not lo <= v <= hi:
        raise ARFormatError(f"config.json: {k}: {v!r}: want an integer in [{lo}, {hi}]")
    return v


def _num(conf, k, lo, hi, lo_open=False):
    v = conf.get(k)
    if type(v) not in (int, float) or not math.isfinite(v) or not (lo < v if lo_open else lo <= v) or v > hi:
        raise ARFormatError(f"config.json: {k}: {v!r}: want a number in {'(' if lo_open else '['}{lo}, {hi}]")
    return float(v)


def parse_config(conf: dict, tokenizer: dict = None) -> ARConfig:
    """Checks config.json (docs/ar-checkpoint.md "Loader rules") and returns the ARConfig.
    tokenizer: the loaded tokenizer's {digest, fsq_levels, n_registers}, compared when given."""
    if not isinstance(conf, dict):
        raise ARFormatError("config.json: not an object")
    if conf.get("format") != FORMAT or conf.get("format_version") != VERSION:
        raise ARFormatError(f"config.json: format {conf.get('format')!r} version {conf.get('format_version')!r}: want {FORMAT!r} {VERSION}")
    if conf.get("architecture") != "llamagen-gpt-c2i" or conf.get("positions") != "rope1d":
        raise ARFormatError(f"config.json: architecture {conf.get('architecture')!r} / positions {conf.get('positions')!r}: want 'llamagen-gpt-c2i' / 'rope1d'")
    dim = _int(conf, "dim", 2, 65536)
    n_head = _int(conf, "n_head", 1, 4096)
    n_kv = _int(conf, "n_kv_head", 1, n_head)
    if dim % n_head or n_head % n_kv or (dim // n_head) % 2:
        raise ARFormatError(f"config.json: dim {dim}, n_head {n_head}, n_kv_head {n_kv}: want dim % n_head == 0, n_head % n_kv_head == 0, even head size")
    mult = conf.get("ffn_dim_multiplier")
    if mult is not None:
        _num(conf, "ffn_dim_multiplier", 0, 64, lo_open=True)
    cfg = ARConfig(dim=dim, n_layer=_int(conf, "n_layer", 1, 1024), n_head=n_head, n_kv_head=n_kv,
                   multiple_of=_int(conf, "multiple_of", 1, 1 << 20), ffn_dim_multiplier=mult,
                   norm_eps=_num(conf, "norm_eps", 0, 1, lo_open=True),
                   rope_base=_num(conf, "rope_base", 1, 1e12, lo_open=True),
                   block_size=_int(conf, "block_size", 1, 65536), cls_token_num=_int(conf, "cls_token_num", 1, 1),
                   num_classes=_int(conf, "num_classes", 1, 1 << 20),
                   class_dropout=_num(conf, "class_dropout", 0, 1), vocab_size=_int(conf, "vocab_size", 2, 1 << 24))
    if conf.get("ffn_hidden") != cfg.hidden:
        raise ARFormatError(f"config.json: ffn_hidden {conf.get('ffn_hidden')!r}, but the rule gives {cfg.hidden}")
    cl = conf.get("classes")
    if cl is not None and (not isinstance(cl, list) or len(cl) != cfg.num_classes or
                           not all(isinstance(c, str) and c for c in cl) or len(set(cl)) != len(cl)):
        raise ARFormatError(f"config.json: classes: want {cfg.num_classes} distinct non-empty names")
    tk = conf.get("tokenizer")
    if not isinstance(tk, dict):
        raise ARFormatError("config.json: tokenizer: missing (the AR model must name its tokenizer)")
    lv = tk.get("fsq_levels")
    if not isinstance(lv, list) or not lv or not all(type(x) is int and x >= 2 for x in lv):
        raise ARFormatError(f"config.json: tokenizer.fsq_levels: {lv!r}")
    if math.prod(lv) != cfg.vocab_size or tk.get("codebook_size") != cfg.vocab_size:
        raise ARFormatError(f"config.json: vocab_size {cfg.vocab_size}, tokenizer codebook {tk.get('codebook_size')!r}, FSQ product {math.prod(lv)}: must be equal")
    if tk.get("n_registers") != cfg.block_size:
        raise ARFormatError(f"config.json: block_size {cfg.block_size} != tokenizer.n_registers {tk.get('n_registers')!r}")
    dg = tk.get("digest")
    if not (isinstance(dg, str) and dg.startswith("sha256:") and len(dg) == 71 and all(c in "0123456789abcdef" for c in dg[7:])):
        raise ARFormatError(f"config.json: tokenizer.digest {dg!r}: want 'sha256:' and 64 lower-case hex digits")
    if tokenizer is not None:
        for k in ("digest", "fsq_levels", "n_registers"):
            if tokenizer[k] != tk.get(k):
                raise ARFormatError(f"AR model trained for tokenizer {k} {tk.get(k)!r}, loaded tokenizer has {tokenizer[k]!r}")
    return cfg


def expected_shapes(cfg: ARConfig) -> dict:
    hd = cfg.head_dim
    s = {"tok_embeddings.weight": [cfg.vocab_size, cfg.dim],
         "cls_embedding.embedding_table.weight": [cfg.num_classes + (1 if cfg.class_dropout > 0 else 0), cfg.dim],
         "norm.weight": [cfg.dim], "output.weight": [cfg.vocab_size, cfg.dim]}
    for i in range(cfg.n_layer):
        p = f"layers.{i}."
        s[p + "attention_norm.weight"] = [cfg.dim]
        s[p + "attention.wqkv.weight"] = [(cfg.n_head + 2 * cfg.n_kv_head) * hd, cfg.dim]
        s[p + "attention.wo.weight"] = [cfg.dim, cfg.dim]
        s[p + "ffn_norm.weight"] = [cfg.dim]
        s[p + "feed_forward.w1.weight"] = [cfg.hidden, cfg.dim]
        s[p + "feed_forward.w3.weight"] = [cfg.hidden, cfg.dim]
        s[p + "feed_forward.w2.weight"] = [cfg.dim, cfg.hidden]
    return s


def load_ar(d, tokenizer=None):
    """-> (ARModel with float32 weights upcast from the file, config dict)."""
    d = Path(d)
    conf = json.loads((d / "config.json").read_text())
    cfg = parse_config(conf, tokenizer)
    want = expected_shapes(cfg)
    sd = {}
    with safe_open(str(d / "model.safetensors"), "pt") as f:
        got = set(f.keys())
        if got != set(want):
            raise ARFormatError(f"model.safetensors: missing {sorted(set(want) - got)[:5]}, unexpected {sorted(got - set(want))[:5]}")
        for k in want:
            t = f.get_tensor(k)
            if t.dtype not in DTYPES.values():
                raise ARFormatError(f"model.safetensors: {k}: dtype {t.dtype}: want F32, F16 or BF16")
            if list(t.shape) != want[k]:
                raise ARFormatError(f"model.safetensors: {k}: shape {list(t.shape)}, config gives {want[k]}")
            t = t.float()
            if not torch.isfinite(t).all():
                raise ARFormatError(f"model.safetensors: {k}: not finite")
            sd[k] = t
    m = ARModel(cfg)
    m.load_state_dict(sd, strict=True)
    m.eval()
    return m, conf
