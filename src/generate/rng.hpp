// The random numbers of sampling: xoshiro256** (Blackman and Vigna, 2018) seeded through
// splitmix64, and doubles made from its bits here rather than by std:: distributions, whose output
// differs between standard libraries. A seed gives the same stream on every machine and compiler.
#pragma once

#include <cstdint>

namespace stackllama {

// splitmix64: one step of the generator Vigna recommends for seeding xoshiro.
inline uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

class Rng {
public:
    explicit Rng(uint64_t seed = 0) { reseed(seed); }

    void reseed(uint64_t seed) {
        uint64_t s = seed;
        for (uint64_t& w : s_) w = splitmix64(s);
    }

    // xoshiro256**: 64 random bits.
    uint64_t next() {
        const uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    // Uniform in [0, 1): the top 53 bits as a binary fraction (exact, no rounding).
    double uniform() { return double(next() >> 11) * 0x1.0p-53; }

private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t s_[4];
};

}  // namespace stackllama
