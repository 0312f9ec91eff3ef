// C++ under the preload: containers, over-aligned `new`, sized and aligned `delete`, and
// `std::bad_alloc` for an impossible `new` (libstdc++'s operators call malloc/free and
// aligned_alloc). Deterministic output.
#include <cstdint>
#include <cstdio>
#include <map>
#include <new>
#include <string>
#include <vector>

struct alignas(128) Wide {
    char c[200];
};

int main() {
    std::map<int, std::string> m;
    for (int i = 0; i < 100000; i++) m[i] = std::to_string(i * 7) + "-value";
    std::size_t chars = 0;
    for (auto &kv : m) chars += kv.second.size();
    std::vector<Wide *> v;
    int misaligned = 0;
    for (int i = 0; i < 2000; i++) {
        v.push_back(new Wide);
        if (reinterpret_cast<std::uintptr_t>(v.back()) % alignof(Wide) != 0) misaligned++;
    }
    for (auto *w : v) delete w;
    bool threw = false;
    try {
        volatile std::size_t n = std::size_t(1) << 62;
        char *volatile p = new char[n];
        (void)p;
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    std::printf("cxx: entries=%zu chars=%zu misaligned=%d bad_alloc=%d\n", m.size(), chars, misaligned, threw);
    return misaligned == 0 && threw ? 0 : 1;
}
