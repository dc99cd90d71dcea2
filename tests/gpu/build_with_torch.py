"""Fallback build of the op library with torch.utils.cpp_extension, for a GPU machine without CMake.
Prints the path of the built library; use it as DECAYFW_OPS_LIBRARY for the decayfw package."""
import os
import sys

from torch.utils.cpp_extension import load

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K = os.path.join(ROOT, "kernels")
sources = [f"{K}/ops/schemas.cpp", f"{K}/ops/tensor_checks.cpp", f"{K}/ops/decay_op_args.cpp",
           f"{K}/ops/decay_chunk_size.cpp", f"{K}/ops/decay_cpu_ops.cpp", f"{K}/ops/add_cpu_ops.cpp",
           f"{K}/ops/gated_cpu_ops.cpp", f"{K}/ops/delta_cpu_ops.cpp",
           f"{K}/cpu/decay_cpu.cpp", f"{K}/cpu/delta_cpu.cpp", f"{K}/ops/decay_cuda_ops.cpp",
           f"{K}/cuda/decay_recurrent.cu", f"{K}/cuda/decay_step.cu", f"{K}/cuda/decay_chunk.cu",
           f"{K}/cuda/decay_chunk_bf16.cu", f"{K}/cuda/decay_chunk_fp16.cu", f"{K}/cuda/decay_chunk_tf32.cu"]
lib = load(name="decayfw_ops_ext", sources=sources, extra_include_paths=[f"{K}/include", f"{K}/ops", f"{K}/cuda"],
           extra_cflags=["-O3", "-fopenmp-simd", "-DDECAYFW_WITH_CUDA=1"],
           extra_cuda_cflags=["-O3", "--expt-relaxed-constexpr", "-lineinfo", "-gencode=arch=compute_90,code=sm_90"],
           is_python_module=False, verbose=True, build_directory=sys.argv[1] if len(sys.argv) > 1 else None)
print(os.path.join(sys.argv[1], "decayfw_ops_ext.so") if len(sys.argv) > 1 else lib)
