"""The ctypes mirror of tfla.h: struct sizes and offsets against the library's own report and against a C
compiler's view of the installed header."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

import tfla
from tfla import _lib


def test_library_reports_the_same_layout():
    theirs = _lib.abi_layout()
    assert theirs is not None, "libtfla was built without tfla_py_abi_layout (not by pip install .?)"
    assert theirs == _lib._struct_layout()


def test_layout_matches_a_c_compiler(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler")
    include = pathlib.Path(tfla.__file__).parent / "include"
    if not (include / "tfla" / "tfla.h").is_file():
        include = pathlib.Path(__file__).resolve().parents[2] / "include"
    ours = _lib._struct_layout()
    lines = ['#include <stddef.h>', '#include <stdio.h>', '#include "tfla/tfla.h"', "int main(void) {"]
    for key in ours:
        if "." in key:
            struct, field = key.split(".")
            lines.append(f'  printf("%s=%zu\\n", "{key}", offsetof({struct}, {field}));')
        else:
            lines.append(f'  printf("%s=%zu\\n", "{key}", sizeof({key}));')
    lines += ["  return 0;", "}"]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "layout"
    subprocess.run([cc, "-std=c99", "-I", str(include), str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    theirs = {k: int(v) for k, v in (line.split("=") for line in out.split())}
    assert theirs == ours


def test_library_identity():
    assert os.path.isfile(tfla.library_path)
    assert tfla.library_version() == "0.1.0"
    assert isinstance(tfla.has_cuda(), bool)


def test_status_errors_map_to_exceptions():
    with pytest.raises(tfla.TflaInvalidArgument) as e:
        _lib.check(_lib.ERROR_INVALID_ARGUMENT)
    assert isinstance(e.value, ValueError) and e.value.status == _lib.ERROR_INVALID_ARGUMENT
    with pytest.raises(tfla.TflaNotSupported):
        _lib.check(_lib.ERROR_NOT_SUPPORTED)
    with pytest.raises(tfla.TflaError, match="CUDA error"):
        _lib.check(_lib.ERROR_CUDA)
