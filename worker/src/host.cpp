// at::get_cpu_capability() returns a std::string, so Rust reaches it through this C shim. It is
// declared here rather than by including ATen's headers, which would cost tens of seconds of
// compile time for one declaration.
#include <algorithm>
#include <cstring>
#include <string>

namespace at {
std::string get_cpu_capability();
}

extern "C" int magpipe_cpu_capability(char* buf, size_t len) {
  if (len == 0) return -1;
  try {
    const std::string s = at::get_cpu_capability();
    const size_t n = std::min(s.size(), len - 1);
    std::memcpy(buf, s.data(), n);
    buf[n] = '\0';
    return static_cast<int>(n);
  } catch (...) {
    return -1;
  }
}

// at::Context's two mkldnn switches, declared by hand for the same reason: calls by their
// exported (mangled) names, no virtual functions, no data members touched.
namespace at {
class Context {
 public:
  bool userEnabledMkldnn() const;
  void setUserEnabledMkldnn(bool e);
};
Context& globalContext();
}  // namespace at

// Switches libtorch's use of oneDNN (the fused CPU LSTM among others) on or off; returns what
// libtorch then reports (1 on, 0 off), or -1 when it threw.
extern "C" int magpipe_set_mkldnn(int enabled) {
  try {
    at::globalContext().setUserEnabledMkldnn(enabled != 0);
    return at::globalContext().userEnabledMkldnn() ? 1 : 0;
  } catch (...) {
    return -1;
  }
}
