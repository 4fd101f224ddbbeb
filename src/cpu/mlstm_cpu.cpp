// placeholder, replaced by the CPU backend
#include "core/backend.hpp"
#include "core/status.hpp"
namespace tfla::cpu {
int64_t default_chunk_size(const tfla_mlstm_problem&) { return 64; }
tfla_status fwd_workspace_size(const tfla_mlstm_fwd_params&, size_t* b) { *b = 0; return TFLA_SUCCESS; }
tfla_status bwd_workspace_size(const tfla_mlstm_bwd_params&, size_t* b) { *b = 0; return TFLA_SUCCESS; }
tfla_status fwd(const tfla_mlstm_fwd_params&, void*, size_t) { return fail(TFLA_ERROR_INTERNAL, "todo"); }
tfla_status bwd(const tfla_mlstm_bwd_params&, void*, size_t) { return fail(TFLA_ERROR_INTERNAL, "todo"); }
}
