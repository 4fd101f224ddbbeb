#!/usr/bin/env bash
# CUDA compiler launcher (CMakeLists.txt): runs the compile it is given and fails it when ptxas reports wgmma
# instructions serialized (C7510..C7520, "Potential Performance Loss: wgmma.mma_async instructions are
# serialized ..."). ptxas prints those as info, not as warnings, so --warning-as-error lets them through, and a
# serialized kernel runs its matrix products one after another.
# SPDX-License-Identifier: Apache-2.0
out=$("$@" 2>&1)
rc=$?
[ -n "$out" ] && printf '%s\n' "$out" >&2
if [ "$rc" -eq 0 ] && grep -q "wgmma.mma_async instructions are serialized" <<<"$out"; then
  echo "error: ptxas serialized wgmma instructions (see above); the build treats that as an error" >&2
  exit 1
fi
exit "$rc"
