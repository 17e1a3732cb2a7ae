#include "generate/stop.hpp"

#include <algorithm>

namespace stackllama {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

std::string StopStringMatcher::push(std::string_view text) {
    if (stopped_) return {};
    if (stops_.empty()) return std::string(text);
    held_.append(text);

    // A stop string complete in the held text: everything before its start goes out.
    size_t at = std::string::npos;
    const std::string* which = nullptr;
    for (const std::string& s : stops_) {
        const size_t p = held_.find(s);
        if (p == std::string::npos) continue;
        if (p < at || (p == at && s.size() < which->size())) {
            at = p;
            which = &s;
        }
    }
    if (which) {
        stopped_ = true;
        matched_ = *which;
        std::string out = held_.substr(0, at);
        held_.clear();
        return out;
    }

    // Hold back the longest suffix that is a proper prefix of a stop string: any stop string that
    // could still complete starts inside it. Such a suffix starts at the first byte of a stop
    // string, a character boundary, so the text let out is complete UTF-8.
    size_t keep = 0;
    for (const std::string& s : stops_) {
        const size_t max_len = std::min(s.size() - 1, held_.size());
        for (size_t len = max_len; len > keep; --len) {
            if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
                keep = len;
                break;
            }
        }
    }
    std::string out = held_.substr(0, held_.size() - keep);
    held_.erase(0, held_.size() - keep);
    return out;
}

std::string StopStringMatcher::flush() {
    std::string out;
    out.swap(held_);
    return out;
}

}  // namespace stackllama
