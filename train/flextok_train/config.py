"""Official-format config tree (hydra `_target_` names of the official classes, module_dict order,
data_dict keys) and the checkpoint writer (safetensors + __metadata__ like the official
save_safetensors: one entry per top-level key, value = Python str() of it)."""
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from .spec import Spec

P = "flextok.model"


def build_config(s: Spec):
    W_e, W_d, C, S, R = s.enc_dim, s.dec_dim, s.latent_channels, s.patch_grid, s.n_registers
    L = len(s.fsq_levels)
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
        "scaling_factor": s.scaling_factor,
        "dtype_override": "fp32",
        "hf_hub_path": "vae",  # relative: <checkpoint dir>/vae/config.json
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
                "per_sample_op": dict(ch_first_to_last),
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
                "depth": s.enc_depth,
                "head_dim": s.enc_head_dim,
                "block_mask_read_key": "enc_block_mask",
                "use_act_checkpoint": False,
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
                "dim_out": L,
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
        "levels": list(s.fsq_levels),
        "drop_quant_p": 0.0,
        "packed_call": True,
    }
    if s.nullcond == "zero":
        nullcond = {
            "_target_": f"{P}.preprocessors.nullcond.ZeroNullCond",
            "read_write_key": "dec_quants",
            "eval_drop_flag_read_key": "eval_dropout_mask",
            "dropout_prob": s.cfg_dropout_prob,
        }
    else:
        nullcond = {
            "_target_": f"{P}.preprocessors.nullcond.LearnedNullCond",
            "read_write_key": "dec_quants",
            "dim": W_d,
            "eval_drop_flag_read_key": "eval_dropout_mask",
            "dropout_prob": s.cfg_dropout_prob,
        }
    E = s.adaLN_expansion
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
    if s.head_adaLN:
        # Per-image [B, 2W] shift|scale over that image's patches (no packing fn).
        to_patches["adaLN_emb_read_key"] = "dec_temb"
    dec = {
        "dec_from_latents": {
            "_target_": f"{P}.preprocessors.linear.LinearLayer",
            "read_key": "enc_registers_quant",
            "write_key": "dec_quants",
            "dim_in": L,
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
            "size_sampling_mode": s.keep_k_mode,
        },
        "dec_latent_dropout": nullcond,
        "dec_noise_channels_to_last": {
            "_target_": f"{P}.utils.dict_ops.PerSampleOp",
            "read_key": "vae_latents_noised",
            "write_key": "dec_vae_latents_noised_channels_last",
            "per_sample_op": dict(ch_first_to_last),
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
            "per_subseq_embs": E == 2,  # E=2 <=> per-subsequence (patches | registers)
        },
        "dec_time_embedder": {
            "_target_": f"{P}.preprocessors.time_embedding.TimestepEmbedder",
            "timesteps_read_key": "timesteps",
            "time_embedding_write_key": "dec_temb",
            "dim": W_d,
            "max_timestep": float(s.max_timestep),
        },
        "dec_transformer": {
            "_target_": f"{P}.trunks.transformers.FlexTransformer",
            "input_seq_read_key": "dec_packed_seq",
            "output_seq_write_key": "dec_packed_seq",
            "dim": W_d,
            "depth": s.dec_depth,
            "head_dim": s.dec_head_dim,
            "block_mask_read_key": "dec_sa_block_mask",
            "adaLN_emb_read_key": "dec_temb",
            "adaLN_packing_fn_read_key": "dec_emb_packing_fn",
            "adaLN_expansion": E,
            "use_act_checkpoint": False,
        },
        "dec_unpacker": {
            "_target_": f"{P}.postprocessors.seq_unpacking.SequenceUnpacker",
            "packed_seq_read_key": "dec_packed_seq",
            "inner_seq_write_keys": ["dec_patches", "dec_quants"],
            "inner_packed_shapes_read_key": "dec_ps_inner",
            "outer_packed_shapes_read_key": "dec_ps_outer",
        },
        "dec_to_patches": to_patches,
        "dec_channels_to_first": {
            "_target_": f"{P}.utils.dict_ops.PerSampleOp",
            "read_key": "vae_latents_reconst_channels_last",
            "write_key": "vae_latents_reconst",
            "per_sample_op": dict(ch_last_to_first),
        },
    }
    if s.mlp_ratio != 4.0:
        encoder["module_dict"]["enc_transformer"]["mlp_ratio"] = s.mlp_ratio
        dec["dec_transformer"]["mlp_ratio"] = s.mlp_ratio
    decoder = {"_target_": f"{P}.utils.wrappers.SequentialModuleDictWrapper", "module_dict": dec}
    noise_module = {
        "_target_": "flextok.flow_matching.noise_modules.MinRFNoiseModule",
        "clean_images_read_key": "vae_latents",
        "noised_images_write_key": "vae_latents_noised",
        "timesteps_write_key": "timesteps",
        "sigmas_write_key": "sigmas",
        "ln": bool(s.logit_normal_t),
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


def save_checkpoint_dir(model, out_dir, dtype=torch.float32):
    """Writes <out_dir>/model.safetensors (weights + config as __metadata__), config.json
    (order preserved) and vae/config.json (diffusers AutoencoderKL config)."""
    out = Path(out_dir)
    (out / "vae").mkdir(parents=True, exist_ok=True)
    config = build_config(model.spec)
    sd = {k: v.detach().to(dtype).contiguous().clone() for k, v in model.state_dict().items()}
    # Like the official save_safetensors: one metadata entry per top-level key, str() of it.
    save_file(sd, str(out / "model.safetensors"), metadata={k: str(v) for k, v in config.items()})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    vae_cfg = dict(model.vae.vae.config)
    vae_cfg = {"_class_name": "AutoencoderKL", **{k: v for k, v in vae_cfg.items() if not k.startswith("_")}}
    import diffusers

    vae_cfg["_diffusers_version"] = diffusers.__version__
    (out / "vae" / "config.json").write_text(json.dumps(vae_cfg, indent=2, sort_keys=True) + "\n")
    return config
