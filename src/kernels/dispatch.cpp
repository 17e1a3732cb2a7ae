#include "kernels/isa.hpp"
#include "kernels/kernels.hpp"

namespace stackllama::kernels {

size_t weight_type_size(WeightType t) {
    switch (t) {
        case WeightType::f32: return 4;
        case WeightType::f16: return 2;
        case WeightType::bf16: return 2;
        case WeightType::q8: return sizeof(BlockQ8);
        case WeightType::q4: return sizeof(BlockQ4);
    }
    return 0;
}

size_t weight_type_block(WeightType t) { return weight_type_quantized(t) ? kQuantBlock : 1; }

bool weight_type_quantized(WeightType t) { return t == WeightType::q8 || t == WeightType::q4; }

bool weight_type_fits(WeightType t, size_t cols) { return cols % weight_type_block(t) == 0; }

size_t row_bytes(WeightType t, size_t cols) {
    return cols / weight_type_block(t) * weight_type_size(t);
}

const char* weight_type_name(WeightType t) {
    switch (t) {
        case WeightType::f32: return "f32";
        case WeightType::f16: return "f16";
        case WeightType::bf16: return "bf16";
        case WeightType::q8: return "q8";
        case WeightType::q4: return "q4";
    }
    return "?";
}

const KernelTable& active() {
    static const KernelTable& table = [&]() -> const KernelTable& {
        switch (active_isa()) {
            case Isa::avx512: return table_avx512();
            case Isa::avx2: return table_avx2();
            case Isa::scalar: break;
        }
        return table_scalar();
    }();
    return table;
}

}  // namespace stackllama::kernels
