"""End to end: a Hugging Face transformers xLSTM model with random weights gives the same logits, the same greedy
generation and the same training step through tfla (tfla.compat.use_tfla(model)) as through the kernels it
ran before the switch, and tfla.compat.restore(model) brings those back.

The kernels before the switch: on CUDA, mlstm_kernels' Triton kernels (xLSTM-7B's configuration:
"chunkwise--triton_xl_chunk", "native_sequence__triton", step "triton"); these need the `xlstm` package, through
which transformers runs mlstm_kernels (without it, transformers uses its built-in PyTorch kernels, and those are
the reference). On CPU (CI), mlstm_kernels' native PyTorch kernels, switched with native=True.
Configurations: "tiny" (hidden 128, 2 heads) and, on CUDA, "7b2" (xLSTM-7B's shapes cut to 2 layers).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import reference as R
import tfla.compat as tc
from conftest import HAVE_CUDA

transformers = pytest.importorskip("transformers", reason="transformers is not installed")
if not hasattr(transformers, "xLSTMForCausalLM"):
    pytest.skip(f"transformers {transformers.__version__} has no xLSTM model", allow_module_level=True)
from transformers import xLSTMConfig, xLSTMForCausalLM  # noqa: E402


def _external() -> bool:
    from transformers.models.xlstm import modeling_xlstm

    return bool(getattr(modeling_xlstm, "external_xlstm", False))


SHAPES = {
    "tiny": dict(vocab_size=512, hidden_size=128, num_hidden_layers=2, num_heads=2),
    "7b2": dict(vocab_size=50304, hidden_size=4096, num_hidden_layers=2, num_heads=8),  # xLSTM-7B, 2 of 32 blocks
}


def _config(shape: str, device: str, mode: str = "inference") -> xLSTMConfig:
    if device == "cuda":
        kernels = dict(chunkwise_kernel="chunkwise--triton_xl_chunk", sequence_kernel="native_sequence__triton",
                       step_kernel="triton", autocast_kernel_dtype="bfloat16")
    else:
        kernels = dict(chunkwise_kernel="chunkwise--native_autograd", sequence_kernel="native_sequence__native",
                       step_kernel="native", autocast_kernel_dtype="float32")
    return xLSTMConfig(**SHAPES[shape], **kernels, mode=mode, chunk_size=64, inference_state_dtype="float32",
                       return_last_states=True, max_inference_chunksize=16384, weight_mode="single")


def _switch(model, on: bool, device: str):
    if on:
        return tc.use_tfla(model, native=(device == "cpu"))
    return tc.restore(model)


def _greedy(model, ids, n):
    return model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)[:, ids.shape[1]:]


def _first_divergence(a, b):
    for row in range(a.shape[0]):
        diff = (a[row] != b[row]).nonzero()
        if diff.numel():
            return row, int(diff[0])
    return None


def _fp32_gate_triton_reference(monkeypatch):
    """The Triton mLSTMexp kernels get float32 gates (mlstm_kernels 2.0.6's bf16-gate build crashes Triton 3.6,
    bench/peers/triton_mlstm.py): wrap the registry entries the model resolves, for this test only."""
    try:
        from mlstm_kernels.torch import chunkwise, recurrent
    except Exception:  # noqa: BLE001 - no mlstm_kernels: transformers' built-in kernels are the reference
        return
    def upcast(fn, gate_names):
        def wrapped(*args, **kwargs):
            for name in gate_names:
                if isinstance(kwargs.get(name), torch.Tensor):
                    kwargs[name] = kwargs[name].float()
            return fn(*args, **kwargs)
        return wrapped
    if "triton_xl_chunk" in chunkwise.registry:
        monkeypatch.setitem(chunkwise.registry, "triton_xl_chunk", upcast(chunkwise.registry["triton_xl_chunk"], "if"))
    if "triton" in recurrent.registry_step:
        monkeypatch.setitem(recurrent.registry_step, "triton", upcast(recurrent.registry_step["triton"], "if"))


CASES = [("tiny", "cpu")] + ([("tiny", "cuda"), ("7b2", "cuda")] if HAVE_CUDA else [])


@pytest.mark.parametrize("shape,device", CASES, ids=[f"{s}-{d}" for s, d in CASES])
def test_hf_xlstm_end_to_end(shape, device, record, monkeypatch):
    if device == "cuda":
        _fp32_gate_triton_reference(monkeypatch)
    if device == "cuda" and not _external():
        ref_name = "transformers built-in PyTorch kernels (xlstm package not installed)"
    elif device == "cuda":
        ref_name = "mlstm_kernels Triton kernels (via the xlstm package)"
    else:
        ref_name = "mlstm_kernels native kernels" if _external() else "transformers built-in PyTorch kernels"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = xLSTMForCausalLM(_config(shape, device)).to(dtype=dtype).eval()
    B, S, n_new = 2, 100, (32 if device == "cuda" else 12)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, model.config.vocab_size, (B, S), generator=g).to(device)
    info = {"kind": "e2e_hf", "shape": shape, "device": device, "reference": ref_name,
            "transformers": transformers.__version__}
    try:
        # 1) logits
        with torch.no_grad():
            ref_logits = model(ids).logits.float()
            n_rebound = _switch(model, True, device)
            assert n_rebound == model.config.num_hidden_layers, n_rebound
            tfla_logits = model(ids).logits.float()
        info["logits"] = {"rel_l2": R.rel_l2(tfla_logits, ref_logits), "max_abs": R.max_abs(tfla_logits, ref_logits),
                          "ref_max_abs": ref_logits.abs().max().item(),
                          "argmax_agree": (tfla_logits.argmax(-1) == ref_logits.argmax(-1)).float().mean().item()}
        # 2) greedy generation (prefill: chunkwise kernel, then one step kernel call per token)
        with torch.no_grad():
            tok_tfla = _greedy(model, ids, n_new)
            _switch(model, False, device)
            tok_ref = _greedy(model, ids, n_new)
            again = model(ids).logits.float()  # restore() brought the reference kernels back
        info["restored_rel_l2"] = R.rel_l2(again, ref_logits)
        info["tokens_equal"] = bool(torch.equal(tok_tfla, tok_ref))
        div = _first_divergence(tok_tfla, tok_ref)
        if div is not None:  # a near-tie in the reference at the first differing step?
            row, j = div
            with torch.no_grad():
                prefix = torch.cat([ids[row:row + 1], tok_ref[row:row + 1, :j]], dim=1)
                last = model(prefix).logits[0, -1].float()
            top2 = last.topk(2).values
            info["divergence"] = {"row": row, "step": j, "ref_top1_top2_margin": (top2[0] - top2[1]).item()}
        # 3) one training step: loss and gradient norms
        with torch.device(device):
            train = xLSTMForCausalLM(_config(shape, device, mode="train")).to(dtype=dtype)
        train.load_state_dict(model.state_dict())
        train.train()
        ids_train = torch.randint(3, model.config.vocab_size, (B, 128), generator=g).to(device)  # chunk multiple

        def step():
            train.zero_grad(set_to_none=True)
            out = train(ids_train, labels=ids_train, use_cache=False)
            out.loss.backward()
            norms = {n: p.grad.float().norm().item() for n, p in train.named_parameters() if p.grad is not None}
            return out.loss.item(), norms

        loss_ref, norms_ref = step()
        _switch(train, True, device)
        loss_tfla, norms_tfla = step()
        _switch(train, False, device)
        total_ref = sum(v * v for v in norms_ref.values()) ** 0.5
        total_tfla = sum(v * v for v in norms_tfla.values()) ** 0.5
        per_param = {n: abs(norms_tfla[n] - norms_ref[n]) / max(norms_ref[n], 1e-12) for n in norms_ref}
        info["train"] = {"loss_ref": loss_ref, "loss_tfla": loss_tfla, "grad_norm_ref": total_ref,
                         "grad_norm_tfla": total_tfla, "max_param_norm_rel_diff": max(per_param.values()),
                         "n_params_with_grad": len(norms_ref)}
        if device == "cuda":
            # Per parameter, bf16 tfla and bf16 Triton are each compared with the same model in fp32 through
            # mlstm_kernels' native PyTorch kernels (independent of both): a parameter whose gradient is a sum
            # with heavy cancellation (a forget-gate bias: norm 1e-3 against a total of 3) differs by 14% between
            # the two bf16 runs (bench/results/2026-11-26-h100-v2.2), and only the fp32 run says which is closer.
            with torch.device(device):
                exact = xLSTMForCausalLM(_config(shape, "cpu", mode="train")).to(dtype=torch.float32)
            exact.load_state_dict(train.state_dict())
            exact.train()
            exact.zero_grad(set_to_none=True)
            exact(ids_train, labels=ids_train, use_cache=False).loss.backward()
            norms_32 = {n: p.grad.float().norm().item() for n, p in exact.named_parameters() if p.grad is not None}
            del exact
            err = {n: (abs(norms_tfla[n] - norms_32[n]) / max(norms_32[n], 1e-12),
                       abs(norms_ref[n] - norms_32[n]) / max(norms_32[n], 1e-12)) for n in norms_ref}
            # tfla's error at most 2x the Triton kernels' error plus 5% (the accuracy rule's shape)
            excess = {n: e_t - (2.0 * e_r + 0.05) for n, (e_t, e_r) in err.items()}
            worst = max(excess, key=excess.get)
            info["train"]["vs_fp32"] = {"max_excess": excess[worst], "worst_param": worst,
                                        "fp32": norms_32[worst], "tfla": norms_tfla[worst], "triton": norms_ref[worst],
                                        "rel_err_tfla": err[worst][0], "rel_err_triton": err[worst][1],
                                        "max_rel_err_tfla": max(e[0] for e in err.values()),
                                        "max_rel_err_triton": max(e[1] for e in err.values())}
    finally:
        tc.restore()
        record(**info)
    print(json.dumps(info, indent=1))

    low = device == "cuda"  # bf16 model and kernels vs fp32 on CPU
    assert info["logits"]["rel_l2"] < (2e-2 if low else 1e-5), info["logits"]
    assert info["restored_rel_l2"] < (1e-3 if low else 1e-12)
    if not info["tokens_equal"]:
        # Only a genuine near-tie of the reference may flip a greedy token: within the logits' own disagreement.
        tie_tol = 4 * info["logits"]["max_abs"]
        margin = info["divergence"]["ref_top1_top2_margin"]
        assert margin <= tie_tol, f"tokens differ without a near-tie: {info['divergence']}, tol {tie_tol}"
    tr = info["train"]
    assert abs(tr["loss_tfla"] - tr["loss_ref"]) <= (1e-2 if low else 1e-5) * abs(tr["loss_ref"]), tr
    assert abs(tr["grad_norm_tfla"] - tr["grad_norm_ref"]) <= (5e-2 if low else 1e-4) * tr["grad_norm_ref"], tr
    if low:  # per parameter against the fp32 model (see above)
        assert tr["vs_fp32"]["max_excess"] <= 0.0, tr["vs_fp32"]
    else:
        assert tr["max_param_norm_rel_diff"] < 1e-3, tr


BUILTIN_SCRIPT = r"""
import json, sys, torch
import transformers.utils as tu, transformers.utils.import_utils as iu
iu.is_xlstm_available = lambda: False   # make transformers use its built-in kernels even if xlstm is installed
tu.is_xlstm_available = lambda: False
from transformers import xLSTMConfig, xLSTMForCausalLM
from transformers.models.xlstm import modeling_xlstm
assert not modeling_xlstm.external_xlstm
sys.path.insert(0, sys.argv[1])
import reference as R
import tfla.compat as tc
torch.manual_seed(0)
cfg = xLSTMConfig(vocab_size=512, hidden_size=128, num_hidden_layers=2, num_heads=2, mode="inference",
                  chunk_size=16, autocast_kernel_dtype="float32")
m = xLSTMForCausalLM(cfg).eval()
ids = torch.randint(3, 512, (2, 40), generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    ref = m(ids).logits
    gen_ref = m.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    n = tc.use_tfla(m)
    out = m(ids).logits
    gen = m.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    tc.restore(m)
    back = m(ids).logits
print(json.dumps({"rebound": n, "rel_l2": R.rel_l2(out, ref), "tokens_equal": bool(torch.equal(gen, gen_ref)),
                  "restored_equal": bool(torch.equal(back, ref))}))
"""


def test_hf_builtin_kernels_switch_on_cpu(record):
    """transformers' xLSTM without the xlstm package runs its own PyTorch kernels; use_tfla(model) switches
    those too (checked in a subprocess that hides the xlstm package from transformers)."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    res = subprocess.run([sys.executable, "-c", BUILTIN_SCRIPT, os.path.dirname(__file__)], capture_output=True,
                         text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    record(kind="e2e_hf_builtin", **info)
    assert info["rebound"] == 2 and info["rel_l2"] < 1e-5 and info["tokens_equal"] and info["restored_equal"], info
