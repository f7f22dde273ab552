"""Class-conditional autoregressive (AR) model over FlexTok token ids: LlamaGen's GPT ("c2i")
with 1-D rotary positions, in our own code. The checkpoint format is docs/ar-checkpoint.md;
the state_dict names are LlamaGen's (autoregressive/models/gpt.py), so a LlamaGen c2i state
dict converts by at most renaming, and ours loads into LlamaGen's module tree.

Semantics (all as LlamaGen unless marked):
* sequence = [class embedding (1 position)] + token embeddings; the logits at position p predict
  token p (teacher forcing: position 0, the class, predicts token 0);
* blocks: h = x + wo(attn(attention_norm(x))); out = h + w2(silu(w1(ffn_norm(h))) * w3(...));
  RMSNorm computes in float32: x * rsqrt(mean(x^2) + eps) * weight; no biases anywhere;
* attention: wqkv gives q (n_head*hd rows), k, v (n_kv_head*hd rows each), stacked in that
  order; rotary on q and k; k/v heads repeated (repeat_interleave) to n_head; causal softmax
  attention with scale 1/sqrt(hd);
* rotary (1-D, LlamaGen's precompute_freqs_cis): pairs (x[2i], x[2i+1]) of a head rotate by
  t * base^(-2i/hd) for token t = 0..T-1; the class position's table is ZERO (cos = sin = 0), so
  its q and k are zero (LlamaGen's rule: the class key always scores 0);
* class_dropout: during training a label becomes the null class (index num_classes, the last
  row of cls_embedding.embedding_table) with that probability.
"""
import math
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


def find_multiple(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - (n % k)


def ffn_hidden(dim: int, multiple_of: int, ffn_dim_multiplier: Optional[float] = None) -> int:
    """LlamaGen's SwiGLU hidden size: find_multiple(int(mult * int(2 * 4 * dim / 3)), multiple_of)."""
    h = int(2 * (4 * dim) / 3)
    if ffn_dim_multiplier is not None:
        h = int(ffn_dim_multiplier * h)
    return find_multiple(h, multiple_of)


@dataclass
class ARConfig:
    dim: int = 64
    n_layer: int = 6
    n_head: int = 4
    n_kv_head: int = 4
    multiple_of: int = 64
    ffn_dim_multiplier: Optional[float] = None
    norm_eps: float = 1e-5
    rope_base: float = 10000.0
    block_size: int = 32          # token positions (= the tokenizer's register count)
    cls_token_num: int = 1
    num_classes: int = 8
    class_dropout: float = 0.1
    vocab_size: int = 64000       # = the tokenizer's codebook size
    initializer_range: float = 0.02
    dropout: float = 0.0          # token/resid/attn dropout in training (LlamaGen: 0.1/0.1/0.0)

    @property
    def head_dim(self):
        return self.dim // self.n_head

    @property
    def hidden(self):
        return ffn_hidden(self.dim, self.multiple_of, self.ffn_dim_multiplier)

    def check(self):
        if self.dim % self.n_head or self.n_head % self.n_kv_head or self.head_dim % 2:
            raise ValueError(f"bad heads: dim {self.dim}, n_head {self.n_head}, n_kv_head {self.n_kv_head}")
        if self.cls_token_num != 1:
            raise ValueError("cls_token_num must be 1 (c2i)")


def rope_table(cfg: ARConfig) -> torch.Tensor:
    """[cls_token_num + block_size, hd/2, 2] (cos, sin), float32; class rows zero (LlamaGen)."""
    n = cfg.head_dim
    freqs = 1.0 / (cfg.rope_base ** (torch.arange(0, n, 2)[: n // 2].float() / n))
    t = torch.arange(cfg.block_size, dtype=torch.float32)
    ang = torch.outer(t, freqs)
    cache = torch.stack([torch.cos(ang), torch.sin(ang)], dim=-1)
    return torch.cat([torch.zeros(cfg.cls_token_num, n // 2, 2), cache])


def apply_rope(x, tab):
    """x [B, S, H, hd]; tab [S, hd/2, 2]."""
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    c = tab[None, :, None, :, 0]
    s = tab[None, :, None, :, 1]
    out = torch.stack([xs[..., 0] * c - xs[..., 1] * s, xs[..., 1] * c + xs[..., 0] * s], dim=-1)
    return out.flatten(3).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, dim, dropout_prob):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + (1 if dropout_prob > 0 else 0), dim)
        self.num_classes, self.dropout_prob = num_classes, dropout_prob

    def forward(self, labels, train, generator=None):
        if train and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0], generator=generator) < self.dropout_prob
            labels = torch.where(drop, self.num_classes, labels)
        return self.embedding_table(labels).unsqueeze(1)


class FeedForward(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.hidden, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.hidden, bias=False)
        self.w2 = nn.Linear(cfg.hidden, cfg.dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.wqkv = nn.Linear(cfg.dim, (cfg.n_head + 2 * cfg.n_kv_head) * hd, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x, tab, cache=None, dropout=0.0):
        """x [B, S, dim]; tab: rotary rows of these S positions; cache: None (full causal
        sequence) or a dict {'k','v'} of [B, n_kv_head, P, hd] past keys/values, updated."""
        cfg = self.cfg
        B, S, _ = x.shape
        hd, kvs = cfg.head_dim, cfg.n_kv_head * cfg.head_dim
        q, k, v = self.wqkv(x).split([cfg.dim, kvs, kvs], dim=-1)
        q = apply_rope(q.view(B, S, cfg.n_head, hd), tab).transpose(1, 2)
        k = apply_rope(k.view(B, S, cfg.n_kv_head, hd), tab).transpose(1, 2)
        v = v.view(B, S, cfg.n_kv_head, hd).transpose(1, 2)
        P = 0
        if cache is not None:
            if "k" in cache:
                P = cache["k"].shape[2]
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        rep = cfg.n_head // cfg.n_kv_head
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        # query i (absolute position P + i) sees keys 0..P+i
        mask = torch.ones(S, P + S, dtype=torch.bool).tril(diagonal=P)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.wo(o.transpose(1, 2).reshape(B, S, cfg.dim))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(self, x, tab, cache=None, dropout=0.0):
        h = x + F.dropout(self.attention(self.attention_norm(x), tab, cache, dropout), dropout, self.training)
        return h + F.dropout(self.feed_forward(self.ffn_norm(h)), dropout, self.training)


class ARModel(nn.Module):
    def __init__(self, cfg: ARConfig):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.cls_embedding = LabelEmbedder(cfg.num_classes, cfg.dim, cfg.class_dropout)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.register_buffer("rope", rope_table(cfg), persistent=False)
        self.apply(self._init)

    def _init(self, m):
        # LlamaGen: normal(0, initializer_range) for Linear and Embedding, zero output head
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, self.cfg.initializer_range)
        if m is getattr(self, "output", None):
            nn.init.zeros_(m.weight)

    def _run(self, h, start, caches=None):
        tab = self.rope[start: start + h.shape[1]]
        drop = self.cfg.dropout if self.training else 0.0
        h = F.dropout(h, drop, self.training)
        for i, layer in enumerate(self.layers):
            h = layer(h, tab, None if caches is None else caches[i], drop)
        return self.output(self.norm(h)).float()

    def forward(self, labels, tokens, generator=None):
        """Training / full-sequence forward: labels [B], tokens [B, S] (S <= block_size - 1:
        the inputs, i.e. ids[:, :-1]) -> logits [B, S + 1, vocab] predicting ids[:, :S + 1]."""
        c = self.cls_embedding(labels, self.training, generator)
        h = torch.cat([c, self.tok_embeddings(tokens)], dim=1) if tokens is not None and tokens.shape[1] else c
        return self._run(h, 0)

    def loss(self, labels, ids, generator=None):
        logits = self(labels, ids[:, :-1], generator)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1))

    # ---- inference with a KV cache (prefill, then one token per step) ----
    def new_cache(self):
        return [dict() for _ in self.layers]

    def prefill(self, labels, caches):
        """Class positions only: labels [B] (null class = num_classes) -> logits [B, vocab] of token 0."""
        return self._run(self.cls_embedding(labels, False), 0, caches)[:, -1]

    def step(self, ids, caches):
        """One token per row: ids [B] at the next position -> logits [B, vocab] of the one after."""
        start = caches[0]["k"].shape[2]
        return self._run(self.tok_embeddings(ids)[:, None], start, caches)[:, -1]


# ---- sampling with LlamaGen's semantics (generate.py) ----
def filter_logits(logits, top_k=0, top_p=1.0):
    """top-k (keep logits >= the k-th largest, ties kept) then top-p (Hugging Face: sort
    descending, drop where the cumulative softmax > p, shifted right by one: the first is always
    kept). Filtered entries become -inf. logits [B, V], modified in a copy."""
    logits = logits.clone()
    if top_k > 0:
        k = min(top_k, logits.shape[-1])
        kth = torch.topk(logits, k)[0][..., -1, None]
        logits[logits < kth] = -float("inf")
    if top_p < 1.0:
        sl, si = torch.sort(logits, descending=True)
        cum = torch.cumsum(F.softmax(sl, dim=-1), dim=-1)
        rm = cum > top_p
        rm[..., 1:] = rm[..., :-1].clone()
        rm[..., 0] = False
        logits[rm.scatter(1, si, rm)] = -float("inf")
    return logits


def pick(logits, temperature=1.0, top_k=0, top_p=1.0, greedy=False, generator=None):
    """LlamaGen's sample(): logits / max(T, 1e-5), filter, softmax, multinomial (or argmax)."""
    logits = logits / max(temperature, 1e-5)
    if top_k > 0 or top_p < 1.0:
        logits = filter_logits(logits, top_k, top_p)
    probs = F.softmax(logits, dim=-1)
    if greedy:
        return torch.topk(probs, 1, dim=-1)[1][:, 0]
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


@torch.no_grad()
def generate(model: ARModel, labels, k, cfg_scale=1.0, cfg_interval=-1, temperature=1.0, top_k=0,
             top_p=1.0, greedy=False, generator=None, on_token=None):
    """labels [B] -> ids [B, k]. CFG when cfg_scale > 1: the batch is [cond rows; null rows] and
    logits = u + (c - u) * s; with cfg_interval >= 0 the decode steps i > cfg_interval (i = 0
    for the second token) use the conditional logits alone (LlamaGen). on_token(n, ids[B])
    is called as each token is produced."""
    model.eval()
    B = labels.shape[0]
    c = model.cfg
    if not 1 <= k <= c.block_size:
        raise ValueError(f"k={k} outside 1..{c.block_size}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= c.num_classes):
        raise ValueError(f"class {labels.tolist()} outside 0..{c.num_classes - 1}")
    if temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
        raise ValueError(f"temperature {temperature} (want >= 0), top_k {top_k} (>= 0), top_p {top_p} (in (0, 1])")
    if cfg_scale > 1.0 and c.class_dropout <= 0:
        raise ValueError("CFG needs the null class row (class_dropout > 0)")
    cfg = cfg_scale > 1.0
    rows = torch.cat([labels, torch.full_like(labels, model.cfg.num_classes)]) if cfg else labels
    caches = model.new_cache()

    def guide(lg, use):
        if not cfg:
            return lg
        c, u = lg[:B], lg[B:]
        return u + (c - u) * cfg_scale if use else c

    out = []
    logits = guide(model.prefill(rows, caches), True)
    tok = pick(logits, temperature, top_k, top_p, greedy, generator)
    out.append(tok)
    if on_token:
        on_token(0, tok)
    use = True
    for i in range(k - 1):
        if cfg_interval > -1 and i > cfg_interval:
            use = False
        x = torch.cat([tok, tok]) if cfg else tok
        logits = guide(model.step(x, caches), use)
        tok = pick(logits, temperature, top_k, top_p, greedy, generator)
        out.append(tok)
        if on_token:
            on_token(i + 1, tok)
    return torch.stack(out, dim=1)


def config_dict(cfg: ARConfig) -> dict:
    return asdict(cfg)


# ---- training-time parametrization: FSQ-digit factorized embedding and head ----
def fsq_digits(levels: List[int]) -> torch.Tensor:
    """[prod(levels), len(levels)] int64: the FSQ digits of every code (the SDK's sdk/fsq basis:
    digit d = (id // prod(levels[:d])) % levels[d])."""
    ids = torch.arange(math.prod(levels))
    out, b = [], 1
    for n in levels:
        out.append((ids // b) % n)
        b *= n
    return torch.stack(out, dim=1)


class FactorizedARModel(ARModel):
    """ARModel whose token embedding and output head are, during training,
        E[c] = tok_embeddings.weight[c] + sum_d digit_emb[d][digit_d(c)]
        W[c] = output.weight[c]         + sum_d digit_out[d][digit_d(c)]
    with the per-code parts free (LlamaGen's tensors) and the digit parts shared by every code
    with that FSQ digit. A 64,000-code vocabulary seen in 60,000 sequences leaves most codes'
    rows with a few dozen examples; the digit parts let one example teach every code that shares
    its digits. `materialize()` folds the digit parts into the two full matrices: the exported
    checkpoint is an ordinary ARModel (LlamaGen layout), the same function of its input."""

    def __init__(self, cfg: ARConfig, levels: List[int]):
        super().__init__(cfg)
        if math.prod(levels) != cfg.vocab_size:
            raise ValueError(f"FSQ levels {levels} give {math.prod(levels)} codes, vocab is {cfg.vocab_size}")
        self.levels = list(levels)
        self.register_buffer("digits", fsq_digits(levels), persistent=False)
        self.digit_emb = nn.ParameterList(nn.Parameter(torch.randn(n, cfg.dim) * cfg.initializer_range) for n in levels)
        self.digit_out = nn.ParameterList(nn.Parameter(torch.zeros(n, cfg.dim)) for n in levels)

    def _sum(self, base, parts):
        w = base
        for d, p in enumerate(parts):
            w = w + p[self.digits[:, d]]
        return w

    def embed_weight(self):
        return self._sum(self.tok_embeddings.weight, self.digit_emb)

    def head_weight(self):
        return self._sum(self.output.weight, self.digit_out)

    def _run(self, h, start, caches=None):
        tab = self.rope[start: start + h.shape[1]]
        drop = self.cfg.dropout if self.training else 0.0
        h = F.dropout(h, drop, self.training)
        for i, layer in enumerate(self.layers):
            h = layer(h, tab, None if caches is None else caches[i], drop)
        return F.linear(self.norm(h), self.head_weight()).float()

    def forward(self, labels, tokens, generator=None):
        c = self.cls_embedding(labels, self.training, generator)
        if tokens is None or not tokens.shape[1]:
            return self._run(c, 0)
        return self._run(torch.cat([c, F.embedding(tokens, self.embed_weight())], dim=1), 0)

    def step(self, ids, caches):
        start = caches[0]["k"].shape[2]
        return self._run(F.embedding(ids, self.embed_weight())[:, None], start, caches)[:, -1]

    @torch.no_grad()
    def materialize(self) -> ARModel:
        m = ARModel(self.cfg)
        sd = {k: v for k, v in self.state_dict().items() if not k.startswith(("digit_emb.", "digit_out."))}
        sd["tok_embeddings.weight"] = self.embed_weight()
        sd["output.weight"] = self.head_weight()
        m.load_state_dict(sd)
        return m.train(self.training)
