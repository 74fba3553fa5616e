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
