// Why this file exists: Horovod 0.28.1's GPU build (HAVE_CUDA) gets the CUDA stream of a
// TensorFlow op from stream_executor::gpu::AsGpuStreamValue(Stream*), which it declares
// itself right before including this header. TensorFlow 2.21 no longer has that function
// (the build links, and `import horovod.tensorflow` then fails: undefined symbol
// _ZN15stream_executor3gpu16AsGpuStreamValueEPNS_6StreamE); a Stream now hands out its
// native handle through platform_specific_handle(). This header, first on the include
// path for Horovod's build only (scripts/build-horovod.sh), includes TF's own stream.h
// and defines that function on top of it. The CPU build never includes it.
#include "xla/stream_executor/stream.h"

#if HAVE_CUDA
#include <cuda_runtime.h>

namespace stream_executor {
namespace gpu {
inline cudaStream_t AsGpuStreamValue(Stream* stream) {
  return static_cast<cudaStream_t>(stream->platform_specific_handle().stream);
}
}  // namespace gpu
}  // namespace stream_executor
#endif  // HAVE_CUDA
