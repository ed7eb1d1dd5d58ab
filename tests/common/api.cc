#include "tests/common/api.h"

#include <dlfcn.h>

#include <cstring>

#include "tests/common/case.h"

namespace xent_test {

namespace abi = xent::abi;

size_t OpIndex(const abi::OpDesc& op) {
  for (size_t i = 0; i < sizeof(abi::kAllOps) / sizeof(abi::kAllOps[0]); ++i)
    if (std::strcmp(abi::kAllOps[i]->name, op.name) == 0) return i;
  return 0;
}

const Api& Api::Linked() {
  static const Api api = [] {
    Api a;
    a.path_ = "(linked)";
    for (const abi::OpDesc* op : abi::kAllOps) {
      a.init_.push_back(HooksOf(*op).entry.init);
      a.call_.push_back(HooksOf(*op).entry.call);
    }
    a.last_error_ = &xent_last_error;
    a.backend_ = &xent_threading_backend;
    return a;
  }();
  return api;
}

std::vector<Api> Api::Load(const std::string& paths, std::string* error) {
  std::vector<Api> v;
  size_t pos = 0;
  while (pos <= paths.size()) {
    const size_t comma = paths.find(',', pos);
    const std::string p = paths.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? paths.size() + 1 : comma + 1;
    if (p.empty()) continue;
    void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      *error += std::string("dlopen ") + p + ": " + dlerror() + "\n";
      continue;
    }
    Api a;
    a.path_ = p;
    bool ok = true;
    auto sym = [&](const std::string& name) {
      void* s = dlsym(h, name.c_str());
      if (s == nullptr) {
        *error += p + ": no symbol " + name + "\n";
        ok = false;
      }
      return s;
    };
    for (const abi::OpDesc* op : abi::kAllOps) {
      a.init_.push_back(sym(std::string(op->args_type) + "_init"));
      a.call_.push_back(sym(std::string("xent_") + op->name));
    }
    a.last_error_ = reinterpret_cast<const char* (*)()>(sym("xent_last_error"));
    a.backend_ = reinterpret_cast<const char* (*)()>(sym("xent_threading_backend"));
    if (ok) v.push_back(a);
  }
  return v;
}

xent_status Api::Init(const abi::OpDesc& op, void* args, size_t size) const {
  return HooksOf(op).entry.init_as(init_[OpIndex(op)], args, size);
}

xent_status Api::Call(const abi::OpDesc& op, const void* args) const {
  return HooksOf(op).entry.call_as(call_[OpIndex(op)], args);
}

}  // namespace xent_test
