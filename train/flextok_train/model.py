"""FlexTok model assembled from our modules with the official state_dict layout:

  vae.vae.<diffusers AutoencoderKL>
  encoder.module_dict.{enc_patch_emb, enc_posemb_module, enc_register_module, enc_transformer, enc_to_latents}
  decoder.module_dict.{dec_from_latents, dec_registers_posemb_module, dec_nested_dropout,
                       dec_latent_dropout, dec_noise_patch_emb, dec_patches_posemb_module,
                       dec_time_embedder, dec_transformer, dec_to_patches}
Parameter-free modules of the official module_dict (channel permutes, packers, unpackers) are
plain code here; they own no keys. FSQ and the flow pipeline own no keys either.
"""
import random

import torch
import torch.nn as nn

from .modules import (FSQ, LearnedPosemb1D, LinearHead, LinearLayer, PatchEmbedder, SinCosPosemb,
                      TimestepEmbedder, Trunk, unpatchify)
from .spec import Spec


def vae_diffusers_config(s: Spec):
    n = len(s.vae_block_out_channels)
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * n,
        up_block_types=["UpDecoderBlock2D"] * n,
        block_out_channels=list(s.vae_block_out_channels),
        layers_per_block=s.vae_layers_per_block,
        act_fn="silu",
        latent_channels=s.latent_channels,
        norm_num_groups=s.vae_norm_num_groups,
        sample_size=s.image_size,
        scaling_factor=s.vae_config_scaling_factor,
    )


class VAE(nn.Module):
    """StableDiffusionVAE: latents = posterior mean (or sample) x scaling_factor."""

    def __init__(self, s: Spec):
        super().__init__()
        from diffusers.models import AutoencoderKL

        self.vae = AutoencoderKL(**vae_diffusers_config(s))
        self.spec = s

    @property
    def scale(self):
        return self.spec.effective_scaling_factor()

    def encode(self, images, sample=False):
        dist = self.vae.encode(images).latent_dist
        z = dist.sample() if sample else dist.mode()
        return z * self.scale

    def decode(self, latents):
        return self.vae.decode(latents / self.scale).sample


class Encoder(nn.Module):
    def __init__(self, s: Spec):
        super().__init__()
        W, R = s.enc_dim, s.n_registers
        self.module_dict = nn.ModuleDict()
        self.module_dict["enc_patch_emb"] = PatchEmbedder(s.latent_channels, W)
        self.module_dict["enc_posemb_module"] = SinCosPosemb(W, s.patch_grid)
        reg = nn.Module()
        reg.registers = nn.Parameter(torch.zeros(R, W))
        nn.init.trunc_normal_(reg.registers, std=0.02)
        self.module_dict["enc_register_module"] = reg
        self.module_dict["enc_transformer"] = Trunk(W, s.enc_depth, s.enc_head_dim, s.mlp_ratio)
        self.module_dict["enc_to_latents"] = LinearHead(W, len(s.fsq_levels))
        nn.init.zeros_(self.module_dict["enc_to_latents"].proj.weight)  # weight_init_style zero
        nn.init.zeros_(self.module_dict["enc_to_latents"].proj.bias)
        self.R = R

    def forward(self, latents):
        """latents [B,C,h,w] (scaled) -> register features before FSQ [B,R,len(levels)]."""
        md = self.module_dict
        x = md["enc_patch_emb"](latents.permute(0, 2, 3, 1))
        x = md["enc_posemb_module"](x)
        B, n0, n1, W = x.shape
        P = n0 * n1
        regs = md["enc_register_module"].registers[None].expand(B, self.R, W)
        seq = torch.cat([x.reshape(B, P, W), regs], dim=1)
        N = P + self.R
        # causal_last: patches see patches; register i sees all patches and registers <= i.
        q = torch.arange(N, device=seq.device)
        mask = (q[None, :] < P) | (q[None, :] <= q[:, None])
        seq = md["enc_transformer"](seq, mask=mask)
        return md["enc_to_latents"](seq[:, P:])


class NullCond(nn.Module):
    def __init__(self, dim, learned):
        super().__init__()
        if learned:
            self.nullcond = nn.Parameter(torch.zeros(dim))
            nn.init.trunc_normal_(self.nullcond, std=0.02)
        self.learned = learned

    def forward(self, x, drop):  # drop: bool [B]
        null = self.nullcond if self.learned else torch.zeros(x.shape[-1], dtype=x.dtype, device=x.device)
        return torch.where(drop[:, None, None], null.expand_as(x), x)


class Decoder(nn.Module):
    def __init__(self, s: Spec):
        super().__init__()
        W, R, C = s.dec_dim, s.n_registers, s.latent_channels
        md = self.module_dict = nn.ModuleDict()
        md["dec_from_latents"] = LinearLayer(len(s.fsq_levels), W)
        md["dec_registers_posemb_module"] = LearnedPosemb1D(W, R)
        nd = nn.Module()
        nd.dropout_mask_token = nn.Parameter(torch.zeros(W))
        nn.init.trunc_normal_(nd.dropout_mask_token, std=0.02)
        md["dec_nested_dropout"] = nd
        md["dec_latent_dropout"] = NullCond(W, s.nullcond == "learned")
        md["dec_noise_patch_emb"] = PatchEmbedder(C, W)
        md["dec_patches_posemb_module"] = SinCosPosemb(W, s.patch_grid)
        md["dec_time_embedder"] = TimestepEmbedder(W, s.max_timestep)
        md["dec_transformer"] = Trunk(W, s.dec_depth, s.dec_head_dim, s.mlp_ratio, s.adaLN_expansion)
        md["dec_to_patches"] = LinearHead(W, C * 4, adaLN=s.head_adaLN)
        # adaLN-zero and zero-initialised head, as in the official init styles.
        for b in md["dec_transformer"].blocks:
            nn.init.zeros_(b.adaLN_modulation[1].weight)
            nn.init.zeros_(b.adaLN_modulation[1].bias)
        nn.init.zeros_(md["dec_to_patches"].proj.weight)
        nn.init.zeros_(md["dec_to_patches"].proj.bias)
        if s.head_adaLN:
            nn.init.zeros_(md["dec_to_patches"].adaLN_modulation[1].weight)
            nn.init.zeros_(md["dec_to_patches"].adaLN_modulation[1].bias)
        self.C = C

    def registers(self, quants, keep_k, drop):
        """quants [B,R,6]; keep_k [B] long (R = keep all); drop [B] bool (null condition)."""
        md = self.module_dict
        r = md["dec_registers_posemb_module"](md["dec_from_latents"](quants))
        pos = torch.arange(r.shape[1], device=r.device)
        masked = pos[None, :] >= keep_k[:, None]  # positions >= k are REPLACED by the mask token
        r = torch.where(masked[..., None], md["dec_nested_dropout"].dropout_mask_token.expand_as(r), r)
        return md["dec_latent_dropout"](r, drop)

    def forward(self, x_t, t, quants, keep_k, drop):
        """Velocity v = noise - x0 for x_t [B,C,h,w] at t [B] (t=1: pure noise)."""
        md = self.module_dict
        regs = self.registers(quants, keep_k, drop)
        p = md["dec_patches_posemb_module"](md["dec_noise_patch_emb"](x_t.permute(0, 2, 3, 1)))
        B, n0, n1, W = p.shape
        P, R = n0 * n1, regs.shape[1]
        seq = torch.cat([p.reshape(B, P, W), regs], dim=1)  # full attention within an image
        temb = md["dec_time_embedder"](t)
        seq = md["dec_transformer"](seq, mask=None, temb=temb, sub_lens=(P, R))
        out = md["dec_to_patches"](seq[:, :P].reshape(B, n0, n1, W), temb)
        return unpatchify(out, self.C).permute(0, 3, 1, 2)


class FlexTok(nn.Module):
    def __init__(self, s: Spec):
        super().__init__()
        self.spec = s
        self.vae = VAE(s)
        self.encoder = Encoder(s)
        self.decoder = Decoder(s)
        self.regularizer = FSQ(s.fsq_levels)

    # --- inference, same semantics as FlexTok.tokenize / detokenize ---
    @torch.no_grad()
    def tokenize(self, images):
        return self.tokenize_latents(self.vae.encode(images))

    def tokenize_latents(self, latents):
        quants = self.regularizer(self.encoder(latents))
        return self.regularizer.codes_to_indices(quants), quants

    @torch.no_grad()
    def detokenize(self, ids, keep_k, steps=10, guidance_scale=1.0, noise=None, generator=None):
        """ids [B,R] (padding beyond keep_k is ignored: masked), keep_k [B]."""
        quants = self.regularizer.indices_to_codes(ids)
        lat = self.decode_latents(quants, keep_k, steps, guidance_scale, noise, generator)
        return self.vae.decode(lat)

    @torch.no_grad()
    def decode_latents(self, quants, keep_k, steps=10, guidance_scale=1.0, noise=None, generator=None):
        s = self.spec
        B = quants.shape[0]
        if noise is None:
            noise = torch.randn((B, s.latent_channels, s.latent_size, s.latent_size), generator=generator)
        x = noise.clone()
        keep_k = torch.as_tensor(keep_k, dtype=torch.long).view(B)
        dt = 1.0 / steps
        no_drop = torch.zeros(B, dtype=torch.bool)
        for i in range(steps, 0, -1):
            t = torch.full((B,), i / steps, dtype=torch.float32)
            v = self.decoder(x, t, quants, keep_k, no_drop)
            if guidance_scale != 1.0:
                u = self.decoder(x, t, quants, keep_k, ~no_drop)
                v = u + guidance_scale * (v - u)
            x = x - dt * v
        return x

    # --- training ---
    def sample_keep_k(self, B, gen: random.Random):
        R = self.spec.n_registers
        mode = self.spec.keep_k_mode
        if mode == "pow2":
            choices = [1 << i for i in range(R.bit_length()) if (1 << i) <= R]
            return torch.tensor([gen.choice(choices) for _ in range(B)], dtype=torch.long)
        return torch.tensor([gen.randint(1, R) for _ in range(B)], dtype=torch.long)

    def flow_loss(self, latents, gen: random.Random, tgen: torch.Generator):
        """One training loss: encode -> FSQ -> nested dropout + null cond -> rectified flow."""
        B = latents.shape[0]
        quants = self.regularizer(self.encoder(latents))
        keep_k = self.sample_keep_k(B, gen)
        drop = torch.tensor([gen.random() < self.spec.cfg_dropout_prob for _ in range(B)])
        noise = torch.randn(latents.shape, generator=tgen)
        if self.spec.logit_normal_t:
            t = torch.sigmoid(torch.randn((B,), generator=tgen))
        else:
            t = torch.rand((B,), generator=tgen)
        tt = t.view(B, 1, 1, 1)
        x_t = tt * noise + (1 - tt) * latents
        v = self.decoder(x_t, t, quants, keep_k, drop)
        per = ((v - (noise - latents)) ** 2).mean(dim=(1, 2, 3))
        return per.mean(), dict(keep_k=keep_k, t=t, per=per, quants=quants)
