// factory.cpp: make_backend("cpu" | "cuda") (backend).
#include "dsv3/backend/backend.h"
#include "dsv3/backend/cpu/cpu_backend.h"
#ifdef DSV3_HAVE_CUDA
#include "dsv3/backend/cuda/cuda_backend.h"
#endif

namespace dsv3 {

bool cuda_available() {
#ifdef DSV3_HAVE_CUDA
  return cuda_device_count() > 0;
#else
  return false;
#endif
}

std::unique_ptr<Backend> make_backend(const std::string& name, OpNumerics numerics) {
  if (name == "cpu") return std::make_unique<CpuBackend>();  // the reference in every mode
  if (name == "cuda") {
#ifdef DSV3_HAVE_CUDA
    EXPECT(cuda_device_count() > 0, "--backend cuda: no CUDA device is visible");
    CudaBackendOptions o = CudaBackendOptions::from_env();
    if (numerics != OpNumerics::kFromEnv) o.reference_numerics = numerics == OpNumerics::kReference;
    return make_cuda_backend(o);
#else
    (void)numerics;
    FAIL("--backend cuda: this dsv3 was built without CUDA (configure with -DDSV3_CUDA=ON)");
#endif
  }
  FAIL("--backend '{}' is not supported (supported: cpu, cuda)", name);
}

}  // namespace dsv3
