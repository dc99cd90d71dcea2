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
