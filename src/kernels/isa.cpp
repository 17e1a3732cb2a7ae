#include "kernels/isa.hpp"

#include <utility>
#include "stackllama/version.hpp"

#include <cstdlib>
#include <cstring>
#include <string>

#include "util/log.hpp"

namespace stackllama::kernels {

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::scalar: return "scalar";
        case Isa::avx2: return "avx2";
        case Isa::avx512: return "avx512";
    }
    return "?";
}

bool isa_supported(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    switch (isa) {
        case Isa::scalar: return true;
        case Isa::avx2:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        case Isa::avx512:
            // The AVX-512 kernels are compiled with VNNI and BF16 enabled (Zen 4, Sapphire
            // Rapids); older AVX-512 parts use the AVX2 kernels.
            return isa_supported(Isa::avx2) && __builtin_cpu_supports("avx512f") &&
                   __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                   __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni") &&
                   __builtin_cpu_supports("avx512bf16");
    }
    return false;
#else
    return isa == Isa::scalar;
#endif
}

Isa detected_isa() {
    static const Isa isa = [] {
        if (isa_supported(Isa::avx512)) return Isa::avx512;
        if (isa_supported(Isa::avx2)) return Isa::avx2;
        return Isa::scalar;
    }();
    return isa;
}

Isa active_isa() {
    static const Isa isa = [] {
        const char* env = std::getenv("STACKLLAMA_ISA");
        if (!env || !*env) return detected_isa();
        Isa want;
        if (!std::strcmp(env, "scalar")) {
            want = Isa::scalar;
        } else if (!std::strcmp(env, "avx2")) {
            want = Isa::avx2;
        } else if (!std::strcmp(env, "avx512")) {
            want = Isa::avx512;
        } else {
            log::warn(std::string("STACKLLAMA_ISA=") + env +
                      " is not one of scalar, avx2, avx512; using " + isa_name(detected_isa()));
            return detected_isa();
        }
        if (!isa_supported(want)) {
            log::warn(std::string("STACKLLAMA_ISA=") + env + " is not supported by this CPU; using " +
                      isa_name(detected_isa()));
            return detected_isa();
        }
        return want;
    }();
    return isa;
}

}  // namespace stackllama::kernels

namespace stackllama {

const char* system_info() noexcept {
    static const std::string info = [] {
        std::string s = "cpu:";
#if defined(__x86_64__) || defined(__i386__)
        __builtin_cpu_init();
        const std::pair<const char*, int> features[] = {
            {"avx2", __builtin_cpu_supports("avx2")},
            {"fma", __builtin_cpu_supports("fma")},
            {"avx512f", __builtin_cpu_supports("avx512f")},
            {"avx512bw", __builtin_cpu_supports("avx512bw")},
            {"avx512_vnni", __builtin_cpu_supports("avx512vnni")},
            {"avx512_bf16", __builtin_cpu_supports("avx512bf16")},
        };
        for (const auto& [name, on] : features)
            s += std::string(" ") + name + "=" + (on ? "1" : "0");
#else
        s += " (not x86-64)";
#endif
        s += std::string(" | kernels: ") + kernels::isa_name(kernels::active_isa());
        return s;
    }();
    return info.c_str();
}

}  // namespace stackllama
