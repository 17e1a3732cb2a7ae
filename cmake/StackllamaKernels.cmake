# Compiles src/kernels/kernels_impl.cpp once per ISA into object libraries. Only these objects get
# ISA flags; everything else is built for the baseline x86-64, so the library runs on any x86-64
# CPU and picks the best kernels at run time.
set(_sl_isa_flags_scalar "")
set(_sl_isa_flags_avx2 -mavx2 -mfma -mf16c)
set(_sl_isa_flags_avx512 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16
    -mavx2 -mfma -mf16c -mprefer-vector-width=512)
foreach(isa scalar avx2 avx512)
  add_library(stackllama_kernels_${isa} OBJECT src/kernels/kernels_impl.cpp)
  target_compile_definitions(stackllama_kernels_${isa} PRIVATE STACKLLAMA_KERNEL_ISA=${isa}
                             STACKLLAMA_KERNEL_ISA_${isa}=1)
  # GCC 12 warns falsely inside its own AVX-512 headers (_mm512_undefined_*).
  target_compile_options(stackllama_kernels_${isa} PRIVATE ${_sl_isa_flags_${isa}} -Wall -Wextra
                         -Wno-uninitialized
                         $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>)
  target_include_directories(stackllama_kernels_${isa} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  set_target_properties(stackllama_kernels_${isa} PROPERTIES
    POSITION_INDEPENDENT_CODE ON CXX_VISIBILITY_PRESET hidden)
endforeach()
