// Why this file exists: Horovod 0.28.1 (its last release) includes
// "tensorflow/compiler/xla/client/xla_builder.h" from its XLA ops. TensorFlow
// 2.21 moved XLA out of that tree, and the header now lives at
// "xla/hlo/builder/xla_builder.h". Forwarding to the new location is the only
// change the CPU build's sources need; scripts/build-horovod.sh puts this compat/
// directory on the include path for that one build.
#include "xla/hlo/builder/xla_builder.h"

// The GPU build (HAVE_GPU) also compiles Horovod's XLA custom calls, which return
// ::xla::StatusOr<...>; XLA dropped that alias for absl::StatusOr. Only that file
// includes this header, right before the code that needs the alias.
#if HAVE_GPU
#include "absl/status/statusor.h"
namespace xla {
template <typename T>
using StatusOr = absl::StatusOr<T>;
}  // namespace xla
#endif  // HAVE_GPU
