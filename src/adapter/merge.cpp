// merge_adapters: a new Model with LoRA updates folded into copies of the affected matrices.
#include <cblas.h>

#include <map>

#include "adapter/adapter_impl.hpp"
#include "kernels/isa.hpp"
#include "kernels/quant.hpp"
#include "model/model_impl.hpp"
#include "util/log.hpp"
#include "util/thread_pool.hpp"

namespace stackllama {

std::shared_ptr<const Model> merge_adapters(std::shared_ptr<const Model> base,
                                            const std::vector<AdapterRef>& adapters) {
    if (!base) throw Error(ErrorCode::invalid_argument, "merge_adapters needs a model (got null)");
    auto impl = std::make_unique<Model::Impl>(base->impl());  // shares the mapped weights
    LlamaWeights& w = impl->weights;
    const bool was_tied = impl->config.tie_word_embeddings;

    // Each matrix touched gets one f32 copy; later adapters accumulate into the same copy.
    std::map<kernels::Matrix*, std::shared_ptr<std::vector<float>>> copies;
    std::map<kernels::Matrix*, kernels::WeightType> quantized;  // copies of q8/q4 matrices
    auto writable = [&](kernels::Matrix& m) -> float* {
        auto it = copies.find(&m);
        if (it != copies.end()) return it->second->data();
        if (kernels::weight_type_quantized(m.type)) quantized[&m] = m.type;
        auto buf = std::make_shared<std::vector<float>>(m.rows * m.cols);
        kernels::active().rows_to_f32(m, 0, m.rows, buf->data());
        w.matrix_bytes += buf->size() * sizeof(float) - m.bytes();
        m = kernels::Matrix{kernels::WeightType::f32, buf->data(), m.rows, m.cols};
        w.owners.push_back(buf);
        copies[&m] = buf;
        return buf->data();
    };

    for (const AdapterRef& ref : adapters) {
        if (!ref.adapter) throw Error(ErrorCode::invalid_argument, "merge_adapters: null adapter");
        check_adapter_fits(*ref.adapter, *base);
        const Adapter::Impl& a = ref.adapter->impl();
        for (const LoraModule& lm : a.loras) {
            if (!lm.b_bias.empty()) {
                throw Error(ErrorCode::unsupported,
                            "adapter " + a.path + ": module " + lm.name +
                                " has a lora_B bias, which cannot be merged into LLaMA's "
                                "bias-free layer; attach the adapter instead");
            }
            kernels::Matrix* target = &w.lm_head;
            if (lm.layer >= 0) {
                LayerWeights& L = w.layers[size_t(lm.layer)];
                kernels::Matrix* slots[kSlotCount] = {&L.wq,     &L.wk,   &L.wv,  &L.wo,
                                                      &L.w_gate, &L.w_up, &L.w_down};
                target = slots[lm.slot];
            }
            float* dst = writable(*target);
            // W[out, in] += scale · s · B[out, r] · A[r, in], in f32.
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(target->rows),
                        int(target->cols), lm.r, ref.scale * lm.s, lm.b.data(), lm.r,
                        lm.a.data(), int(target->cols), 1.0f, dst, int(target->cols));
        }
        for (const auto& [name, sm] : a.saved) {
            // The replacement lives in the adapter; the merged model keeps the adapter alive.
            std::shared_ptr<const void> keep(ref.adapter, sm.data.data());
            if (name == "lm_head") {
                w.lm_head = sm.m;
            } else if (name == "model.embed_tokens") {
                w.embed = sm.m;
            } else {
                log::warn("merge_adapters: " + a.path + " saves module " + name +
                          ", which a causal LM does not use; not merged");
                continue;
            }
            w.owners.push_back(keep);
        }
    }
    // A quantized base stays quantized: the f32 merge is quantized again (one rounding of W + ΔW,
    // not of ΔW alone), and the log says so because the merged weights are not those of the f32
    // merge.
    if (!quantized.empty()) {
        ThreadPool pool(impl->n_threads);
        size_t total = 0;  // one allocation for all (each rounds up to a 2 MiB page)
        for (auto& [m, type] : quantized)
            total += (kernels::Matrix{type, nullptr, m->rows, m->cols}.bytes() + 63) / 64 * 64;
        std::shared_ptr<void> memory = kernels::alloc_weight_memory(total);
        size_t offset = 0;
        for (auto& [m, type] : quantized) {
            const kernels::Matrix q = kernels::convert_matrix_into(
                kernels::active(), *m, type, pool, static_cast<uint8_t*>(memory.get()) + offset);
            offset += (q.bytes() + 63) / 64 * 64;
            w.matrix_bytes = w.matrix_bytes - m->bytes() + q.bytes();
            *m = q;
        }
        w.owners.push_back(memory);
        for (auto it = w.owners.begin(); it != w.owners.end();) {
            bool is_copy = false;
            for (const auto& [m, buf] : copies) is_copy = is_copy || it->get() == buf.get();
            it = is_copy ? w.owners.erase(it) : it + 1;
        }
        log::warn("merge_adapters: " + std::to_string(quantized.size()) + " " +
                  kernels::weight_type_name(quantized.begin()->second) +
                  " matrices were merged in f32 and quantized again");
    }
    // A head that no longer shares the embedding's bytes is untied.
    if (was_tied && (w.lm_head.data != w.embed.data)) impl->config.tie_word_embeddings = false;
    return std::make_shared<const Model>(std::move(impl));
}

}  // namespace stackllama
