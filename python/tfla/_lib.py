"""ctypes binding of the C ABI (include/tfla/tfla.h) of libtfla.so.

The structs below mirror tfla.h field by field. When the library reports its own layout (the symbol
`tfla_py_abi_layout`, built into the package's libtfla), loading checks every size and offset against it and
refuses a mismatch, so a stale or foreign library can never be fed misaligned parameters.

The library is found next to this file (the wheel installs it there); TFLA_LIBRARY=/path/to/libtfla.so
overrides that (development builds).
"""
from __future__ import annotations

import ctypes
import os
import pathlib

__all__ = [
    "Tensor", "Problem", "FwdParams", "BwdParams", "lib", "library_path", "TflaError", "TflaInvalidArgument",
    "TflaNotSupported", "check", "has_cuda", "version", "abi_layout",
    "DTYPE_F32", "DTYPE_BF16", "DTYPE_F16", "VARIANT_EXP", "VARIANT_SIG", "DEVICE_CPU", "DEVICE_CUDA",
]

# enum values of tfla.h
SUCCESS, ERROR_INVALID_ARGUMENT, ERROR_NOT_SUPPORTED, ERROR_WORKSPACE_TOO_SMALL, ERROR_CUDA, ERROR_INTERNAL = range(6)
DTYPE_F32, DTYPE_BF16, DTYPE_F16 = 0, 1, 2
VARIANT_EXP, VARIANT_SIG = 0, 1
DEVICE_CPU, DEVICE_CUDA = 0, 1


class Tensor(ctypes.Structure):
    """tfla_tensor: a strided view; element strides in the order of the documented shape; data NULL = absent."""
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int32), ("stride", ctypes.c_int64 * 4)]


class Problem(ctypes.Structure):
    """tfla_mlstm_problem."""
    _fields_ = [
        ("batch", ctypes.c_int64), ("heads", ctypes.c_int64), ("seq_len", ctypes.c_int64),
        ("dim_qk", ctypes.c_int64), ("dim_v", ctypes.c_int64),
        ("variant", ctypes.c_int32), ("normalize", ctypes.c_int32),
        ("scale", ctypes.c_float), ("eps", ctypes.c_float),
        ("chunk_size", ctypes.c_int64),
        ("device_type", ctypes.c_int32), ("device_index", ctypes.c_int32),
    ]


FWD_TENSORS = ("q", "k", "v", "igate", "fgate", "c0", "n0", "m0", "h", "c_last", "n_last", "m_last",
               "m_token", "den_token")
BWD_TENSORS = ("q", "k", "v", "igate", "fgate", "c0", "n0", "m0", "m_token", "den_token", "dh", "dc_last",
               "dn_last", "dq", "dk", "dv", "digate", "dfgate", "dc0", "dn0")


class FwdParams(ctypes.Structure):
    """tfla_mlstm_fwd_params."""
    _fields_ = [("problem", Problem)] + [(n, Tensor) for n in FWD_TENSORS]


class BwdParams(ctypes.Structure):
    """tfla_mlstm_bwd_params."""
    _fields_ = [("problem", Problem)] + [(n, Tensor) for n in BWD_TENSORS]


class TflaError(RuntimeError):
    """A tfla call failed; `status` is the tfla_status code, the message is tfla_last_error()."""

    def __init__(self, message: str, status: int = ERROR_INTERNAL):
        super().__init__(message)
        self.status = status


class TflaInvalidArgument(TflaError, ValueError):
    """TFLA_ERROR_INVALID_ARGUMENT (also a ValueError)."""


class TflaNotSupported(TflaError, NotImplementedError):
    """TFLA_ERROR_NOT_SUPPORTED: valid, but this build/backend/device cannot run it."""


def _find_library() -> pathlib.Path:
    env = os.environ.get("TFLA_LIBRARY")
    if env:
        p = pathlib.Path(env)
        if not p.is_file():
            raise ImportError(f"tfla: TFLA_LIBRARY={env!r} is not a file")
        return p
    here = pathlib.Path(__file__).resolve().parent
    for name in ("libtfla.so", "libtfla.dylib", "tfla.dll"):
        if (here / name).is_file():
            return here / name
    raise ImportError(
        f"tfla: libtfla.so was not found in {here}. Install the package with `pip install .` from the tfla "
        "repository (it builds the library), or point TFLA_LIBRARY at a libtfla.so built with "
        "-DBUILD_SHARED_LIBS=ON.")


def _struct_layout() -> dict[str, int]:
    out: dict[str, int] = {}
    for s, cname in ((Tensor, "tfla_tensor"), (Problem, "tfla_mlstm_problem"), (FwdParams, "tfla_mlstm_fwd_params"),
                     (BwdParams, "tfla_mlstm_bwd_params")):
        out[cname] = ctypes.sizeof(s)
        for fname, _ in s._fields_:
            out[f"{cname}.{fname}"] = getattr(s, fname).offset
    return out


def abi_layout() -> dict[str, int] | None:
    """The struct layout the loaded library reports (None when the library was built without it)."""
    fn = getattr(lib, "tfla_py_abi_layout", None)
    if fn is None:
        return None
    fn.restype = ctypes.c_char_p
    fn.argtypes = []
    text = fn().decode()
    return {k: int(v) for k, v in (item.split("=") for item in text.split(";") if item)}


def _check_layout() -> None:
    theirs = abi_layout()
    if theirs is None:
        return
    ours = _struct_layout()
    bad = [f"{k}: library {theirs.get(k)}, binding {v}" for k, v in ours.items() if theirs.get(k) != v]
    bad += [f"{k}: missing in the binding" for k in theirs if k not in ours]
    if bad:
        raise ImportError(f"tfla: the ctypes structs do not match {library_path} ({'; '.join(bad)}); "
                          "reinstall the package so that library and binding come from one source tree")


library_path = _find_library()
lib = ctypes.CDLL(str(library_path), mode=getattr(os, "RTLD_LOCAL", 0) | getattr(os, "RTLD_NOW", 2))

_P = ctypes.POINTER
lib.tfla_mlstm_problem_init.argtypes = [_P(Problem)]
lib.tfla_mlstm_problem_init.restype = None
lib.tfla_mlstm_fwd_workspace_size.argtypes = [_P(FwdParams), _P(ctypes.c_size_t)]
lib.tfla_mlstm_fwd_workspace_size.restype = ctypes.c_int
lib.tfla_mlstm_bwd_workspace_size.argtypes = [_P(BwdParams), _P(ctypes.c_size_t)]
lib.tfla_mlstm_bwd_workspace_size.restype = ctypes.c_int
lib.tfla_mlstm_fwd.argtypes = [_P(FwdParams), ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
lib.tfla_mlstm_fwd.restype = ctypes.c_int
lib.tfla_mlstm_bwd.argtypes = [_P(BwdParams), ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
lib.tfla_mlstm_bwd.restype = ctypes.c_int
lib.tfla_mlstm_default_chunk_size.argtypes = [_P(Problem), _P(ctypes.c_int64)]
lib.tfla_mlstm_default_chunk_size.restype = ctypes.c_int
lib.tfla_last_error.argtypes = []
lib.tfla_last_error.restype = ctypes.c_char_p
lib.tfla_status_string.argtypes = [ctypes.c_int]
lib.tfla_status_string.restype = ctypes.c_char_p
lib.tfla_has_cuda.argtypes = []
lib.tfla_has_cuda.restype = ctypes.c_int
lib.tfla_version_string.argtypes = []
lib.tfla_version_string.restype = ctypes.c_char_p

_check_layout()

def check(status: int, what: str = "") -> None:
    """Raise the matching TflaError when status is not TFLA_SUCCESS (message: tfla_last_error())."""
    if status == SUCCESS:
        return
    msg = (lib.tfla_last_error() or b"").decode(errors="replace")
    name = (lib.tfla_status_string(status) or b"").decode()
    text = f"tfla: {name}: {msg}" if msg else f"tfla: {name}{(' in ' + what) if what else ''}"
    if status == ERROR_INVALID_ARGUMENT:
        raise TflaInvalidArgument(text, status)
    if status == ERROR_NOT_SUPPORTED:
        raise TflaNotSupported(text, status)
    raise TflaError(text, status)


# Read once at import: tfla.mlstm checks it while torch.compile traces, and dynamo cannot trace a ctypes call.
_HAS_CUDA = bool(lib.tfla_has_cuda())


def has_cuda() -> bool:
    """True when the loaded libtfla contains the CUDA backend."""
    return _HAS_CUDA


def version() -> str:
    return lib.tfla_version_string().decode()
