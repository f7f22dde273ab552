"""Model spec: every size and option of a FlexTok model in one dataclass.

The spec builds the modules (model.py) and the official-format config tree (config.py),
and can be read back from such a config tree (from_config), so the same code loads the
project's reference checkpoints for verification.
"""
from dataclasses import dataclass, field, asdict
from typing import List, Optional

FSQ_LEVELS = [8, 8, 8, 5, 5, 5]


@dataclass
class Spec:
    image_size: int = 32
    # diffusers AutoencoderKL (stage 1)
    vae_block_out_channels: List[int] = field(default_factory=lambda: [16, 32, 64])
    vae_layers_per_block: int = 1
    vae_norm_num_groups: int = 8
    latent_channels: int = 4
    scaling_factor: Optional[float] = 1.0  # FlexTok config value (None: use the VAE config's)
    vae_config_scaling_factor: float = 1.0
    # tokenizer (stage 2)
    n_registers: int = 32
    enc_dim: int = 96
    enc_depth: int = 4
    enc_head_dim: int = 32
    dec_dim: int = 96
    dec_depth: int = 4
    dec_head_dim: int = 32
    mlp_ratio: float = 4.0
    adaLN_expansion: int = 2  # 2 = separate modulation for patches and registers
    nullcond: str = "learned"  # "learned" (LearnedNullCond) or "zero" (ZeroNullCond)
    head_adaLN: bool = True
    max_timestep: float = 1.0  # TimestepEmbedder: frequencies x 1000/max_timestep, t in [0,1]
    fsq_levels: List[int] = field(default_factory=lambda: list(FSQ_LEVELS))
    # training-time options that are also written to the config
    cfg_dropout_prob: float = 0.1  # null-condition probability per image
    keep_k_mode: str = "pow2"  # MaskedNestedDropout.size_sampling_mode
    logit_normal_t: bool = True  # MinRFNoiseModule.ln

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.vae_block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.downsample_factor

    @property
    def patch_grid(self) -> int:
        return self.latent_size // 2

    def effective_scaling_factor(self) -> float:
        # Python `or`, as the official StableDiffusionVAE (None or 0.0 fall back).
        return self.scaling_factor or self.vae_config_scaling_factor

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    @classmethod
    def from_config(cls, cfg, vae_cfg):
        """Read a spec back from an official-format config tree + diffusers VAE config."""
        enc = cfg["encoder"]["module_dict"]
        dec = cfg["decoder"]["module_dict"]
        null = dec["dec_latent_dropout"]["_target_"].rsplit(".", 1)[-1]
        return cls(
            image_size=vae_cfg.get("sample_size", 32),
            vae_block_out_channels=list(vae_cfg["block_out_channels"]),
            vae_layers_per_block=vae_cfg["layers_per_block"],
            vae_norm_num_groups=vae_cfg["norm_num_groups"],
            latent_channels=vae_cfg["latent_channels"],
            scaling_factor=cfg["vae"].get("scaling_factor"),
            vae_config_scaling_factor=vae_cfg.get("scaling_factor", 0.18215),
            n_registers=enc["enc_register_module"]["n_max"],
            enc_dim=enc["enc_transformer"]["dim"],
            enc_depth=enc["enc_transformer"]["depth"],
            enc_head_dim=enc["enc_transformer"].get("head_dim", 64),
            dec_dim=dec["dec_transformer"]["dim"],
            dec_depth=dec["dec_transformer"]["depth"],
            dec_head_dim=dec["dec_transformer"].get("head_dim", 64),
            mlp_ratio=dec["dec_transformer"].get("mlp_ratio", 4.0),
            adaLN_expansion=dec["dec_transformer"].get("adaLN_expansion", 1),
            nullcond="learned" if null == "LearnedNullCond" else "zero",
            head_adaLN="adaLN_emb_read_key" in dec["dec_to_patches"],
            max_timestep=dec["dec_time_embedder"].get("max_timestep", 1000.0),
            fsq_levels=list(cfg["regularizer"]["levels"]),
            cfg_dropout_prob=dec["dec_latent_dropout"].get("dropout_prob", 0.0),
            keep_k_mode=dec["dec_nested_dropout"].get("size_sampling_mode", "uniform"),
            logit_normal_t=cfg["flow_matching_noise_module"].get("ln", True),
        )


# The default model of the SDK (see README.md for the FLOP and size budget).
DEFAULT = Spec()
