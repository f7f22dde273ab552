"""Makes the AR conformance references in this directory (issue #12, item 7) from the PyTorch
recipe's model (train/flextok_train/ar.py) and writer (ar_format.py):

  tiny/model.safetensors, tiny/config.json   a random-weight AR checkpoint in the format of
      docs/ar-checkpoint.md, BF16 weights (the format the shipped model uses), reduced vocabulary
      1000 and a FICTIONAL tokenizer (FSQ [8,5,5,5], 16 registers, a made-up digest) so that the
      file stays small: with the real 64,000-code vocabulary even width 8 would be 2 MB. No real
      tokenizer matches it; tests load it without a tokenizer (or with this fictional identity).
  refs.safetensors   float32 / int64 reference tensors (names below), computed in float32 from
      the weights as stored (BF16 upcast exactly to float32).

Tensors in refs.safetensors (B = 3 conditional rows, classes cond_labels; CFG batches are
[cond rows; null rows], the null class = num_classes):
  cond_labels        int64 [3]
  prefill_labels     int64 [6]       cond_labels then 3 x null class
  prefill_logits     f32   [6, V]    logits of token 0 (prefill of the class position)
  step_ids           int64 [3, 6]    the ids fed at steps 1..3 (one token per row per step)
  step_logits        f32   [3, 6, V] logits after each step, KV cache of the prefill + steps
                                     (the script checks them against one causal forward)
  greedy_nocfg       int64 [3, 8]    greedy k=8, no CFG
  greedy_cfg         int64 [3, 8]    greedy k=8, CFG scale 3.0 (cfg_interval -1: every token)
  greedy_cfg_logits  f32   [8, 3, V] the guided logits u + 3(c - u) that picked each token
  greedy_cfg_int1    int64 [3, 8]    greedy k=8, CFG 3.0 with cfg_interval 1 (tokens 0..2 guided)
  filter_in          f32   [2, V]    logits; temperature 0.7, top_k 50, top_p 0.9 (LlamaGen order)
  filter_kept        uint8 [2, V]    1 where the id survives top-k then top-p, else 0
  min_greedy_gap     f32   [1]       smallest top-1 minus top-2 logit over the greedy decisions
                                     (ties would make greedy ids ambiguous; it is well above 1e-5)

  tools/reference/.venv/bin/python conformance/testdata/ar/make_ar_reference.py
"""
import hashlib
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "train"))
from flextok_train.ar import ARConfig, ARModel, filter_logits, generate  # noqa: E402
from flextok_train.ar_format import load_ar, save_ar  # noqa: E402

torch.set_num_threads(1)
torch.manual_seed(20261207)
cfg = ARConfig(dim=32, n_layer=2, n_head=4, n_kv_head=2, multiple_of=32, norm_eps=1e-5, rope_base=10000.0,
               block_size=16, num_classes=5, class_dropout=0.1, vocab_size=1000)
m = ARModel(cfg)
with torch.no_grad():
    for n, p in m.named_parameters():
        if n.endswith("norm.weight"):
            p.copy_(1 + 0.2 * torch.randn_like(p))
        elif "embed" in n:
            p.copy_(torch.randn_like(p))
        else:
            p.copy_(torch.randn_like(p) / p.shape[1] ** 0.5)
fake = {"name": "conformance-fictional-fsq1000",
        "digest": "sha256:" + hashlib.sha256(b"flextok-ar conformance: fictional tokenizer").hexdigest(),
        "fsq_levels": [8, 5, 5, 5], "codebook_size": 1000, "n_registers": 16}
save_ar(HERE / "tiny", m, dtype="bf16", extra={
    "name": "conformance-tiny-ar", "classes": ["c0", "c1", "c2", "c3", "c4"], "tokenizer": fake,
    "sampling_hints": {"cfg_scale": 3.0, "temperature": 1.0, "top_k": 0, "top_p": 1.0}})
m, _ = load_ar(HERE / "tiny", tokenizer=fake)  # the stored (BF16) weights, as float32; checks the rules
V, N = cfg.vocab_size, cfg.num_classes

r = {}
with torch.no_grad():
    cond = torch.tensor([0, 3, 4])
    rows = torch.cat([cond, torch.full_like(cond, N)])
    caches = m.new_cache()
    r["cond_labels"], r["prefill_labels"] = cond, rows
    r["prefill_logits"] = m.prefill(rows, caches)
    g = torch.Generator().manual_seed(1)
    step_ids = torch.randint(0, V, (3, 6), generator=g)
    r["step_ids"] = step_ids
    r["step_logits"] = torch.stack([m.step(step_ids[i], caches) for i in range(3)])
    full = m(rows, step_ids.T)
    err = (full - torch.cat([r["prefill_logits"][:, None], r["step_logits"].transpose(0, 1)], 1)).abs().max()
    print("cache vs full forward: max abs diff", err.item())
    assert err < 1e-5

    r["greedy_nocfg"] = generate(m, cond, 8, greedy=True)
    guided = []
    gaps = []

    # record the guided logits by re-running the CFG loop by hand (same as generate())
    c2 = m.new_cache()
    lg = m.prefill(rows, c2)
    ids = []
    for i in range(8):
        gl = lg[3:] + (lg[:3] - lg[3:]) * 3.0
        guided.append(gl)
        tok = gl.argmax(-1)
        ids.append(tok)
        if i < 7:
            lg = m.step(torch.cat([tok, tok]), c2)
    r["greedy_cfg"] = generate(m, cond, 8, cfg_scale=3.0, greedy=True)
    assert torch.equal(r["greedy_cfg"], torch.stack(ids, 1)), "hand loop != generate()"
    r["greedy_cfg_logits"] = torch.stack(guided)
    r["greedy_cfg_int1"] = generate(m, cond, 8, cfg_scale=3.0, cfg_interval=1, greedy=True)

    # greedy decisions' margins (no-CFG and CFG runs)
    def margin(lgs):
        t2 = torch.topk(lgs, 2, dim=-1)[0]
        return (t2[..., 0] - t2[..., 1]).min().item()
    gaps.append(margin(r["greedy_cfg_logits"]))
    c3 = m.new_cache()
    lg = m.prefill(cond, c3)
    for i in range(8):
        gaps.append(margin(lg))
        if i < 7:
            lg = m.step(lg.argmax(-1), c3)
    r["min_greedy_gap"] = torch.tensor([min(gaps)])

    fin = torch.randn(2, V, generator=g) * 3
    r["filter_in"] = fin
    kept = filter_logits(fin / 0.7, 50, 0.9)
    r["filter_kept"] = torch.isfinite(kept).to(torch.uint8)

r = {k: v.contiguous() for k, v in r.items()}
save_file(r, str(HERE / "refs.safetensors"), metadata={"made_by": "make_ar_reference.py", "torch": torch.__version__})
man = {p.name if p.parent == HERE else f"tiny/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
       for p in sorted([HERE / "refs.safetensors", HERE / "tiny" / "model.safetensors", HERE / "tiny" / "config.json"])}
(HERE / "MANIFEST.json").write_text(json.dumps({"sha256": man, "torch": torch.__version__}, indent=2) + "\n")
print("greedy no CFG", r["greedy_nocfg"].tolist())
print("greedy CFG 3", r["greedy_cfg"].tolist())
print("greedy CFG 3 interval 1", r["greedy_cfg_int1"].tolist())
print("min greedy gap", r["min_greedy_gap"].item(), "kept per row", r["filter_kept"].sum(1).tolist())
print("prefill logits abs max", r["prefill_logits"].abs().max().item())
