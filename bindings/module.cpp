// decayfw._C: importing it loads libdecayfw_ops, whose static initialisers register the
// torch.ops.decayfw.* schemas and kernels with PyTorch's dispatcher. The module itself only reports
// how the library was built, so Python can say which devices the ops support.
#include <pybind11/pybind11.h>

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "decayfw native ops (registered as torch.ops.decayfw.*)";
  m.attr("__version__") = DECAYFW_VERSION;
#ifdef DECAYFW_WITH_CUDA
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif
}
