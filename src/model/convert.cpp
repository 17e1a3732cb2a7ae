#include "model/convert.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include "kernels/isa.hpp"
#include "kernels/quant.hpp"
#include "util/thread_pool.hpp"

namespace stackllama {

namespace {

struct NamedMatrix {
    std::string name;
    kernels::Matrix* m;
};

std::vector<NamedMatrix> matrices(LlamaWeights& w) {
    std::vector<NamedMatrix> out;
    out.push_back({"model.embed_tokens.weight", &w.embed});
    for (size_t l = 0; l < w.layers.size(); ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        LayerWeights& L = w.layers[l];
        out.push_back({p + "self_attn.q_proj.weight", &L.wq});
        out.push_back({p + "self_attn.k_proj.weight", &L.wk});
        out.push_back({p + "self_attn.v_proj.weight", &L.wv});
        out.push_back({p + "self_attn.o_proj.weight", &L.wo});
        out.push_back({p + "mlp.gate_proj.weight", &L.w_gate});
        out.push_back({p + "mlp.up_proj.weight", &L.w_up});
        out.push_back({p + "mlp.down_proj.weight", &L.w_down});
    }
    if (w.lm_head.data && w.lm_head.data != w.embed.data) out.push_back({"lm_head.weight", &w.lm_head});
    if (w.score.data) out.push_back({"score.weight", &w.score});
    return out;
}

// Done with a source matrix: ask the kernel to reclaim its pages, so that quantizing a 13 GB f16
// checkpoint does not hold the f16 pages in this process's memory until the files are unmapped.
// MADV_PAGEOUT keeps the data (file pages are re-read, anonymous ones would need swap and stay),
// so it is safe whatever memory the matrix lives in; kernels before 5.4 ignore it.
void release_pages(const void* data, size_t bytes) {
#ifdef MADV_PAGEOUT
    static const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
    const uintptr_t a = (reinterpret_cast<uintptr_t>(data) + page - 1) & ~(page - 1);
    const uintptr_t b = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(page - 1);
    if (b > a) madvise(reinterpret_cast<void*>(a), b - a, MADV_PAGEOUT);
#else
    (void)data;
    (void)bytes;
#endif
}

}  // namespace

uint64_t weight_bytes_per_token(const LlamaWeights& w) {
    uint64_t n = 0;
    for (const LayerWeights& L : w.layers)
        for (const kernels::Matrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
            n += m->bytes();
    if (w.lm_head.data) n += w.lm_head.bytes();
    if (w.score.data) n += w.score.bytes();
    return n;
}

void convert_weights(LlamaWeights& w, kernels::WeightType t, ThreadPool& pool,
                     std::vector<std::string>* kept) {
    const kernels::KernelTable& kt = kernels::active();
    const bool tied = w.lm_head.data && w.lm_head.data == w.embed.data;
    const std::vector<NamedMatrix> all = matrices(w);
    // Every converted matrix in one allocation (64-byte offsets): one huge-page rounding in all,
    // not one per matrix.
    std::vector<kernels::WeightType> types;
    std::vector<size_t> offsets;
    size_t total = 0;
    for (const NamedMatrix& nm : all) {
        // The score head (a reward model's 1 x hidden) is read once per sequence: kept exact.
        const bool is_score = nm.m == &w.score;
        kernels::WeightType want = t;
        if (is_score || !kernels::weight_type_fits(t, nm.m->cols)) {
            want = nm.m->type;
            if (!is_score && kept) kept->push_back(nm.name);
        }
        types.push_back(want);
        offsets.push_back(total);
        total += (kernels::Matrix{want, nullptr, nm.m->rows, nm.m->cols}.bytes() + 63) / 64 * 64;
    }
    std::shared_ptr<void> memory = kernels::alloc_weight_memory(total);
    for (size_t i = 0; i < all.size(); ++i) {
        kernels::Matrix& m = *all[i].m;
        const kernels::Matrix c = kernels::convert_matrix_into(
            kt, m, types[i], pool, static_cast<uint8_t*>(memory.get()) + offsets[i]);
        release_pages(m.data, m.bytes());
        m = c;
    }
    std::vector<std::shared_ptr<const void>> owners{memory};
    if (tied) w.lm_head = w.embed;
    w.owners = std::move(owners);
    // The requested type, unless no matrix could take it (then the type they kept).
    bool any = w.embed.type == t;
    for (const LayerWeights& L : w.layers)
        for (const kernels::Matrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
            any = any || m->type == t;
    w.dtype = static_cast<DType>(any || w.layers.empty() ? t : w.layers[0].wq.type);
    w.matrix_bytes = weight_bytes_per_token(w);
}

}  // namespace stackllama
