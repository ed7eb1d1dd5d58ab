// Runs the fuzz harness over files and directories (a corpus, a crash file)
// without libFuzzer: for compilers without -fsanitize=fuzzer, and as the
// corpus regression test (meson test fuzz_corpus).
#include <dirent.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

size_t RunFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    return 0;
  }
  const std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return 1;
}

size_t Run(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    std::fprintf(stderr, "no such file or directory: %s\n", path.c_str());
    return 0;
  }
  if (!S_ISDIR(st.st_mode)) return RunFile(path);
  size_t n = 0;
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return 0;
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') names.push_back(e->d_name);
  }
  closedir(d);
  for (const auto& name : names) n += Run(path + "/" + name);
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  size_t n = 0;
  for (int i = 1; i < argc; ++i) n += Run(argv[i]);
  std::printf("xent_fuzz_replay: %zu inputs, no failure\n", n);
  return n > 0 || argc == 1 ? 0 : 1;
}
