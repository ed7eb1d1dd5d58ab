// The C entry points of every operation, called through the table: those this
// program links, or those of a library variant loaded with dlopen (the
// threading backends under test).
#ifndef XENT_TESTS_COMMON_API_H_
#define XENT_TESTS_COMMON_API_H_

#include <cstddef>
#include <string>
#include <vector>

#include "capi/op_table.h"
#include "xent/xent.h"

namespace xent_test {

// An operation's args_init and call, with typed trampolines (calling a
// function through a pointer of another type is undefined).
struct OpEntry {
  const xent::abi::OpDesc* op = nullptr;
  void* init = nullptr;  // the linked xent_<op>_args_init
  void* call = nullptr;  // the linked xent_<op>
  xent_status (*init_as)(void* fn, void* args, size_t size) = nullptr;
  xent_status (*call_as)(void* fn, const void* args) = nullptr;
};

template <class Args>
OpEntry MakeEntry(const xent::abi::OpDesc& op, xent_status (*init)(Args*, size_t), xent_status (*call)(const Args*)) {
  OpEntry e;
  e.op = &op;
  e.init = reinterpret_cast<void*>(init);
  e.call = reinterpret_cast<void*>(call);
  e.init_as = [](void* fn, void* a, size_t n) {
    return reinterpret_cast<xent_status (*)(Args*, size_t)>(fn)(static_cast<Args*>(a), n);
  };
  e.call_as = [](void* fn, const void* a) {
    return reinterpret_cast<xent_status (*)(const Args*)>(fn)(static_cast<const Args*>(a));
  };
  return e;
}

class Api {
 public:
  // The library this program links.
  static const Api& Linked();
  // Every variant in a comma-separated list of library paths (dlopen);
  // failures are described in *error.
  static std::vector<Api> Load(const std::string& paths, std::string* error);

  xent_status Init(const xent::abi::OpDesc& op, void* args, size_t size) const;
  xent_status Call(const xent::abi::OpDesc& op, const void* args) const;
  const char* LastError() const { return last_error_(); }
  const char* Backend() const { return backend_(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<void*> init_, call_;  // per operation, in kAllOps order
  const char* (*last_error_)() = nullptr;
  const char* (*backend_)() = nullptr;
};

// Index of an operation in abi::kAllOps.
size_t OpIndex(const xent::abi::OpDesc& op);

}  // namespace xent_test

#endif  // XENT_TESTS_COMMON_API_H_
