// Stop strings over streamed text: finds them across token boundaries and holds back any text that
// could still turn out to be the start of one, so no part of a stop string is ever streamed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace stackllama {

class StopStringMatcher {
public:
    explicit StopStringMatcher(std::vector<std::string> stops = {});

    // Appends text (complete UTF-8) and returns the part that is now safe to pass on. When a stop
    // string completes, stopped() turns true and the text returned ends right before it (the
    // earliest occurrence of any stop string; the shortest one when several start there).
    std::string push(std::string_view text);
    // End of the stream: what is still held back (it can no longer complete a stop string).
    std::string flush();

    bool stopped() const { return stopped_; }
    const std::string& matched() const { return matched_; }  // the stop string found
    bool empty() const { return stops_.empty(); }

private:
    std::vector<std::string> stops_;
    std::string held_;
    bool stopped_ = false;
    std::string matched_;
};

}  // namespace stackllama
