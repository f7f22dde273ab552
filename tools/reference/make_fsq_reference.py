"""FSQ reference data from the official FlexTok FSQ module.

Writes conformance/testdata/fsq/reference.safetensors with latents `z` [N, 6] chosen
near the quantiser's rounding boundaries (where float32 tanh differences could flip an id) and
at random, and the official `quants` [N, 6] and `token_ids` [N] (int64).

Run: tools/reference/.venv/bin/python tools/reference/make_fsq_reference.py
(needs tools/reference/.official on the path; see conformance/testdata/official/README.md).
"""
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".official"))
from flextok.regularizers.quantize_fsq import FSQ  # noqa: E402

OUT = os.path.join(HERE, "..", "..", "conformance", "testdata", "fsq")


def main():
    torch.manual_seed(0)
    levels = [8, 8, 8, 5, 5, 5]
    fsq = FSQ(latents_read_key="z", quants_write_key="q", tokens_write_key="t", levels=levels).eval()
    lv = torch.tensor(levels, dtype=torch.float32)
    half_l = (fsq._levels - 1) * (1 + 1e-3) / 2
    offset = torch.where(fsq._levels % 2 == 0, 0.5, 0.0)
    shift = (offset / half_l).atanh()
    rows = []
    # For each dimension, every rounding boundary b = m + 0.5 of the bounded value, approached
    # from both sides by a few float32 ulps.
    for d in range(6):
        hw = int(levels[d]) // 2
        for m in range(-hw, hw + 1):
            b = torch.tensor(m + 0.5, dtype=torch.float64)
            arg = (b + offset[d].double()) / half_l[d].double()
            if abs(arg) >= 1:
                continue
            z0 = torch.atanh(arg) - shift[d].double()
            z0 = z0.float()
            for k in range(-8, 9):
                z = z0.clone()
                for _ in range(abs(k)):
                    z = torch.nextafter(z, torch.tensor(float("inf") if k > 0 else float("-inf")))
                row = torch.randn(6) * 0.7
                row[d] = z
                rows.append(row)
    rows.append(torch.randn(2048, 6) * 1.5)
    z = torch.cat([r.reshape(-1, 6) for r in rows]).contiguous()
    quants, tokens = fsq.forward_z(z)
    os.makedirs(OUT, exist_ok=True)
    save_file(
        {"z": z, "quants": quants.contiguous(), "token_ids": tokens.contiguous()},
        os.path.join(OUT, "reference.safetensors"),
        metadata={"levels": str(levels), "torch": torch.__version__, "script": "tools/reference/make_fsq_reference.py"},
    )
    print(z.shape[0], "vectors written to", OUT)


if __name__ == "__main__":
    main()
