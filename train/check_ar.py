"""Checks the AR pieces against the committed references, in the way a Go test will use them:
loads conformance/testdata/ar/tiny through the loader rules (ar_format.load_ar), recomputes the
prefill logits, 3 KV-cache steps, greedy ids (no CFG, CFG 3, CFG 3 with cfg_interval 1) and the
sampling filter, compares them with refs.safetensors, and checks that the loader and the sampler
refuse bad input, and that a --factorize model exports to the same function. Prints ALL OK. (CPU, a few seconds.)

  tools/reference/.venv/bin/python train/check_ar.py
"""
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flextok_train.ar import ARModel, filter_logits, generate  # noqa: E402
from flextok_train.ar_format import ARFormatError, load_ar, parse_config  # noqa: E402

torch.set_num_threads(1)
D = Path(__file__).resolve().parent.parent / "conformance" / "testdata" / "ar"
m, conf = load_ar(D / "tiny")
r = load_file(str(D / "refs.safetensors"))
ok = True


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def check(name, cond, info=""):
    global ok
    print(f"{'ok ' if cond else 'BAD'} {name} {info}")
    ok &= bool(cond)


with torch.no_grad():
    c = m.new_cache()
    e = rel(m.prefill(r["prefill_labels"], c), r["prefill_logits"])
    check("prefill logits", e < 1e-6, f"rel {e:.2e}")
    for i in range(3):
        e = rel(m.step(r["step_ids"][i], c), r["step_logits"][i])
        check(f"step {i + 1} logits (KV cache)", e < 1e-6, f"rel {e:.2e}")
    full = m(r["prefill_labels"], r["step_ids"].T)
    e = rel(full[:, 1:], r["step_logits"].transpose(0, 1))
    check("one causal forward = cached steps", e < 1e-5, f"rel {e:.2e}")
    cond = r["cond_labels"]
    check("greedy k=8 no CFG", torch.equal(generate(m, cond, 8, greedy=True), r["greedy_nocfg"]))
    check("greedy k=8 CFG 3", torch.equal(generate(m, cond, 8, cfg_scale=3.0, greedy=True), r["greedy_cfg"]))
    check("greedy k=8 CFG 3 interval 1",
          torch.equal(generate(m, cond, 8, cfg_scale=3.0, cfg_interval=1, greedy=True), r["greedy_cfg_int1"]))
    kept = torch.isfinite(filter_logits(r["filter_in"] / 0.7, 50, 0.9)).to(torch.uint8)
    check("filter temperature 0.7, top-k 50, top-p 0.9", torch.equal(kept, r["filter_kept"]))
    g = torch.Generator().manual_seed(0)
    s = generate(m, cond, 16, cfg_scale=2.0, temperature=1.0, top_k=100, top_p=0.95, generator=g)
    check("sampling runs, ids in range", s.shape == (3, 16) and s.min() >= 0 and s.max() < conf["vocab_size"])

default = {"digest": "sha256:da4b68e90cbdd5b57689b6821c6ea0b1b367d83ab0f6f5595642d3be4e142785",
           "fsq_levels": [8, 8, 8, 5, 5, 5], "n_registers": 32}
bad = [("tokenizer mismatch", lambda: load_ar(D / "tiny", tokenizer=default)),
       ("format", lambda: parse_config({**conf, "format_version": 2})),
       ("positions", lambda: parse_config({**conf, "positions": "learned"})),
       ("bool as int", lambda: parse_config({**conf, "dim": True})),
       ("NaN", lambda: parse_config({**conf, "norm_eps": float("nan")})),
       ("heads", lambda: parse_config({**conf, "n_kv_head": 3})),
       ("ffn_hidden", lambda: parse_config({**conf, "ffn_hidden": 97})),
       ("vocab != codebook", lambda: parse_config({**conf, "vocab_size": 999})),
       ("block != registers", lambda: parse_config({**conf, "block_size": 15})),
       ("classes", lambda: parse_config({**conf, "classes": ["a"] * 5})),
       ("digest", lambda: parse_config({**conf, "tokenizer": {**conf["tokenizer"], "digest": "da4b"}})),
       ("no tokenizer", lambda: parse_config({k: v for k, v in conf.items() if k != "tokenizer"})),
       ("class out of range", lambda: generate(m, torch.tensor([5]), 4)),
       ("k = 0", lambda: generate(m, torch.tensor([1]), 0)),
       ("k > block", lambda: generate(m, torch.tensor([1]), 17)),
       ("temperature < 0", lambda: generate(m, torch.tensor([1]), 4, temperature=-1.0)),
       ("top-p 0", lambda: generate(m, torch.tensor([1]), 4, top_p=0.0)),
       ("top-k < 0", lambda: generate(m, torch.tensor([1]), 4, top_k=-1))]


def corrupt(edit):
    """A copy of the tiny checkpoint with edit(state_dict) applied, loaded."""
    import shutil
    import tempfile
    from safetensors.torch import save_file
    with tempfile.TemporaryDirectory() as t:
        shutil.copy(D / "tiny" / "config.json", t)
        sd = load_file(str(D / "tiny" / "model.safetensors"))
        edit(sd)
        save_file(sd, str(Path(t) / "model.safetensors"))
        load_ar(t)


bad += [("missing tensor", lambda: corrupt(lambda sd: sd.pop("layers.1.ffn_norm.weight"))),
        ("extra tensor", lambda: corrupt(lambda sd: sd.update({"pos_embeddings.weight": torch.zeros(17, 32)}))),
        ("no null row", lambda: corrupt(lambda sd: sd.update({"cls_embedding.embedding_table.weight": torch.zeros(5, 32)}))),
        ("wrong shape", lambda: corrupt(lambda sd: sd.update({"output.weight": torch.zeros(1000, 31)}))),
        ("integer dtype", lambda: corrupt(lambda sd: sd.update({"norm.weight": torch.ones(32, dtype=torch.int32)}))),
        ("non-finite", lambda: corrupt(lambda sd: sd["norm.weight"].__setitem__(0, float("inf"))))]
for name, fn in bad:
    try:
        fn()
        check(f"refuses {name}", False)
    except (ARFormatError, ValueError) as e:
        check(f"refuses {name}", True, f"({e})")

# --factorize: the trained parametrization and its export (materialize) are the same function,
# and the export is an ordinary ARModel state dict (LlamaGen's names only)
from flextok_train.ar import ARConfig, FactorizedARModel  # noqa: E402
torch.manual_seed(0)
fc = ARConfig(dim=32, n_layer=2, n_head=2, n_kv_head=2, block_size=8, vocab_size=8 * 5 * 5, num_classes=4)
fm = FactorizedARModel(fc, [8, 5, 5]).eval()
for prm in list(fm.digit_out) + [fm.output.weight]:
    torch.nn.init.normal_(prm, 0.0, 0.05)
mm = fm.materialize()
lab, toks = torch.tensor([0, 3]), torch.randint(0, fc.vocab_size, (2, 7))
check("factorized == materialized logits", rel(mm(lab, toks), fm(lab, toks)) == 0.0)
g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
check("factorized == materialized sampled ids", torch.equal(generate(fm, lab, 8, cfg_scale=3, generator=g1),
                                                             generate(mm, lab, 8, cfg_scale=3, generator=g2)))
check("materialized state dict has LlamaGen names only", set(mm.state_dict()) == set(ARModel(fc).state_dict()))
print("ALL OK" if ok else "FAILED")
sys.exit(0 if ok else 1)
