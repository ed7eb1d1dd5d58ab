#include "tests/common/op_util.h"

namespace xent_test {

bool ZFinite(const std::vector<double>& x, double T, double softcap) {
  for (double v : x) {
    if (std::isnan(v) || (std::isinf(v) && softcap <= 0)) continue;  // softcap maps +-inf to +-softcap
    float z = static_cast<float>(v);
    if (softcap > 0) z = static_cast<float>(softcap) * std::tanh(z / static_cast<float>(softcap));
    z = z / static_cast<float>(T);
    if (!std::isfinite(z) || std::fabs(z) > 1e37f) return false;
    if (std::fabs(static_cast<float>(v) * (1.0f / static_cast<float>(T))) > 1e37f) return false;
  }
  return true;
}

double RowMaxAbs(const std::vector<double>& x, size_t i, size_t V, double scale, double cap) {
  double m = 1.0;
  for (size_t j = 0; j < V; ++j) {
    double v = x[i * V + j];
    if (!std::isfinite(v)) continue;
    if (cap > 0) v = std::min(std::fabs(v), cap);
    m = std::max(m, std::fabs(v) * scale);
  }
  return m;
}

double MaxAbs(const std::vector<double>& x, double cap) {
  double m = 1.0;
  for (double v : x)
    if (std::isfinite(v)) m = std::max(m, cap > 0 ? std::min(std::fabs(v), cap) : std::fabs(v));
  return m;
}

Expected Output(const Case&, const char* field, size_t rows, size_t cols, std::vector<double> want,
                std::vector<Tol> tol) {
  Expected e;
  e.field = field;
  e.rows = rows;
  e.cols = cols;
  e.want = std::move(want);
  e.tol = std::move(tol);
  return e;
}

DType OutDType(const Case& c, const char* field) {
  const Buffer* b = c.buf(field);
  return b ? b->dtype() : DType::kF32;
}

void FillNormal(Buffer* b, Rng& rng, double sigma, double mean) {
  for (size_t i = 0; i < b->rows(); ++i)
    for (size_t j = 0; j < b->cols(); ++j) b->Set(i, j, mean + sigma * rng.Normal());
}

void FillLabels(Buffer* b, Rng& rng, size_t V, int every, int phase, int64_t ignore_index) {
  for (size_t i = 0; i < b->rows(); ++i) {
    int64_t t = static_cast<int64_t>(rng.Below(V));
    if (every > 0 && static_cast<int>(i % static_cast<size_t>(every)) == phase) t = ignore_index;
    b->SetIndex(i, t);
  }
}

}  // namespace xent_test
