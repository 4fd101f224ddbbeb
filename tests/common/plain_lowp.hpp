// The "plain implementation" of the spec's accuracy rule: the parallel (quadratic) form computed the way a
// straightforward PyTorch implementation in a low-precision dtype computes it. Every scalar op runs in f32;
// every matrix product rounds its operands to the input dtype `x` first and accumulates in f32
// (QK^T -> f32 -> scale and gating in f32 -> rounded to x -> times V with f32 accumulation -> h rounded to
// x). States (c0, n0, c_last, n_last, m, den) are f32; outputs are rounded to their dtypes: h, dq, dk, dv
// to x, digate and dfgate to the gate dtype `g`. The backward's matrix products round their operands the
// same way (dh' V^T, dS K, dS^T Q, P^T dh', C0 dh', dC v, ...).
// Inputs must already hold values of their dtypes (tests pass the same rounded inputs to the kernel).
// SPDX-License-Identifier: Apache-2.0
#pragma once
#include "reference/mlstm_reference.hpp"
#include "tfla/tfla.h"

namespace tfla::test {

ref::Outputs plain_forward(const ref::Problem& p, const ref::Inputs& x, tfla_dtype xdt, tfla_dtype gdt);
ref::InputGrads plain_backward(const ref::Problem& p, const ref::Inputs& x, const ref::OutputGrads& g,
                               tfla_dtype xdt, tfla_dtype gdt);

}  // namespace tfla::test
