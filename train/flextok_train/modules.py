"""Building blocks with the official FlexTok inference semantics (our own implementation).

Conventions (see shared/docs/flextok-architecture.md and tools/reference/NOTES.md):
* LayerNorms are parameter-free, eps 1e-5, computed in float32 (trunk, QK-norm, heads).
* Attention: no biases, QK-LayerNorm over head_dim, scale 8/head_dim (muP), SwiGLU MLP with
  hidden int(2*int(W*mlp_ratio)/3), pre-norm blocks, no final norm.
* adaLN chunk order: gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp;
  modulate(x) = x*(1+scale)+shift.
* Sequences here are dense [B, N, W] (one image per row) with a boolean attention mask, which is
  mathematically identical to the official block-diagonal packed sequence.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def ln32(x, eps=1e-5):
    return F.layer_norm(x.float(), (x.shape[-1],), eps=eps).type_as(x)


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


def swiglu_hidden(dim, mlp_ratio=4.0):
    return int(2 * int(dim * mlp_ratio) / 3)


class Attention(nn.Module):
    def __init__(self, dim, head_dim):
        super().__init__()
        assert dim % head_dim == 0
        self.heads, self.head_dim = dim // head_dim, head_dim
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x, mask=None):
        B, N, W = x.shape
        sh = (B, N, self.heads, self.head_dim)
        q = ln32(self.wq(x).view(sh)).transpose(1, 2)
        k = ln32(self.wk(x).view(sh)).transpose(1, 2)
        v = self.wv(x).view(sh).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=8.0 / self.head_dim)
        return self.proj(o.transpose(1, 2).reshape(B, N, W))


class GatedMlp(nn.Module):
    def __init__(self, dim, mlp_ratio=4.0):
        super().__init__()
        h = swiglu_hidden(dim, mlp_ratio)
        self.fc1 = nn.Linear(dim, h, bias=False)
        self.fc2 = nn.Linear(h, dim, bias=False)
        self.fc3 = nn.Linear(dim, h, bias=False)

    def forward(self, x):
        return self.fc2(F.silu(self.fc1(x)) * self.fc3(x))


class Block(nn.Module):
    def __init__(self, dim, head_dim, mlp_ratio=4.0):
        super().__init__()
        self.attn = Attention(dim, head_dim)
        self.mlp = GatedMlp(dim, mlp_ratio)

    def forward(self, x, mask=None):
        x = x + self.attn(ln32(x), mask)
        return x + self.mlp(ln32(x))


class AdaLNBlock(nn.Module):
    """DiT-style adaLN-zero block; `expansion` modulation sets per image (E=2: patches | registers)."""

    def __init__(self, dim, head_dim, mlp_ratio=4.0, expansion=2):
        super().__init__()
        self.attn = Attention(dim, head_dim)
        self.mlp = GatedMlp(dim, mlp_ratio)
        self.expansion = expansion
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, expansion * 6 * dim, bias=True))

    def forward(self, x, temb, sub_lens, mask=None):
        B, N, W = x.shape
        m = self.adaLN_modulation(temb)  # [B, E*6W]
        if self.expansion == 1:
            m = m[:, None, :]  # same for every token of the image
        else:
            m = m.view(B, self.expansion, 6 * W)
            m = torch.cat([m[:, i : i + 1].expand(B, n, 6 * W) for i, n in enumerate(sub_lens)], dim=1)
        gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp = m.chunk(6, dim=-1)
        x = x + gate_msa * self.attn(modulate(ln32(x), shift_msa, scale_msa), mask)
        return x + gate_mlp * self.mlp(modulate(ln32(x), shift_mlp, scale_mlp))


class Trunk(nn.Module):
    """FlexTransformer: `blocks.{i}` with the official key names."""

    def __init__(self, dim, depth, head_dim, mlp_ratio=4.0, adaLN_expansion=None):
        super().__init__()
        if adaLN_expansion is None:
            self.blocks = nn.ModuleList(Block(dim, head_dim, mlp_ratio) for _ in range(depth))
        else:
            self.blocks = nn.ModuleList(
                AdaLNBlock(dim, head_dim, mlp_ratio, adaLN_expansion) for _ in range(depth))
        self.adaLN = adaLN_expansion is not None

    def forward(self, x, mask=None, temb=None, sub_lens=None):
        for b in self.blocks:
            x = b(x, temb, sub_lens, mask) if self.adaLN else b(x, mask)
        return x


def sincos_2d_table(dim, size):
    """Fixed 2-D sin-cos table [1, dim, S, S]: at (row a, col b) the channels are
    [sin(a w) | cos(a w) | sin(b w) | cos(b w)], w_k = 1/10000^(k/(dim/4)), float32."""
    assert dim % 4 == 0
    q = dim // 4
    omega = 1.0 / (10000.0 ** (torch.arange(q, dtype=torch.float32) / q))
    pos = torch.arange(size, dtype=torch.float32)
    a = pos[:, None, None] * omega  # rows: [S,1,q]
    b = pos[None, :, None] * omega  # cols: [1,S,q]
    t = torch.cat([torch.sin(a).expand(size, size, q), torch.cos(a).expand(size, size, q),
                   torch.sin(b).expand(size, size, q), torch.cos(b).expand(size, size, q)], dim=-1)
    return t.permute(2, 0, 1).unsqueeze(0).contiguous()


class SinCosPosemb(nn.Module):
    """PositionalEmbeddingAdder(posemb_type=sincos, posemb_scaling=absolute): key `posembs`."""

    def __init__(self, dim, size):
        super().__init__()
        self.posembs = nn.Parameter(sincos_2d_table(dim, size), requires_grad=False)

    def forward(self, x):  # x: [B, n, n, W]
        n0, n1 = x.shape[1], x.shape[2]
        return x + self.posembs[:, :, :n0, :n1].permute(0, 2, 3, 1)


class LearnedPosemb1D(nn.Module):
    """PositionalEmbeddingAdder(posemb_type=learnable_sum, max_sizes=[R]): `posembs [1,1,W,R]`."""

    def __init__(self, dim, n):
        super().__init__()
        self.posembs = nn.Parameter(torch.zeros(1, 1, dim, n))
        nn.init.trunc_normal_(self.posembs, std=0.02)

    def forward(self, x):  # [B, n, W]
        n = x.shape[1]
        return x + self.posembs[0][:, :, :n].permute(0, 2, 1)


class PatchEmbedder(nn.Module):
    """2x2 patchify of a channels-last latent, vector index (pr*2+pc)*C + c, then Linear."""

    def __init__(self, channels_in, dim, patch=2):
        super().__init__()
        self.p = patch
        self.patch_proj = nn.Linear(channels_in * patch * patch, dim, bias=True)

    def forward(self, x):  # [B, h, w, C] -> [B, h/p, w/p, W]
        B, h, w, C = x.shape
        p = self.p
        x = x.view(B, h // p, p, w // p, p, C).permute(0, 1, 3, 2, 4, 5).reshape(B, h // p, w // p, p * p * C)
        return self.patch_proj(x)


def unpatchify(x, C, p=2):  # [B, n0, n1, p*p*C] -> [B, n0*p, n1*p, C]
    B, n0, n1, _ = x.shape
    return x.view(B, n0, n1, p, p, C).permute(0, 1, 3, 2, 4, 5).reshape(B, n0 * p, n1 * p, C)


class LinearLayer(nn.Module):
    def __init__(self, dim_in, dim):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim, bias=True)

    def forward(self, x):
        return self.proj(x)


class LinearHead(nn.Module):
    """LN (no affine, f32) then Linear; optional adaLN (shift first, then scale)."""

    def __init__(self, dim, dim_out, adaLN=False):
        super().__init__()
        if adaLN:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim, bias=True))
        self.proj = nn.Linear(dim, dim_out, bias=True)
        self.use_adaLN = adaLN

    def forward(self, x, temb=None):
        x = ln32(x)
        if self.use_adaLN:
            shift, scale = self.adaLN_modulation(temb).chunk(2, dim=-1)
            sh = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
            x = modulate(x, shift.view(sh), scale.view(sh))
        return self.proj(x)


class TimestepEmbedder(nn.Module):
    """256-d [cos | sin] features, max_period 256, frequencies x 1000/max_timestep, then MLP."""

    def __init__(self, dim, max_timestep=1000.0, freq_size=256):
        super().__init__()
        self.max_timestep = max_timestep
        self.freq_size = freq_size
        self.mlp = nn.Sequential(nn.Linear(freq_size, dim, bias=True), nn.SiLU(), nn.Linear(dim, dim, bias=True))

    def forward(self, t):  # [B] in [0, max_timestep]
        half = self.freq_size // 2
        freqs = torch.exp(-math.log(256) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        freqs = freqs * (1000.0 / self.max_timestep)
        args = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class FSQ(nn.Module):
    """Finite scalar quantisation (no parameters, nothing in the state_dict).

    bound: tanh(z + atanh(offset/half_l)) * half_l - offset, half_l = (L-1)(1+1e-3)/2,
    offset 0.5 for even L; codes = round_half_even(bound) / (L//2) with a straight-through
    gradient; ids = sum_d (code_d*hw_d + hw_d) * basis_d, basis = cumprod([1, L0..L4]).
    """

    def __init__(self, levels, eps=1e-3):
        super().__init__()
        lv = torch.tensor(levels, dtype=torch.int32)
        self.register_buffer("_levels", lv, persistent=False)
        basis = torch.cumprod(torch.tensor([1] + list(levels[:-1]), dtype=torch.int64), 0).to(torch.int32)
        self.register_buffer("_basis", basis, persistent=False)
        self.eps = eps
        self.codebook_size = int(torch.prod(lv.long()))

    def bound(self, z):
        half_l = (self._levels - 1) * (1 + self.eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def forward(self, z):
        z = z.float()
        b = self.bound(z)
        q = b + (torch.round(b) - b).detach()  # straight-through
        return q / (self._levels // 2)

    def codes_to_indices(self, zq):
        hw = (self._levels // 2).float()
        return ((zq * hw + hw) * self._basis.float()).sum(dim=-1).to(torch.int32).long()

    def indices_to_codes(self, idx):
        idx = idx.long()[..., None]
        c = (idx // self._basis.long()) % self._levels.long()
        hw = (self._levels // 2).long()
        return ((c - hw).float() / hw.float())
