// The Python module `inception_kernels._C`. It holds no Python functions: importing it loads
// the shared library, whose static initializers register the ops of ops.cpp with the
// dispatcher (torch.ops.inception_kernels.*). No pybind11, no torch/extension.h.

#include <Python.h>

extern "C" {
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",  // name
      "CUDA kernels of inception_kernels; ops are under torch.ops.inception_kernels",
      -1,       // size of per-interpreter state
      nullptr,  // methods
  };
  return PyModule_Create(&module_def);
}
}
