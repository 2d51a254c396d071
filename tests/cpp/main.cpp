// main.cpp -- the C++ driver: runs every registered case (tests/cpp/test_*.cpp) on the emulated
// kernels, then checks that every __global__ kernel of kernels/cuda/*.cuh was launched.
//
//   driver                 all cases + the coverage check
//   driver SUBSTRING...    only the cases whose name contains one of the substrings (no coverage check)
//   driver --list          the case names
// Exit status 0 only when every case passed (and, for a full run, every kernel was launched).
#include <chrono>
#include <filesystem>
#include <fstream>
#include <cctype>
#include <set>
#include <sstream>
#include <stdexcept>

#include "harness.h"

#ifndef PYOPS_KERNEL_DIR
#error "compile with -DPYOPS_KERNEL_DIR=\"<repo>/kernels/cuda\""
#endif

namespace simt_api {  // sim_api.cpp: the parts of the emulator the driver sets and reads
void set_strict(bool on);
std::string diagnostics_report();  // "" when no hazard was recorded
void reset_diagnostics();
}  // namespace simt_api

namespace harness {
namespace {
struct Case {
  std::string name;
  std::function<void()> fn;
};
std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}
std::vector<std::string>* failures = nullptr;  // of the running case
}  // namespace

void add(std::string name, std::function<void()> fn) { cases().push_back({std::move(name), std::move(fn)}); }
void fail(const std::string& msg) {
  if (!failures) throw std::logic_error("harness::fail outside a case: " + msg);
  failures->push_back(msg);
}
long launches(const std::string& name) {
  const auto counts = pyops::sim::launch_counts();
  const auto it = counts.find(name);
  return it == counts.end() ? 0 : it->second;
}

// Names of the __global__ functions declared in kernels/cuda/*.cuh: after "__global__", skip
// "static", "void", "__launch_bounds__(...)"; the next identifier is the name.  Comments are skipped.
std::string strip_comments(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 2, "//") == 0) i = std::min(s.find('\n', i), s.size()) - 1;
    else if (s.compare(i, 2, "/*") == 0) i = std::min(s.find("*/", i) + 1, s.size() - 1);
    else out += s[i];
  }
  return out;
}
std::map<std::string, std::string> global_kernels(const std::string& dir) {
  std::map<std::string, std::string> out;  // name -> file
  auto is_id = [](char c) { return std::isalnum((unsigned char)c) || c == '_'; };
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".cuh") continue;
    std::ifstream f(e.path());
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string src = strip_comments(ss.str());
    for (size_t at = src.find("__global__"); at != std::string::npos; at = src.find("__global__", at + 1)) {
      if (at > 0 && is_id(src[at - 1])) continue;
      size_t i = at + 10;
      std::string word;
      for (;;) {
        while (i < src.size() && std::isspace((unsigned char)src[i])) ++i;
        size_t j = i;
        while (j < src.size() && is_id(src[j])) ++j;
        word = src.substr(i, j - i);
        i = j;
        if (word == "__launch_bounds__") {  // skip its parenthesized arguments
          int depth = 0;
          for (; i < src.size(); ++i) {
            depth += src[i] == '(' ? 1 : src[i] == ')' ? -1 : 0;
            if (src[i] == ')' && depth == 0) { ++i; break; }
          }
        } else if (word != "static" && word != "void" && word != "inline") {
          break;
        }
      }
      if (!word.empty()) out[word] = e.path().filename().string();
    }
  }
  return out;
}
}  // namespace harness

int main(int argc, char** argv) {
  using namespace harness;
  std::vector<std::string> filters(argv + 1, argv + argc);
  if (filters.size() == 1 && filters[0] == "--list") {
    for (const auto& c : cases()) printf("%s\n", c.name.c_str());
    return 0;
  }
  simt_api::set_strict(true);  // the project's kernels must be free of undefined-behaviour hazards too
  int passed = 0, failed = 0, ran = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& c : cases()) {
    bool selected = filters.empty();
    for (const auto& f : filters) selected |= c.name.find(f) != std::string::npos;
    if (!selected) continue;
    ++ran;
    std::vector<std::string> msgs;
    failures = &msgs;
    simt_api::reset_diagnostics();
    const auto t = std::chrono::steady_clock::now();
    try {
      c.fn();
    } catch (const std::exception& e) {
      msgs.push_back(std::string("exception: ") + e.what());
    }
    const std::string diag = simt_api::diagnostics_report();
    if (!diag.empty()) msgs.push_back("emulator hazards: " + diag);
    failures = nullptr;
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
    if (msgs.empty()) {
      ++passed;
      printf("ok    %-60s %8.1f ms\n", c.name.c_str(), ms);
    } else {
      ++failed;
      printf("FAIL  %-60s %8.1f ms\n", c.name.c_str(), ms);
      for (const auto& m : msgs) printf("      %s\n", m.c_str());
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("%d passed, %d failed of %d cases in %.2f s\n", passed, failed, ran, s);
  if (ran == 0) {
    printf("no case matched the filter\n");
    return 1;
  }
  if (filters.empty()) {  // every __global__ of kernels/cuda must have run
    const auto kernels = global_kernels(PYOPS_KERNEL_DIR);
    const auto counts = pyops::sim::launch_counts();
    std::vector<std::string> missing;
    for (const auto& [name, file] : kernels)
      if (!counts.count(name)) missing.push_back(name + " (" + file + ")");
    printf("kernel coverage: %zu of %zu __global__ kernels in %s launched\n", kernels.size() - missing.size(),
           kernels.size(), PYOPS_KERNEL_DIR);
    for (const auto& m : missing) printf("  NEVER LAUNCHED: %s -- add cases to tests/cpp/test_<op>.cpp\n", m.c_str());
    if (kernels.empty()) {
      printf("no __global__ kernel found in %s: the pattern or the path is wrong\n", PYOPS_KERNEL_DIR);
      return 1;
    }
    if (!missing.empty()) return 1;
  }
  return failed ? 1 : 0;
}
