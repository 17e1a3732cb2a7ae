// Tests only: the intrinsics of src/kernels/kernels_impl.cpp's AVX-512 path, emulated with SIMDe
// (Debian libsimde-dev) plus the few SIMDe 0.7 lacks, so that tests/kernels_test.cpp runs the
// AVX-512 kernels' logic on CPUs without AVX-512 (target kernels_avx512_emulated_test).
#pragma once
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>
#include <simde/x86/fma.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
static inline float emu_cvtsh_ss(uint16_t h) {
    return simde_mm_cvtss_f32(simde_mm_cvtph_ps(simde_mm_cvtsi32_si128(h)));
}
#define _cvtsh_ss emu_cvtsh_ss
static inline simde__m512 emu_mm512_cvtph_ps(simde__m256i h) {
    simde__m256 lo = simde_mm256_cvtph_ps(simde_mm256_castsi256_si128(h));
    simde__m256 hi = simde_mm256_cvtph_ps(simde_mm256_extracti128_si256(h, 1));
    return simde_mm512_insertf32x8(simde_mm512_castps256_ps512(lo), hi, 1);
}
#define _mm512_cvtph_ps emu_mm512_cvtph_ps
static inline simde__m512i emu_mm512_cvtepu16_epi32(simde__m256i h) {
    simde__m256i lo = simde_mm256_cvtepu16_epi32(simde_mm256_castsi256_si128(h));
    simde__m256i hi = simde_mm256_cvtepu16_epi32(simde_mm256_extracti128_si256(h, 1));
    return simde_mm512_inserti64x4(simde_mm512_castsi256_si512(lo), hi, 1);
}
#define _mm512_cvtepu16_epi32 emu_mm512_cvtepu16_epi32
static inline float emu_reduce_add_ps(simde__m512 v) {
    float f[16]; simde_mm512_storeu_ps(f, v);
    float s = 0; for (int i = 0; i < 16; ++i) s += f[i]; return s;
}
#define _mm512_reduce_add_ps emu_reduce_add_ps
static inline float emu_reduce_max_ps(simde__m512 v) {
    float f[16]; simde_mm512_storeu_ps(f, v);
    float s = f[0]; for (int i = 1; i < 16; ++i) s = f[i] > s ? f[i] : s; return s;
}
#define _mm512_reduce_max_ps emu_reduce_max_ps
static inline int emu_reduce_add_epi32(simde__m512i v) {
    int32_t f[16]; simde_mm512_storeu_si512(f, v);
    int32_t s = 0; for (int i = 0; i < 16; ++i) s += f[i]; return s;
}
#define _mm512_reduce_add_epi32 emu_reduce_add_epi32
static inline simde__m512i emu_mm512_cvtps_epi32(simde__m512 v) {
    float f[16]; int32_t o[16]; simde_mm512_storeu_ps(f, v);
    for (int i = 0; i < 16; ++i) o[i] = (int32_t)lrintf(f[i]);
    return simde_mm512_loadu_si512(o);
}
#define _mm512_cvtps_epi32 emu_mm512_cvtps_epi32
static inline simde__m128i emu_mm512_cvtepi32_epi8(simde__m512i v) {
    int32_t f[16]; int8_t o[16]; simde_mm512_storeu_si512(f, v);
    for (int i = 0; i < 16; ++i) o[i] = (int8_t)f[i];
    return simde_mm_loadu_si128(o);
}
#define _mm512_cvtepi32_epi8 emu_mm512_cvtepi32_epi8
