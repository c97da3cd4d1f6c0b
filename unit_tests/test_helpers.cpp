#include "test_helpers.hpp"

#include "fuzz_helpers.hpp"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>

#include <hfisher/core/io.hpp>

extern "C" {
void dgesvd_(const char* jobu, const char* jobvt, const int* m, const int* n, double* a, const int* lda, double* s,
             double* u, const int* ldu, double* vt, const int* ldvt, double* work, const int* lwork, int* info);
void dsyev_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w, double* work,
            const int* lwork, int* info);
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dgeqrf_(const int* m, const int* n, double* a, const int* lda, double* tau, double* work, const int* lwork,
             int* info);
void dorgqr_(const int* m, const int* n, const int* k, double* a, const int* lda, const double* tau, double* work,
             const int* lwork, int* info);
}

namespace hfisher_test {

namespace {
std::vector<double> col_major(const HostBatch& A, int b) {
  std::vector<double> c(size_t(A.m) * A.n);
  for (int i = 0; i < A.m; ++i)
    for (int j = 0; j < A.n; ++j) c[size_t(j) * A.m + i] = A(b, i, j);
  return c;
}

// random orthonormal m x k (k <= m) through LAPACK QR of a Gaussian matrix
std::vector<double> random_orthonormal(int m, int k, std::mt19937_64& g) {
  std::normal_distribution<double> d;
  std::vector<double> a(size_t(m) * k), tau(k), work(64 * (m + k));
  for (auto& x : a) x = d(g);
  int info = 0, lw = int(work.size());
  dgeqrf_(&m, &k, a.data(), &m, tau.data(), work.data(), &lw, &info);
  dorgqr_(&m, &k, &k, a.data(), &m, tau.data(), work.data(), &lw, &info);
  return a;  // column-major m x k
}
}  // namespace

HostBatch with_singular_values(int nb, int m, int n, const std::vector<double>& sigma, unsigned seed) {
  std::mt19937_64 g(seed);
  const int k = std::min(m, n);
  HostBatch h(nb, m, n);
  for (int b = 0; b < nb; ++b) {
    auto U = random_orthonormal(m, k, g);
    auto V = random_orthonormal(n, k, g);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double s = 0;
        for (int l = 0; l < k; ++l) s += U[size_t(l) * m + i] * sigma[l] * V[size_t(l) * n + j];
        h(b, i, j) = s;
      }
  }
  return h;
}

::testing::AssertionResult near(const HostBatch& got, const HostBatch& ref, double tol,
                                const std::vector<double>& scale, const char* what) {
  if (got.nb != ref.nb || got.m != ref.m || got.n != ref.n) {
    return ::testing::AssertionFailure() << what << ": shape (" << got.nb << "," << got.m << "," << got.n
                                         << ") vs reference (" << ref.nb << "," << ref.m << "," << ref.n << ")";
  }
  struct Bad {
    double excess, err, g, r;
    int b, i, j;
  };
  std::vector<Bad> bad;
  double max_abs_err = 0, max_rel = 0;
  long nans = 0;
  for (int b = 0; b < ref.nb; ++b)
    for (int i = 0; i < ref.m; ++i)
      for (int j = 0; j < ref.n; ++j) {
        const double gv = got(b, i, j), rv = ref(b, i, j), e = std::abs(gv - rv);
        if (!std::isfinite(gv)) ++nans;
        max_abs_err = std::max(max_abs_err, e);
        if (rv != 0) max_rel = std::max(max_rel, e / std::abs(rv));
        const double lim = tol * scale[b];
        if (!(e <= lim)) bad.push_back({e / (lim > 0 ? lim : 1e-300), e, gv, rv, b, i, j});
      }
  if (bad.empty() && nans == 0) return ::testing::AssertionSuccess();
  std::sort(bad.begin(), bad.end(), [](const Bad& x, const Bad& y) { return x.excess > y.excess; });
  std::ostringstream os;
  os.precision(6);
  os << what << ": " << bad.size() << " of " << ref.a.size() << " entries out of tolerance " << tol
     << " (x per-entry scale); batch " << ref.nb << " of " << ref.m << "x" << ref.n << "; max abs err " << max_abs_err
     << ", max rel err " << max_rel << ", non-finite " << nans << "\n  worst:";
  for (size_t w = 0; w < std::min<size_t>(5, bad.size()); ++w)
    os << "\n    [" << bad[w].b << "](" << bad[w].i << "," << bad[w].j << ") got " << bad[w].g << " want " << bad[w].r
       << " err " << bad[w].err << " (" << bad[w].excess << "x tol)";
  return ::testing::AssertionFailure() << os.str();
}

HostBatch matmul(const HostBatch& A, bool ta, const HostBatch& B, bool tb) {
  const int m = ta ? A.n : A.m, k = ta ? A.m : A.n, n = tb ? B.m : B.n;
  HostBatch C(A.nb, m, n);
  for (int b = 0; b < A.nb; ++b)
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double s = 0;
        for (int l = 0; l < k; ++l) s += (ta ? A(b, l, i) : A(b, i, l)) * (tb ? B(b, j, l) : B(b, l, j));
        C(b, i, j) = s;
      }
  return C;
}

HostBatch transpose(const HostBatch& A) {
  HostBatch T(A.nb, A.n, A.m);
  for (int b = 0; b < A.nb; ++b)
    for (int i = 0; i < A.m; ++i)
      for (int j = 0; j < A.n; ++j) T(b, j, i) = A(b, i, j);
  return T;
}

double fro(const HostBatch& A, int b) {
  double s = 0;
  for (int i = 0; i < A.m; ++i)
    for (int j = 0; j < A.n; ++j) s += A(b, i, j) * A(b, i, j);
  return std::sqrt(s);
}

double max_abs(const HostBatch& A, int b) {
  double s = 0;
  for (int i = 0; i < A.m; ++i)
    for (int j = 0; j < A.n; ++j) s = std::max(s, std::abs(A(b, i, j)));
  return s;
}

double max_abs(const std::vector<double>& a) {
  double m = 0;
  for (double x : a) m = std::max(m, std::abs(x));
  return m;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

double orth_error(const HostBatch& Q, int b, int k) {
  double e = 0;
  for (int i = 0; i < k; ++i)
    for (int j = 0; j < k; ++j) {
      double s = 0;
      for (int r = 0; r < Q.m; ++r) s += Q(b, r, i) * Q(b, r, j);
      e = std::max(e, std::abs(s - (i == j ? 1.0 : 0.0)));
    }
  return e;
}

std::vector<double> lapack_singular_values(const HostBatch& A, int b) {
  auto a = col_major(A, b);
  int m = A.m, n = A.n, k = std::min(m, n), info = 0, one = 1, lw = -1;
  std::vector<double> s(k);
  double wq = 0;
  dgesvd_("N", "N", &m, &n, a.data(), &m, s.data(), nullptr, &one, nullptr, &one, &wq, &lw, &info);
  lw = int(wq) + 1;
  std::vector<double> w(lw);
  dgesvd_("N", "N", &m, &n, a.data(), &m, s.data(), nullptr, &one, nullptr, &one, w.data(), &lw, &info);
  EXPECT_EQ(info, 0) << "LAPACK dgesvd failed";
  return s;
}

std::vector<double> lapack_eigenvalues(const HostBatch& A, int b) {
  auto a = col_major(A, b);
  int n = A.n, info = 0, lw = -1;
  std::vector<double> w(n);
  double wq = 0;
  dsyev_("N", "L", &n, a.data(), &n, w.data(), &wq, &lw, &info);
  lw = int(wq) + 1;
  std::vector<double> work(lw);
  dsyev_("N", "L", &n, a.data(), &n, w.data(), work.data(), &lw, &info);
  EXPECT_EQ(info, 0) << "LAPACK dsyev failed";
  return w;
}

int lapack_cholesky(const HostBatch& A, int b, HostBatch& L) {
  auto a = col_major(A, b);
  int n = A.n, info = 0;
  dpotrf_("L", &n, a.data(), &n, &info);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) L(b, i, j) = j <= i ? a[size_t(j) * n + i] : 0.0;
  return info;
}

FuzzCounts fuzz_loader(const std::string& path, const std::function<void(const std::string&)>& load, int flips,
                       unsigned seed) {
  std::string payload;
  {
    hfisher::io::SealedFile f(path, "fuzz_loader");
    payload.assign(std::istreambuf_iterator<char>(f.stream()), std::istreambuf_iterator<char>());
  }
  EXPECT_GT(payload.size(), 16u) << path;
  FuzzCounts counts;
  const std::string fuzz = path + "." + std::to_string(::getpid()) + ".fuzz";
  auto attempt = [&](const std::string& bytes, const std::string& what) {
    {
      std::ofstream o(fuzz, std::ios::binary | std::ios::trunc);
      o.write(bytes.data(), std::streamsize(bytes.size()));
    }
    try {
      load(fuzz);
      ++counts.loaded;
    } catch (const hfisher::Error&) {
      ++counts.refused;
    } catch (const std::exception& e) {
      ADD_FAILURE() << path << ": " << what << " threw a non-hfisher exception: " << e.what();
    }
  };
  std::mt19937 g(seed);
  // truncations: every 4 bytes of the header region, then random lengths
  for (std::size_t cut = 0; cut < std::min<std::size_t>(payload.size(), 128); cut += 4)
    attempt(payload.substr(0, cut), "cut at " + std::to_string(cut));
  for (int t = 0; t < 16; ++t) {
    const std::size_t cut = std::uniform_int_distribution<std::size_t>(0, payload.size() - 1)(g);
    attempt(payload.substr(0, cut), "cut at " + std::to_string(cut));
  }
  // single-bit flips
  for (int t = 0; t < flips; ++t) {
    const std::size_t bit = std::uniform_int_distribution<std::size_t>(0, payload.size() * 8 - 1)(g);
    std::string b = payload;
    b[bit / 8] = char(b[bit / 8] ^ (1 << (bit % 8)));
    attempt(b, "bit " + std::to_string(bit) + " flipped");
  }
  // header fields overwritten with hostile values (sizes, ranks, levels, tags)
  const std::int32_t hostile[] = {-1, 0, 1 << 30, 0x7fffffff};
  for (std::size_t off = 0; off + 4 <= std::min<std::size_t>(payload.size(), 128); off += 4)
    for (std::int32_t v : hostile) {
      std::string b = payload;
      std::memcpy(&b[off], &v, 4);
      attempt(b, "int32 at " + std::to_string(off) + " set to " + std::to_string(v));
    }
  // bytes appended after the record
  attempt(payload + std::string(1, '\0'), "one byte appended");
  attempt(payload + payload, "record repeated");
  std::remove(fuzz.c_str());
  EXPECT_GT(counts.refused, 0) << path;
  return counts;
}

}  // namespace hfisher_test
