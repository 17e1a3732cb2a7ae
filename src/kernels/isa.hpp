// Which instruction set the kernels use, chosen once from CPUID.
#pragma once

namespace stackllama::kernels {

enum class Isa { scalar = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
// The best ISA this CPU (and OS) supports.
Isa detected_isa();
// detected_isa(), unless STACKLLAMA_ISA=scalar|avx2|avx512 asks for another that the CPU has.
Isa active_isa();
bool isa_supported(Isa isa);

}  // namespace stackllama::kernels
