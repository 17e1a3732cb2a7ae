#include "kernels/isa.hpp"
#include "kernels/kernels.hpp"

namespace stackllama::kernels {

size_t weight_type_size(WeightType t) {
    switch (t) {
        case WeightType::f32: return 4;
        case WeightType::f16: return 2;
        case WeightType::bf16: return 2;
    }
    return 0;
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
