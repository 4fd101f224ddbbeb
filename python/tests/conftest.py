"""Shared fixtures of the Python tests.

Markers: `gpu` tests need a CUDA device and a tfla build with the CUDA backend; they skip otherwise.
TFLA_RESULTS_DIR=dir: tests that measure (accuracy, parity, end to end) append one JSON line each to
dir/python_metrics.jsonl (scripts/gpu_python_tests.sh sets it).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # `import reference`

import tfla  # noqa: E402
import tfla.ops  # noqa: E402

HAVE_CUDA = torch.cuda.is_available() and tfla.has_cuda()
DEVICES = ["cpu"] + (["cuda"] if HAVE_CUDA else [])


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA device and a tfla build with the CUDA backend")
    for item in items:
        if "gpu" in item.keywords and not HAVE_CUDA:
            item.add_marker(skip)


def pytest_report_header(config):
    return (f"tfla {tfla.__version__} (library {tfla.library_version()}, cuda backend: {tfla.has_cuda()}, "
            f"{tfla.library_path}); torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")


@pytest.fixture
def record(request):
    """record(**fields): one JSON line per call in $TFLA_RESULTS_DIR/python_metrics.jsonl (no-op otherwise)."""
    out = os.environ.get("TFLA_RESULTS_DIR")

    def _record(**fields):
        fields = {"test": request.node.nodeid, **fields}
        if out:
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, "python_metrics.jsonl"), "a") as fh:
                fh.write(json.dumps(fields, default=str) + "\n")

    return _record


@contextlib.contextmanager
def poisoned_outputs():
    """Fill every output of the tfla ops with NaN before the library writes them."""
    old = tfla.ops.POISON_OUTPUTS
    tfla.ops.POISON_OUTPUTS = True
    try:
        yield
    finally:
        tfla.ops.POISON_OUTPUTS = old


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
