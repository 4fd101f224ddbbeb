"""tfla: Tiled Flash Linear Attention kernels for the xLSTM mLSTM cell, for PyTorch.

    import tfla
    h = tfla.mlstm(q, k, v, i, f)                                  # mLSTMexp, (B, H, S, D) tensors
    h, (c, n, m) = tfla.mlstm(q, k, v, i, f, variant="sig", return_last_state=True)

    import tfla.compat
    tfla.compat.use_tfla()          # mlstm_kernels / xlstm / transformers' xLSTM now run on tfla
    tfla.compat.restore()           # and back

The binding is ctypes over the C ABI of libtfla.so (include/tfla/tfla.h), registered as torch.library custom
ops `tfla::mlstm_fwd` / `tfla::mlstm_bwd` with fake kernels and autograd: no torch C++ extension, so one
build works with every torch >= 2.4.
"""
from . import _lib
from ._lib import TflaError, TflaInvalidArgument, TflaNotSupported
from .ops import default_chunk_size, mlstm

__version__ = "0.1.0"

has_cuda = _lib.has_cuda
library_path = str(_lib.library_path)


def library_version() -> str:
    """Version of the loaded libtfla (the C library)."""
    return _lib.version()


__all__ = ["mlstm", "default_chunk_size", "has_cuda", "library_path", "library_version", "TflaError",
           "TflaInvalidArgument", "TflaNotSupported", "__version__"]
