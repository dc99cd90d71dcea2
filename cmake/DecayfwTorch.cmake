# Finds LibTorch: first as a CMake package (Debian's libtorch-dev installs one), then through the
# Python interpreter's torch.utils.cmake_prefix_path (pip's torch, e.g. 2.x with CUDA).
# Sets DECAYFW_TORCH_HAS_CUDA when the found LibTorch was built with CUDA.
if(NOT DEFINED DECAYFW_PYTHON)
  if(EXISTS /usr/bin/python3)
    set(DECAYFW_PYTHON /usr/bin/python3 CACHE FILEPATH "Python interpreter whose torch is used")
  else()
    find_program(DECAYFW_PYTHON NAMES python3 python REQUIRED)
  endif()
endif()

# A CUDA LibTorch (pip's) ignores CMAKE_CUDA_ARCHITECTURES: its Caffe2 cuda.cmake switches it OFF and
# adds its own -gencode list, by default every architecture torch ships for (sm_50 ... sm_120a), which
# would build each kernel eleven times, sm_50 without bf16 tensor cores. Hand it ours (default 90, the
# H100) as TORCH_CUDA_ARCH_LIST ("90" -> "9.0", "90a" -> "9.0a") unless one is given.
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(_decayfw_archs 90)
  if(DEFINED CMAKE_CUDA_ARCHITECTURES AND CMAKE_CUDA_ARCHITECTURES)
    set(_decayfw_archs ${CMAKE_CUDA_ARCHITECTURES})
  endif()
  set(TORCH_CUDA_ARCH_LIST "")
  foreach(_arch IN LISTS _decayfw_archs)
    string(REGEX REPLACE "-(real|virtual)$" "" _arch "${_arch}")
    string(REGEX REPLACE "^([0-9]+)([0-9])([af]?)$" "\\1.\\2\\3" _arch "${_arch}")
    list(APPEND TORCH_CUDA_ARCH_LIST "${_arch}")
  endforeach()
endif()
find_package(Torch QUIET)
if(NOT Torch_FOUND)
  execute_process(
    COMMAND ${DECAYFW_PYTHON} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _decayfw_torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "decayfw: LibTorch not found. Install Debian's libtorch-dev, or pass "
                        "-DCMAKE_PREFIX_PATH=$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')")
  endif()
  list(APPEND CMAKE_PREFIX_PATH ${_decayfw_torch_prefix})
  find_package(Torch REQUIRED)
endif()

set(DECAYFW_TORCH_HAS_CUDA OFF)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(DECAYFW_TORCH_HAS_CUDA ON)
endif()

# Debian's TorchConfig puts its include dirs on the `torch` target; make sure they count as system
# headers so -Werror only judges project code.
get_target_property(_torch_inc torch INTERFACE_INCLUDE_DIRECTORIES)
if(_torch_inc)
  set_target_properties(torch PROPERTIES INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${_torch_inc}")
endif()

# Compile with the C++ ABI LibTorch was built with. Some TorchConfig versions do not propagate
# -D_GLIBCXX_USE_CXX11_ABI to consumers; a mismatch corrupts every std::string crossing the library
# boundary (c10::Error messages first), so read it from the torch Python module when it is there.
execute_process(
  COMMAND ${DECAYFW_PYTHON} -c "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"
  OUTPUT_VARIABLE DECAYFW_TORCH_CXX11_ABI OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _abi_rc ERROR_QUIET)
if(_abi_rc EQUAL 0 AND DECAYFW_TORCH_CXX11_ABI MATCHES "^[01]$")
  set_property(TARGET torch APPEND PROPERTY INTERFACE_COMPILE_DEFINITIONS
               _GLIBCXX_USE_CXX11_ABI=${DECAYFW_TORCH_CXX11_ABI})
endif()
