// Command-line helpers shared by the benchmark programs.
#pragma once

#include <string>
#include <vector>

namespace stackllama_bench {

// "q4,q8" -> {"q4", "q8"}; empty items are dropped.
inline std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    size_t a = 0;
    while (a <= s.size()) {
        size_t b = s.find(',', a);
        if (b == std::string::npos) b = s.size();
        if (b > a) out.push_back(s.substr(a, b - a));
        a = b + 1;
    }
    return out;
}

}  // namespace stackllama_bench
