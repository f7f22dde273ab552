#!/usr/bin/env python3
"""Reference data for the Go FlexTok engine, made with the OFFICIAL PyTorch code.

Builds several tiny, randomly initialised FlexTok models from the official classes
(apple/ml-flextok, checked out under tools/reference/.official, never committed), with
hydra-style configs shaped like the released ones, saves each exactly as the official
flextok/utils/checkpoint.py:save_safetensors does, and records inputs, intermediate stages
and outputs of tokenize / decoder forward / detokenize / VAE decode.

Usage (from the repository root):
    bash tools/reference/setup.sh            # once: creates tools/reference/.venv
    nice tools/reference/.venv/bin/python tools/reference/make_reference.py
    nice tools/reference/.venv/bin/python tools/reference/make_reference.py --verify-only

Writes conformance/testdata/official/<case>/{model.safetensors,config.json,vae/,reference.safetensors}
and conformance/testdata/official/MANIFEST.json. See conformance/testdata/official/README.md.

CPU-only deviations from the released runtime (numerically equivalent, see NOTES.md):
  * every FlexAttention module gets use_flex_attention=False (SDPA with a boolean mask),
  * every BlockWiseSequencePacker gets return_materialized_mask=True (dense boolean mask
    from the same official mask function instead of a flex BlockMask).
Both are set on the instances after instantiation; the saved configs do not contain them.
"""
import argparse
import os

os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # no compile-worker pool
import copy
import hashlib
import json
import shutil
import tempfile
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OFFICIAL = HERE / ".official"
OUT_ROOT = REPO / "conformance" / "testdata" / "official"
sys.path.insert(0, str(OFFICIAL))

import torch  # noqa: E402
from safetensors.torch import save_file, load_file  # noqa: E402

from flextok.utils.checkpoint import save_safetensors, load_model_from_safetensors  # noqa: E402
from flextok.model.layers.attention import FlexAttention  # noqa: E402
from flextok.model.preprocessors.flex_seq_packing import BlockWiseSequencePacker  # noqa: E402

torch.set_num_threads(2)
torch.use_deterministic_algorithms(True)

FSQ_LEVELS = [8, 8, 8, 5, 5, 5]
P = "flextok.model"  # target prefix


# ----------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------
def build_config(c):
    """Hydra-style FlexTok config, shaped like the released ones (fact sheet §2.3, §3.2, §5.4)."""
    W_e, W_d, C = c["enc_dim"], c["dec_dim"], c["latent_channels"]
    S = c["posemb_size"]
    R = c["n_registers"]
    ch_first_to_last = {"_target_": f"{P}.utils.dict_ops.channels_first_to_last", "_partial_": True}
    ch_last_to_first = {"_target_": f"{P}.utils.dict_ops.channels_last_to_first", "_partial_": True}

    vae = {
        "_target_": "flextok.vae_wrapper.StableDiffusionVAE",
        "images_read_key": "rgb",
        "vae_latents_read_key": "vae_latents_reconst",
        "vae_latents_write_key": "vae_latents",
        "images_reconst_write_key": "rgb_reconst",
        "vae_kl_loss_write_key": "kl_loss",
        "latent_channels": C,
        "scaling_factor": c["scaling_factor"],
        "dtype_override": "fp32",
        "hf_hub_path": "vae",  # relative: resolved against the case directory (see README)
        "sample_posterior": False,
        "frozen": True,
    }
    encoder = {
        "_target_": f"{P}.utils.wrappers.SequentialModuleDictWrapper",
        "module_dict": {
            "enc_channels_to_last": {
                "_target_": f"{P}.utils.dict_ops.PerSampleOp",
                "read_key": "vae_latents",
                "write_key": "enc_vae_latents_channels_last",
                "per_sample_op": ch_first_to_last,
            },
            "enc_patch_emb": {
                "_target_": f"{P}.preprocessors.patching.PatchEmbedder",
                "input_tensor_list_read_key": "enc_vae_latents_channels_last",
                "patches_list_write_key": "enc_vae_latents_patched",
                "n_patches_write_key": "enc_n_patches",
                "patch_sizes": [2, 2],
                "channels_in": C,
                "dim": W_e,
                "flatten_patches": False,
                "weight_init_style": "xavier",
            },
            "enc_posemb_module": {
                "_target_": f"{P}.utils.posembs.PositionalEmbeddingAdder",
                "read_key": "enc_vae_latents_patched",
                "write_key": "enc_vae_latents_patched",
                "dim": W_e,
                "max_sizes": [S, S],
                "posemb_type": "sincos",
                "posemb_scaling": "absolute",
            },
            "enc_register_module": {
                "_target_": f"{P}.preprocessors.registers.Registers1D",
                "input_tensor_list_read_key": "enc_vae_latents_patched",
                "register_sizes_read_write_key": "enc_register_sizes",
                "registers_write_key": "enc_registers",
                "dim": W_e,
                "n_min": R,
                "n_max": R,
                "size_sampling_mode": "uniform",
                "ordering_mode": "nested",
            },
            "enc_seq_packer": {
                "_target_": f"{P}.preprocessors.flex_seq_packing.BlockWiseSequencePacker",
                "input_list_read_keys": ["enc_vae_latents_patched", "enc_registers"],
                "packed_seq_write_key": "enc_packed_seq",
                "block_mask_write_key": "enc_block_mask",
                "inner_packed_shapes_write_key": "enc_ps_inner",
                "outer_packed_shapes_write_key": "enc_ps_outer",
                "mask_mode": "causal_last",
                "pad_to_multiple": 128,
            },
            "enc_transformer": {
                "_target_": f"{P}.trunks.transformers.FlexTransformer",
                "input_seq_read_key": "enc_packed_seq",
                "output_seq_write_key": "enc_packed_seq",
                "dim": W_e,
                "depth": c["enc_depth"],
                "head_dim": c.get("enc_head_dim", c["head_dim"]),
                "block_mask_read_key": "enc_block_mask",
                "use_act_checkpoint": c["act_checkpoint"],
            },
            "enc_unpacker": {
                "_target_": f"{P}.postprocessors.seq_unpacking.SequenceUnpacker",
                "packed_seq_read_key": "enc_packed_seq",
                "inner_seq_write_keys": ["enc_vae_latents_patched", "enc_registers"],
                "inner_packed_shapes_read_key": "enc_ps_inner",
                "outer_packed_shapes_read_key": "enc_ps_outer",
            },
            "enc_to_latents": {
                "_target_": f"{P}.postprocessors.heads.LinearHead",
                "read_key": "enc_registers",
                "write_key": "enc_registers",
                "dim": W_e,
                "dim_out": len(FSQ_LEVELS),
                "use_mup_readout": False,
                "weight_init_style": "zero",
            },
        },
    }
    regularizer = {
        "_target_": "flextok.regularizers.quantize_fsq.FSQ",
        "latents_read_key": "enc_registers",
        "quants_write_key": "enc_registers_quant",
        "tokens_write_key": "tokens",
        "levels": list(FSQ_LEVELS),
        "drop_quant_p": 0.0,
        "packed_call": True,
    }
    if c["nullcond"] == "zero":
        nullcond = {
            "_target_": f"{P}.preprocessors.nullcond.ZeroNullCond",
            "read_write_key": "dec_quants",
            "eval_drop_flag_read_key": "eval_dropout_mask",
            "dropout_prob": 0.2,
        }
    else:
        nullcond = {
            "_target_": f"{P}.preprocessors.nullcond.LearnedNullCond",
            "read_write_key": "dec_quants",
            "dim": W_d,
            "eval_drop_flag_read_key": "eval_dropout_mask",
            "dropout_prob": 0.2,
        }
        if c["nullcond"] == "learned_single":
            # The dropped register sequence of an uncond item becomes ONE [1,1,W] token.
            nullcond["replace_with_single_token"] = True
    E = c["adaLN_expansion"]
    dec_transformer = {
        "_target_": f"{P}.trunks.transformers.FlexTransformer",
        "input_seq_read_key": "dec_packed_seq",
        "output_seq_write_key": "dec_packed_seq",
        "dim": W_d,
        "depth": c["dec_depth"],
        "head_dim": c["head_dim"],
        "block_mask_read_key": "dec_sa_block_mask",
        "adaLN_emb_read_key": "dec_temb",
        "adaLN_packing_fn_read_key": "dec_emb_packing_fn",
        "adaLN_expansion": E,
        "use_act_checkpoint": c["act_checkpoint"],
    }
    if c["repa_layer"] is not None:
        dec_transformer["intermediate_layer_write_key"] = "dec_packed_seq_repa_layer"
        dec_transformer["intermediate_layers"] = [c["repa_layer"]]
    to_patches = {
        "_target_": f"{P}.postprocessors.heads.ToPatchesLinearHead",
        "read_key": "dec_patches",
        "write_key": "vae_latents_reconst_channels_last",
        "dim": W_d,
        "channels_out": C,
        "patch_sizes": [2, 2],
        "use_mup_readout": False,
        "weight_init_style": "zero",
    }
    if c["head_adaLN"]:
        # No packing fn: the head expands the per-image [B, 2W] modulation over that image's patches.
        to_patches["adaLN_emb_read_key"] = "dec_temb"
    dec = {
        "dec_from_latents": {
            "_target_": f"{P}.preprocessors.linear.LinearLayer",
            "read_key": "enc_registers_quant",
            "write_key": "dec_quants",
            "dim_in": len(FSQ_LEVELS),
            "dim": W_d,
        },
        "dec_registers_posemb_module": {
            "_target_": f"{P}.utils.posembs.PositionalEmbeddingAdder",
            "read_key": "dec_quants",
            "write_key": "dec_quants",
            "dim": W_d,
            "max_sizes": [R],
            "posemb_type": "learnable_sum",
            "posemb_scaling": "absolute",
        },
        "dec_nested_dropout": {
            "_target_": f"{P}.preprocessors.token_dropout.MaskedNestedDropout",
            "read_write_key": "dec_quants",
            "dim": W_d,
            "eval_keep_k_read_key": "eval_keep_k",
            "train_keep_k_write_key": "train_keep_k",
            "size_sampling_mode": "uniform",
        },
        "dec_latent_dropout": nullcond,
        "dec_noise_channels_to_last": {
            "_target_": f"{P}.utils.dict_ops.PerSampleOp",
            "read_key": "vae_latents_noised",
            "write_key": "dec_vae_latents_noised_channels_last",
            "per_sample_op": ch_first_to_last,
        },
        "dec_noise_patch_emb": {
            "_target_": f"{P}.preprocessors.patching.PatchEmbedder",
            "input_tensor_list_read_key": "dec_vae_latents_noised_channels_last",
            "patches_list_write_key": "dec_patches",
            "n_patches_write_key": "dec_n_patches",
            "patch_sizes": [2, 2],
            "channels_in": C,
            "dim": W_d,
            "flatten_patches": False,
        },
        "dec_patches_posemb_module": {
            "_target_": f"{P}.utils.posembs.PositionalEmbeddingAdder",
            "read_key": "dec_patches",
            "write_key": "dec_patches",
            "dim": W_d,
            "max_sizes": [S, S],
            "posemb_type": "sincos",
            "posemb_scaling": "absolute",
        },
        "dec_seq_packer": {
            "_target_": f"{P}.preprocessors.flex_seq_packing.BlockWiseSequencePacker",
            "input_list_read_keys": ["dec_patches", "dec_quants"],
            "packed_seq_write_key": "dec_packed_seq",
            "block_mask_write_key": "dec_sa_block_mask",
            "inner_packed_shapes_write_key": "dec_ps_inner",
            "outer_packed_shapes_write_key": "dec_ps_outer",
            "mask_mode": "full",
            "pad_to_multiple": 128,
            "emb_packing_fn_write_key": "dec_emb_packing_fn",
            # E=2 needs per-subsequence embeddings (patches | registers); E=1 needs False.
            "per_subseq_embs": E == 2,
        },
        "dec_time_embedder": {
            "_target_": f"{P}.preprocessors.time_embedding.TimestepEmbedder",
            "timesteps_read_key": "timesteps",
            "time_embedding_write_key": "dec_temb",
            "dim": W_d,
            "max_timestep": c["max_timestep"],
        },
        "dec_transformer": dec_transformer,
        "dec_unpacker": {
            "_target_": f"{P}.postprocessors.seq_unpacking.SequenceUnpacker",
            "packed_seq_read_key": "dec_packed_seq",
            "inner_seq_write_keys": ["dec_patches", "dec_quants"],
            "inner_packed_shapes_read_key": "dec_ps_inner",
            "outer_packed_shapes_read_key": "dec_ps_outer",
        },
    }
    if c["repa_layer"] is not None:
        dec["dec_repa_unpacker"] = {
            "_target_": f"{P}.postprocessors.seq_unpacking.SequenceUnpacker",
            "packed_seq_read_key": "dec_packed_seq_repa_layer",
            "inner_seq_write_keys": ["dec_patches_repa_layer", "dec_quants_repa_layer"],
            "inner_packed_shapes_read_key": "dec_ps_inner",
            "outer_packed_shapes_read_key": "dec_ps_outer",
        }
    dec["dec_to_patches"] = to_patches
    dec["dec_channels_to_first"] = {
        "_target_": f"{P}.utils.dict_ops.PerSampleOp",
        "read_key": "vae_latents_reconst_channels_last",
        "write_key": "vae_latents_reconst",
        "per_sample_op": ch_last_to_first,
    }
    decoder = {"_target_": f"{P}.utils.wrappers.SequentialModuleDictWrapper", "module_dict": dec}
    noise_module = {
        "_target_": "flextok.flow_matching.noise_modules.MinRFNoiseModule",
        "clean_images_read_key": "vae_latents",
        "noised_images_write_key": "vae_latents_noised",
        "timesteps_write_key": "timesteps",
        "sigmas_write_key": "sigmas",
        "ln": False,
    }
    pipeline = {
        "_target_": "flextok.flow_matching.pipelines.MinRFPipeline",
        "_partial_": True,
        "target_sizes_read_key": "vae_latents_sizes",
        "latents_read_key": "enc_registers_quant",
        "timesteps_read_key": "timesteps",
        "noised_images_read_key": "vae_latents_noised",
        "reconst_write_key": "vae_latents_reconst",
        "out_channels": C,
    }
    return {
        "_target_": "flextok.flextok_wrapper.FlexTok",
        "vae": vae,
        "encoder": encoder,
        "decoder": decoder,
        "regularizer": regularizer,
        "flow_matching_noise_module": noise_module,
        "pipeline": pipeline,
    }


def hub_config(config, c):
    """The config.json content: the FlexTok config, plus (if the case asks for it) the SDK's
    top-level extension key "image_size" (the model's own run size in pixels). FlexTokFromHub
    reads only its six named keys, so it ignores the extra key. It is NOT written into the
    safetensors __metadata__: load_model_from_safetensors instantiates the whole metadata dict
    with _target_ FlexTok, whose __init__ rejects unknown keyword arguments (TypeError; checked
    in verify_case)."""
    cfg = dict(config)
    if c.get("sdk_image_size_key"):
        cfg["image_size"] = c["image_size"]
    return cfg


def vae_diffusers_config(c):
    n = len(c["vae_block_out_channels"])
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * n,
        up_block_types=["UpDecoderBlock2D"] * n,
        block_out_channels=list(c["vae_block_out_channels"]),
        layers_per_block=c["vae_layers_per_block"],
        act_fn="silu",
        latent_channels=c["latent_channels"],
        norm_num_groups=c["vae_norm_num_groups"],
        sample_size=c["image_size"],
        scaling_factor=c["vae_config_scaling_factor"],
    )


# Cases. f = 2^(len(vae_block_out_channels)-1); latent grid = image/f; patch grid = latent/2.
CASES = {
    # Smallest: width 32 with 2 heads of 16, E=2, zero null-cond, head without adaLN,
    # batch of 2 with different k per image, padded packed sequences. f32 weights.
    "c1_w32_zero_e2": dict(
        enc_dim=32, dec_dim=32, enc_depth=1, dec_depth=1, head_dim=16,
        adaLN_expansion=2, nullcond="zero", head_adaLN=False, max_timestep=1000.0,
        n_registers=32, latent_channels=4, image_size=32, batch=2,
        vae_block_out_channels=[4, 8], vae_layers_per_block=1, vae_norm_num_groups=2,
        scaling_factor=0.75, vae_config_scaling_factor=0.18215,
        act_checkpoint=False, repa_layer=None, storage_dtype="float32",
    ),
    # Decoder width 64 (2 heads of 32), encoder width 32 (1 head of 32), learned null-cond, head with adaLN, max_timestep 1.0,
    # 16 latent channels as released, act-checkpoint wrappers (key names must be unaffected),
    # VAE scaling factor taken from vae/config.json (FlexTok config has None). f32 weights.
    "c2_w64_learned_t1": dict(
        enc_dim=32, dec_dim=64, enc_depth=1, dec_depth=1, head_dim=32,
        adaLN_expansion=2, nullcond="learned", head_adaLN=True, max_timestep=1.0,
        n_registers=32, latent_channels=16, image_size=16, batch=1,
        vae_block_out_channels=[4, 8], vae_layers_per_block=1, vae_norm_num_groups=4,
        scaling_factor=None, vae_config_scaling_factor=1.5,
        act_checkpoint=True, repa_layer=None, storage_dtype="float32",
    ),
    # adaLN expansion 1 (per_subseq_embs False), depth 2/2, 3 heads of 16, f=4 VAE with
    # 3 blocks and layers_per_block 2 (as released), odd 3x3 patch grid (24 px), batch of 2,
    # REPA intermediate layer + unpacker present, weights stored as bfloat16.
    "c3_bf16_w48_e1_d2": dict(
        enc_dim=48, dec_dim=48, enc_depth=2, dec_depth=2, head_dim=16,
        adaLN_expansion=1, nullcond="learned", head_adaLN=True, max_timestep=1000.0,
        n_registers=16, latent_channels=4, image_size=24, batch=2,
        vae_block_out_channels=[4, 8, 8], vae_layers_per_block=2, vae_norm_num_groups=2,
        scaling_factor=0.5, vae_config_scaling_factor=0.18215,
        act_checkpoint=False, repa_layer=1, storage_dtype="bfloat16",
    ),
    # LearnedNullCond(replace_with_single_token=True): in the uncond pass each image's register
    # sequence becomes ONE token [1,1,W] (packed: 64 patches + 1 token), which with E=2
    # (per_subseq_embs) gets the second (register) modulation. Head with adaLN, batch of 2.
    "c4_w32_nulltok_e2": dict(
        enc_dim=32, dec_dim=32, enc_depth=1, dec_depth=1, head_dim=16,
        adaLN_expansion=2, nullcond="learned_single", head_adaLN=True, max_timestep=1000.0,
        n_registers=32, latent_channels=4, image_size=32, batch=2,
        vae_block_out_channels=[4, 8], vae_layers_per_block=1, vae_norm_num_groups=2,
        scaling_factor=0.6, vae_config_scaling_factor=0.18215,
        act_checkpoint=False, repa_layer=None, storage_dtype="float32",
    ),
    # Run below the size of the positional tables: the sin-cos patch tables of encoder and
    # decoder are 16x16 (64 px at f2, patch 2) but the model runs at 48 px (latent 24, patch
    # grid 12x12), so both tables are cropped. config.json carries the SDK key "image_size": 48,
    # vae/config.json sample_size 48. VAE with 8 GroupNorm groups (channels [8,16]). Batch of 1
    # (keeps the files small: every tensor is 2.25x the size of the 32 px cases).
    "c5_w32_img48_tab64_g8": dict(
        enc_dim=32, dec_dim=32, enc_depth=1, dec_depth=1, head_dim=16,
        adaLN_expansion=2, nullcond="learned", head_adaLN=True, max_timestep=1000.0,
        n_registers=16, latent_channels=4, image_size=48, batch=1,
        vae_block_out_channels=[8, 16], vae_layers_per_block=1, vae_norm_num_groups=8,
        scaling_factor=0.75, vae_config_scaling_factor=0.18215,
        act_checkpoint=False, repa_layer=None, storage_dtype="float32",
        posemb_size=16, sdk_image_size_key=True,
    ),
}
for _c in CASES.values():
    _f = 2 ** (len(_c["vae_block_out_channels"]) - 1)
    _c["latent_size"] = _c["image_size"] // _f
    # Side of the sin-cos patch tables; by default exactly the patch grid of image_size.
    _c["posemb_size"] = _c.pop("posemb_size", _c["latent_size"] // 2)

DETOK_STEPS = 4
GUIDANCE = {"none": (1.0, False), "cfg": (3.0, False), "apg": (3.0, True)}


# ----------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------
def cpu_runtime_patch(model):
    """Numerically equivalent CPU substitutes for flex_attention (see module docstring)."""
    for m in model.modules():
        if isinstance(m, FlexAttention):
            m.use_flex_attention = False
        if isinstance(m, BlockWiseSequencePacker):
            m.return_materialized_mask = True
    return model


def randomise(model, seed, bf16_round):
    """Fill every parameter (also the zero-initialised ones) with small random values.

    The fixed sin-cos tables (requires_grad=False) are left as built by the official code.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad and name.endswith("posembs"):
                pass
            elif name.endswith("registers") or name.endswith("dropout_mask_token") or name.endswith(
                "nullcond"
            ) or name.endswith("posembs"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif "norm" in name.split(".")[-2] and p.ndim == 1:  # GroupNorm affine (VAE)
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
            elif p.ndim >= 2:
                fan_in = p[0].numel()
                std = 1.0 / fan_in**0.5
                if "adaLN_modulation" in name:
                    std *= 0.5
                p.copy_(std * torch.randn(p.shape, generator=g))
            else:  # biases
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            if bf16_round:
                p.copy_(p.to(torch.bfloat16).to(torch.float32))


def stack(lst):
    return torch.cat([x.detach().clone() for x in lst], dim=0).contiguous()


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def official_commit():
    """Commit of the checkout, written by checkout_official.sh."""
    return (OFFICIAL / "COMMIT").read_text().strip()


def synthetic_image(B, H, W):
    """Deterministic smooth test image(s) in [-1, 1]: gradients, a disc and a stripe."""
    ys = torch.linspace(-1, 1, H).view(H, 1).expand(H, W)
    xs = torch.linspace(-1, 1, W).view(1, W).expand(H, W)
    imgs = []
    for b in range(B):
        cx, cy, r = 0.3 - 0.5 * b, -0.2 + 0.3 * b, 0.45
        disc = ((xs - cx) ** 2 + (ys - cy) ** 2 < r * r).float()
        red = 0.8 * xs * (1 - disc) + 0.9 * disc
        green = 0.7 * ys + 0.2 * torch.sin(6.0 * xs + b) - 0.5 * disc
        blue = 0.6 * torch.cos(3.0 * (xs + ys)) * (1 - 0.5 * disc) + 0.3 * (ys > 0.5 - 0.2 * b)
        imgs.append(torch.stack([red, green, blue]).clamp(-1, 1))
    return torch.stack(imgs).contiguous()


def run_modules(wrapper, data_dict, snap):
    """Same loop as SequentialModuleDictWrapper.forward, calling snap(name, data_dict) after
    each module so that intermediate stages can be recorded."""
    for name, module in wrapper.module_dict.items():
        data_dict = module(data_dict)
        snap(name, data_dict)
    return data_dict


# ----------------------------------------------------------------------------------------
# Reference computation (all calls are into the official code)
# ----------------------------------------------------------------------------------------
@torch.no_grad()
def compute_reference(model, c, case_seed):
    B, C, R = c["batch"], c["latent_channels"], c["n_registers"]
    h = c["latent_size"]
    ref = {}
    gen = torch.Generator().manual_seed(case_seed + 1)

    # ---- tokenize (FlexTok.encode path, with stage snapshots) ----
    image = synthetic_image(B, c["image_size"], c["image_size"])
    ref["image"] = image
    dd = {model.vae.images_read_key: image.split(1)}
    dd = model.vae.encode(dd)
    ref["vae_latents"] = stack(dd["vae_latents"])

    def enc_snap(name, d):
        if name == "enc_posemb_module":
            ref["enc_patches_posemb"] = stack(d["enc_vae_latents_patched"])
        elif name == "enc_unpacker":
            ref["enc_trunk_registers"] = stack(d["enc_registers"])
        elif name == "enc_to_latents":
            ref["enc_registers"] = stack(d["enc_registers"])

    dd = run_modules(model.encoder, dd, enc_snap)
    dd = model.regularizer(dd)
    ref["quants"] = stack(dd[model.quants_write_key])
    ref["token_ids"] = stack(dd[model.token_write_key]).to(torch.int64)

    # Cross-check against the public API (FlexTok.tokenize): identical ids.
    ids_api = torch.cat(model.tokenize(image), dim=0)
    assert torch.equal(ids_api, ref["token_ids"]), "tokenize() differs from staged encode"

    # FSQ margin: distance of the bounded value to the nearest rounding boundary.
    fsq = model.regularizer
    bounded = fsq.bound(ref["enc_registers"].float())
    frac = bounded - torch.floor(bounded)
    fsq_margin = float((frac - 0.5).abs().min())

    # ---- decoder forward at several (t, k) ----
    if B == 1:
        ks = [[R], [1], [R // 2 + 1]]
    else:
        ks = [[R, 1], [R // 4, R], [R // 2 + 1, R - 1]]
    ts = [1.0, 0.5, 0.125]
    quant_list = list(ref["quants"].split(1))
    x_t = torch.randn((len(ts), B, C, h, h), generator=gen)
    v_cond, v_uncond = [], []
    for j, (t, k) in enumerate(zip(ts, ks)):
        for uncond in (False, True):
            d = {
                model.quants_write_key: [q.clone() for q in quant_list],
                "eval_keep_k": list(k),
                "timesteps": t * torch.ones(B),  # as MinRFPipeline builds it
                "vae_latents_noised": list(x_t[j].split(1)),
            }
            if uncond:
                d["eval_dropout_mask"] = [True] * B
            d = copy.deepcopy(d)
            tag = "dec0_uncond_" if uncond else "dec0_"

            def dec_snap(name, dd_, j=j, tag=tag, uncond=uncond):
                if j != 0 or (uncond and name != "dec_latent_dropout"):
                    return
                if name == "dec_registers_posemb_module":
                    ref[tag + "registers_posemb"] = stack(dd_["dec_quants"])
                elif name == "dec_latent_dropout":
                    ref[tag + "registers_in"] = stack(dd_["dec_quants"])
                elif name == "dec_patches_posemb_module":
                    ref[tag + "patches_in"] = stack(dd_["dec_patches"])
                elif name == "dec_time_embedder":
                    ref[tag + "temb"] = dd_["dec_temb"].detach().clone()
                elif name == "dec_unpacker":
                    ref[tag + "trunk_patches"] = stack(dd_["dec_patches"])

            d = run_modules(model.decoder, d, dec_snap)
            v = stack(d["vae_latents_reconst"])
            # Cross-check with the wrapper's own forward.
            d2 = {
                model.quants_write_key: [q.clone() for q in quant_list],
                "eval_keep_k": list(k),
                "timesteps": t * torch.ones(B),
                "vae_latents_noised": list(x_t[j].split(1)),
            }
            if uncond:
                d2["eval_dropout_mask"] = [True] * B
            v2 = stack(model.decoder(d2)["vae_latents_reconst"])
            assert torch.equal(v, v2)
            (v_uncond if uncond else v_cond).append(v)
    ref["dec_t"] = torch.tensor(ts, dtype=torch.float32)
    ref["dec_k"] = torch.tensor(ks, dtype=torch.int64)
    ref["dec_x_t"] = x_t.contiguous()
    ref["velocity_cond"] = torch.stack(v_cond).contiguous()
    ref["velocity_uncond"] = torch.stack(v_uncond).contiguous()
    info = {}

    # ---- single-token null condition: make sure the uncond pass really took that path ----
    nullcond = model.decoder.module_dict["dec_latent_dropout"]
    if getattr(nullcond, "replace_with_single_token", False):
        W_d = c["dec_dim"]
        assert tuple(ref["dec0_uncond_registers_in"].shape) == (B, 1, W_d)
        assert torch.equal(ref["dec0_uncond_registers_in"], nullcond.nullcond.view(1, 1, W_d).expand(B, 1, W_d))
        # The same uncond calls with the flag switched off (nullcond written to all R slots).
        nullcond.replace_with_single_token = False
        try:
            v_alt = []
            for j, (t, k) in enumerate(zip(ts, ks)):
                d = {
                    model.quants_write_key: [q.clone() for q in quant_list],
                    "eval_keep_k": list(k),
                    "timesteps": t * torch.ones(B),
                    "vae_latents_noised": list(x_t[j].split(1)),
                    "eval_dropout_mask": [True] * B,
                }
                v_alt.append(stack(model.decoder(d)["vae_latents_reconst"]))
        finally:
            nullcond.replace_with_single_token = True
        v_alt = torch.stack(v_alt)
        diff = (v_alt - ref["velocity_uncond"]).double()
        vu = ref["velocity_uncond"].double()
        per_call = [float(diff[j].norm() / vu[j].norm()) for j in range(len(ts))]
        info["nulltok_flag_off_uncond_velocity"] = {
            "rel_l2": float(diff.norm() / vu.norm()),
            "rel_l2_per_call": per_call,
            "max_abs_diff": float(diff.abs().max()),
            "velocity_uncond_max_abs": float(vu.abs().max()),
        }
        assert min(per_call) > 0.01, f"single-token null cond hardly matters: {per_call}"

    # ---- full detokenize with injected noise ----
    detok_k = [R // 2] if B == 1 else [R // 2, R]
    ids_trunc = [ref["token_ids"][i : i + 1, : detok_k[i]].clone() for i in range(B)]
    noise = torch.randn((B, C, h, h), generator=gen)
    ref["detok_noise"] = noise
    ref["detok_k"] = torch.tensor(detok_k, dtype=torch.int64)
    model.pipeline.noise_read_key = "dec_noise"
    try:
        for gname, (scale, apg) in GUIDANCE.items():
            d = model._prepare_data_dict_for_detokenization(token_ids_list=ids_trunc)
            d["dec_noise"] = [n.clone() for n in noise.split(1)]
            d = model.decode(
                d,
                timesteps=DETOK_STEPS,
                vae_image_sizes=h,
                verbose=False,
                guidance_scale=scale,
                perform_norm_guidance=apg,
            )
            ref[f"detok_{gname}_latents"] = stack(d[model.pipeline.reconst_write_key])
            ref[f"detok_{gname}_image"] = stack(d[model.image_write_key])
    finally:
        model.pipeline.noise_read_key = None
    ref["detok_guidance_scale"] = torch.tensor([GUIDANCE[g][0] for g in GUIDANCE])

    # ---- VAE decode on its own ----
    lat = 0.8 * torch.randn((B, C, h, h), generator=gen)
    ref["vae_decode_in"] = lat
    d = model.vae.decode({model.vae.vae_latents_read_key: list(lat.split(1))})
    ref["vae_decode_out"] = stack(d[model.image_write_key])

    for k_, v_ in ref.items():
        ref[k_] = v_.contiguous()
        if v_.is_floating_point():
            assert v_.dtype == torch.float32, k_
            assert torch.isfinite(v_).all(), k_
    info = {"fsq_min_margin": fsq_margin, **info}
    return ref, info


# ----------------------------------------------------------------------------------------
# Per case
# ----------------------------------------------------------------------------------------
def vae_workdir(case_dir, tmp):
    """A working directory whose vae/ holds the case's diffusers config.json plus weights
    taken from the vae.vae.* entries of model.safetensors (the committed vae/ holds only the
    config: the weights would be an exact duplicate). StableDiffusionVAE(hf_hub_path='vae')
    loads from there; load_state_dict then sets the same weights again."""
    (tmp / "vae").mkdir(parents=True, exist_ok=True)
    shutil.copy(case_dir / "vae" / "config.json", tmp / "vae" / "config.json")
    sd = load_file(str(case_dir / "model.safetensors"))
    vae_sd = {k[len("vae.vae."):]: v.float().contiguous() for k, v in sd.items() if k.startswith("vae.vae.")}
    save_file(vae_sd, str(tmp / "vae" / "diffusion_pytorch_model.safetensors"))
    return tmp


def load_official(case_dir):
    """Official load path: load_model_from_safetensors (instantiate from __metadata__,
    strict load_state_dict, .eval()). hf_hub_path 'vae' resolves against the cwd."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(vae_workdir(case_dir, Path(tmp)))
        try:
            model = load_model_from_safetensors(
                str(case_dir / "model.safetensors"), device="cpu", to_eval=True
            )
        finally:
            os.chdir(cwd)
    return cpu_runtime_patch(model)


def make_case(name, c, seed):
    from diffusers.models import AutoencoderKL
    from hydra.utils import instantiate

    case_dir = OUT_ROOT / name
    if case_dir.exists():
        shutil.rmtree(case_dir)
    (case_dir / "vae").mkdir(parents=True)
    config = build_config(c)

    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        # Tiny diffusers VAE, referenced through the official hf_hub_path argument.
        torch.manual_seed(seed)
        AutoencoderKL(**vae_diffusers_config(c)).save_pretrained(Path(tmp) / "vae")
        shutil.copy(Path(tmp) / "vae" / "config.json", case_dir / "vae" / "config.json")
        os.chdir(tmp)
        try:
            torch.manual_seed(seed)
            model = instantiate(copy.deepcopy(config))
        finally:
            os.chdir(cwd)
    model = cpu_runtime_patch(model).eval()
    randomise(model, seed, bf16_round=c["storage_dtype"] == "bfloat16")

    # Save exactly like flextok/utils/checkpoint.py (config as __metadata__, str() per key).
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if c["storage_dtype"] == "bfloat16":
        sd = {k: v.to(torch.bfloat16) for k, v in sd.items()}
    save_safetensors(sd, str(case_dir / "model.safetensors"), metadata_dict=config)
    # The HF-mixin style config (order preserved: see NOTES.md about sort_keys).
    (case_dir / "config.json").write_text(json.dumps(hub_config(config, c), indent=2) + "\n")

    ref, info = compute_reference(model, c, seed)
    save_file(ref, str(case_dir / "reference.safetensors"), metadata={"case": name})
    return model, ref, info


def verify_case(name, c, seed):
    """Reload with the official load path, rerun everything, compare bitwise."""
    case_dir = OUT_ROOT / name
    model = load_official(case_dir)
    ref_saved = load_file(str(case_dir / "reference.safetensors"))
    ref_new, _ = compute_reference(model, c, seed)
    assert set(ref_saved) == set(ref_new), (set(ref_saved) ^ set(ref_new))
    bad = [k for k in ref_saved if not torch.equal(ref_saved[k], ref_new[k])]
    if bad:
        raise SystemExit(f"{name}: reload mismatch in {bad}")
    # Also the HF-hub path: FlexTokFromHub(config.json) + strict load of the same weights.
    from flextok.flextok_wrapper import FlexTokFromHub

    cfg = json.loads((case_dir / "config.json").read_text())
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(vae_workdir(case_dir, Path(tmp)))
        try:
            hub = FlexTokFromHub(cfg)
        finally:
            os.chdir(cwd)
    sd = load_file(str(case_dir / "model.safetensors"))
    hub.load_state_dict(sd, strict=True)
    hub = cpu_runtime_patch(hub.eval())
    ids = torch.cat(hub.tokenize(ref_saved["image"]), dim=0)
    assert torch.equal(ids, ref_saved["token_ids"]), f"{name}: FlexTokFromHub tokenize differs"
    if c.get("sdk_image_size_key"):
        assert cfg.get("image_size") == c["image_size"], f"{name}: config.json lacks image_size"
        # The same key in __metadata__ would break load_model_from_safetensors (hub_config).
        from safetensors.torch import safe_open

        with safe_open(str(case_dir / "model.safetensors"), "pt") as f:
            md = dict(f.metadata())
        assert "image_size" not in md
        with tempfile.TemporaryDirectory() as tmp:
            probe = Path(tmp) / "probe.safetensors"
            save_file(load_file(str(case_dir / "model.safetensors")), str(probe),
                      metadata={**md, "image_size": str(c["image_size"])})
            os.chdir(vae_workdir(case_dir, Path(tmp)))
            try:
                load_model_from_safetensors(str(probe), device="cpu")
            except Exception as e:  # hydra InstantiationException wrapping a TypeError
                assert "unexpected keyword argument 'image_size'" in str(e), e
            else:
                raise AssertionError("load_model_from_safetensors accepted image_size in __metadata__")
            finally:
                os.chdir(cwd)
    print(f"{name}: verified bitwise ({len(ref_saved)} tensors)")


def model_content_sha256(path):
    """sha256 that ignores the order of the __metadata__ entries: safetensors writes that map in
    a per-process random order, so the file bytes (and plain sha256) change between runs while
    tensors and parsed metadata do not. Hash = sha256 over the header JSON with sorted keys at the
    top level of __metadata__ and of the tensor table, followed by the raw data section."""
    b = Path(path).read_bytes()
    n = int.from_bytes(b[:8], "little")
    header = json.loads(b[8 : 8 + n])
    md = header.pop("__metadata__", {})
    canon = json.dumps({"__metadata__": dict(sorted(md.items())), **dict(sorted(header.items()))})
    return hashlib.sha256(canon.encode() + b[8 + n :]).hexdigest()


def summarise(name, c, ref, info):
    case_dir = OUT_ROOT / name
    st = load_file(str(case_dir / "model.safetensors"))
    files = {}
    for p in sorted(case_dir.rglob("*")):
        if p.is_file():
            files[str(p.relative_to(case_dir))] = {"bytes": p.stat().st_size, "sha256": sha256(p)}
    files["model.safetensors"]["content_sha256"] = model_content_sha256(case_dir / "model.safetensors")
    return {
        "config_summary": {k: v for k, v in c.items()},
        "model_tensors": len(st),
        "model_params": int(sum(v.numel() for v in st.values())),
        "storage_dtype": c["storage_dtype"],
        **info,
        "detok_steps": DETOK_STEPS,
        "detok_guidance": {g: {"guidance_scale": s, "perform_norm_guidance": a}
                           for g, (s, a) in GUIDANCE.items()},
        "reference_tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                              for k, v in ref.items()},
        "files": files,
    }


def main():
    global OUT_ROOT
    ap = argparse.ArgumentParser()
    ap.add_argument("--verify-only", action="store_true")
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--out-root", type=Path, default=OUT_ROOT,
                    help="write/verify under this directory instead (e.g. to compare a full rerun)")
    args = ap.parse_args()
    OUT_ROOT = args.out_root.resolve()
    import diffusers
    import safetensors

    seeds = {name: 1000 + 17 * i for i, name in enumerate(CASES)}
    if not args.verify_only:
        manifest = {
            "generator": "tools/reference/make_reference.py",
            "official_repo": "apple/ml-flextok",
            "official_commit": official_commit(),
            "versions": {
                "python": sys.version.split()[0],
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "safetensors": safetensors.__version__,
            },
            "cpu_runtime_patch": "FlexAttention.use_flex_attention=False (SDPA), "
            "BlockWiseSequencePacker.return_materialized_mask=True",
            "cases": {},
        }
        # With --cases, the entries of the other cases are kept from the existing MANIFEST.json
        # (their files are not rewritten); that needs the same official code and versions.
        old_path = OUT_ROOT / "MANIFEST.json"
        old = json.loads(old_path.read_text()) if old_path.exists() else {"cases": {}}
        kept = [n for n in CASES if n not in args.cases and n in old["cases"]]
        if kept:
            for key in ("official_commit", "versions", "cpu_runtime_patch"):
                if old.get(key) != manifest[key]:
                    raise SystemExit(f"MANIFEST.json {key} differs from this run: regenerate all cases")
        new = {}
        for name in args.cases:
            c = CASES[name]
            _, ref, info = make_case(name, c, seeds[name])
            new[name] = summarise(name, c, ref, info)
            print(f"{name}: written")
        manifest["cases"] = {n: new[n] if n in new else old["cases"][n]
                             for n in CASES if n in new or n in kept}
        OUT_ROOT.mkdir(parents=True, exist_ok=True)
        (OUT_ROOT / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for name in args.cases:
        verify_case(name, CASES[name], seeds[name])


if __name__ == "__main__":
    main()
