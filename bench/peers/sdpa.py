#!/usr/bin/env python3
"""Time torch's scaled_dot_product_attention (causal) with one backend on a list of points; JSON lines.

Backends (torch.nn.attention.sdpa_kernel): cudnn (SDPBackend.CUDNN_ATTENTION), flash
(SDPBackend.FLASH_ATTENTION, FlashAttention-2 in torch), math (only for the CPU debug mode). A backend that
cannot run a shape raises, and the row records the message.

The attention runs at the same embedding width as the mLSTM it is compared with: a point gives the mLSTM
shape (H, dk, dv) and attn_heads/attn_dim (the suite uses H * Dv = attn_heads * attn_dim, e.g. 16 x 256
for H=16/Dv=256 and 32 x 128 for H=8/Dv=512, as in ../shared/ANCHORS.md). q, k, v: (B, attn_heads, S,
attn_dim) bf16 ~ randn; fwbw = forward + backward(do), do ~ randn. Method: bench/peers/common.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main():
    ap = common.base_parser(__doc__)
    ap.add_argument("--backend", choices=["cudnn", "flash", "math"], required=True)
    args = ap.parse_args()
    points = common.load_points(args.points)
    name = f"sdpa_{args.backend}"
    base = {"dtype": "bf16", "causal": True}
    try:
        runner = common.Runner(args)
        t = runner.torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
        backend = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                   "math": SDPBackend.MATH}[args.backend]
    except BaseException as e:
        return common.emit_unavailable(name, base, points, e)

    def build(pt, r):
        B, S = pt["B"], pt["S"]
        Ha = pt.get("attn_heads") or pt["H"]
        D = pt.get("attn_dim") or pt["dv"]
        bf = t.bfloat16 if r.cuda else t.float32
        q = common.randn(r, (B, Ha, S, D), bf, requires_grad=True)
        k = common.randn(r, (B, Ha, S, D), bf, requires_grad=True)
        v = common.randn(r, (B, Ha, S, D), bf, requires_grad=True)
        do = common.randn(r, (B, Ha, S, D), bf)

        def fw():
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)

        def fwbw():
            with sdpa_kernel(backend):
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            o.backward(do)

        return common.Setup(fw, fwbw, refresh=[(q, 0.0), (k, 0.0), (v, 0.0), (do, 0.0)], grads=[q, k, v],
                            meta={"attn_heads": Ha, "attn_dim": D}, io_bytes=common.nbytes(q, k, v, do))

    return runner.run(name, points, build, base_fields=base)


if __name__ == "__main__":
    sys.exit(main())
