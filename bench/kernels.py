"""The kernels of the benchmark suite: names, labels, how to run them, and their plot styles.

family tfla: timed through tfla-bench (one process per point); the others through bench/peers/<worker>.
chunk: the chunk size used outside the chunk-size sweep. gate_dtype: the gates' dtype (the model's bytes).
"""

KERNELS = {
    "tfla_sig_norm0": {"family": "tfla", "label": "tfla mLSTMsig (normalize=0)", "variant": "sig",
                       "normalize": 0, "gate_dtype": "bf16", "chunk": 128},
    "tfla_exp": {"family": "tfla", "label": "tfla mLSTMexp", "variant": "exp", "normalize": 1,
                 "gate_dtype": "f32", "chunk": 128},
    "triton_sig_norm0": {"family": "triton", "label": "Triton xl_chunk mLSTMsig (normalize=False)",
                         "worker": ["triton_mlstm.py", "--kernel", "xl", "--variant", "sig", "--normalize", "0"],
                         "variant": "sig", "normalize": 0, "gate_dtype": "bf16", "chunk": 128},
    "triton_exp": {"family": "triton", "label": "Triton xl_chunk mLSTMexp",
                   "worker": ["triton_mlstm.py", "--kernel", "xl", "--variant", "exp"],
                   "variant": "exp", "normalize": 1, "gate_dtype": "f32", "chunk": 128},
    "triton_limit_exp": {"family": "triton", "label": "Triton limit_chunk mLSTMexp",
                         "worker": ["triton_mlstm.py", "--kernel", "limit", "--variant", "exp"],
                         "variant": "exp", "normalize": 1, "gate_dtype": "f32", "chunk": 64},
    "fla_simple_gla": {"family": "fla", "label": "FLA chunk_simple_gla", "worker": ["fla_gla.py"],
                       "variant": "sig", "normalize": 0, "gate_dtype": "f32", "chunk": 64},
    "sdpa_cudnn": {"family": "attention", "label": "cuDNN attention (SDPA), causal",
                   "worker": ["sdpa.py", "--backend", "cudnn"]},
    "sdpa_flash": {"family": "attention", "label": "FlashAttention-2 (SDPA flash), causal",
                   "worker": ["sdpa.py", "--backend", "flash"]},
    "mamba2_ssd": {"family": "mamba2", "label": "Mamba2 SSD chunked scan (Triton)", "worker": ["mamba2_ssd.py"],
                   "gate_dtype": "bf16", "chunk": 256},
}
KERNEL_ORDER = list(KERNELS)
MLSTM_FAMILIES = ("tfla", "triton", "fla", "mamba2")

# Plot styles: one colour and marker per kernel, the same in every figure.
STYLE = {
    "tfla_sig_norm0": {"color": "#d62728", "marker": "o", "ls": "-"},
    "tfla_exp": {"color": "#ff7f0e", "marker": "s", "ls": "-"},
    "triton_sig_norm0": {"color": "#1f77b4", "marker": "o", "ls": "--"},
    "triton_exp": {"color": "#17becf", "marker": "s", "ls": "--"},
    "triton_limit_exp": {"color": "#9467bd", "marker": "^", "ls": "--"},
    "fla_simple_gla": {"color": "#2ca02c", "marker": "D", "ls": "-."},
    "sdpa_cudnn": {"color": "#7f7f7f", "marker": "v", "ls": ":"},
    "sdpa_flash": {"color": "#000000", "marker": "<", "ls": ":"},
    "mamba2_ssd": {"color": "#8c564b", "marker": "P", "ls": "-."},
}


def group_S(cfg, group, kernel):
    """The S values `kernel` runs at in group A or B of a plan config (bench/suite.py plan_config): its own list
    (`<group>_S_by_kernel`), the expensive peers' subset (`<group>_S_peers`), or the group's full list."""
    by_kernel = cfg.get(f"{group}_S_by_kernel") or {}
    if kernel in by_kernel:
        return by_kernel[kernel]
    if kernel in (cfg.get(f"{group}_peers") or ()):
        return cfg[f"{group}_S_peers"]
    return cfg[f"{group}_S"]
