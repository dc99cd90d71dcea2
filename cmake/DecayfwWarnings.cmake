# decayfw_project_options(target): warnings (as errors) and tuning for project code only. Third-party
# headers (torch, Qt, pybind11) come in through imported targets and are treated as system headers.
function(decayfw_project_options target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>
    # GCC notes that 8-float vectors passed by value change ABI without AVX (DECAYFW_NATIVE=OFF); the
    # CPU kernels pass them only between their own internal functions, so the note is noise.
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wno-psabi>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${DECAYFW_WERROR}>>:-Werror>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${DECAYFW_NATIVE}>>:-march=native>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CONFIG:Release>>:-O3>
    $<$<COMPILE_LANGUAGE:CXX>:-fopenmp-simd>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall>
    $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${DECAYFW_WERROR}>>:-Werror=all-warnings>)
endfunction()
