// Loss + canonical gradient of the RBF model: scalar reference and the xsimd kernel.
//
// The SIMD kernel makes one pass over the points. For a block of U batches of points it
//   1. evaluates e_k = exp(-q_k/2) for every kernel into a K x U batch buffer (stack-sized,
//      never N x K) and f = sum_k w_k e_k,
//   2. forms the masked residual r = (f - t) * mask and accumulates r^2,
//   3. for every kernel accumulates six sums over the block:
//        S_w = sum r e, S_x = sum r e dx, S_y = sum r e dy,
//        S_xx = sum r e dx^2, S_xy = sum r e dx dy, S_yy = sum r e dy^2,
//      from which the gradient is formed once at the end (rbf/moments.hpp; the local
//      kernels in local.cpp share both).
// Accuracy: sums are accumulated lane-wise in T for kFlushBlocks blocks, then reduced
// (xsimd::hadd) into double accumulators. In float this bounds the length of every float
// summation to kFlushBlocks terms per lane, so the loss stays ~1e-6 relative even for
// N = 1e5; the order is fixed, so results are deterministic.
#include "covfit/rbf/kernels.hpp"

#include "rbf/fast_exp.hpp"
#include "rbf/moments.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace covfit::rbf {
namespace {

using namespace detail;  // fast_exp; the moment sums Acc, add_moments, gradient_from_moments

// ---------------------------------------------------------------------------------------
// The loss/gradient kernel.

// Per-kernel constants as broadcast batches: h = -q/2 = dx (c11 dx + c12 dy) + c22 dy^2.
enum Const { kMx = 0, kMy, kC11, kC12, kC22, kW, kNumConst };

// Blocks (of one batch each) accumulated in T before the flush to double.
constexpr std::size_t kFlushBlocks = 32;

template <class T, int U, bool Grad>
COVFIT_ALWAYS_INLINE void process_block(const T* __restrict px, const T* __restrict py,
                                        const T* __restrict pt, const T* __restrict pm,
                                        const T* __restrict kc, std::size_t K,
                                        T* __restrict ebuf, xsimd::batch<T>& loss_acc,
                                        T* __restrict acc) {
  using B = xsimd::batch<T>;
  constexpr std::size_t W = B::size;
  B x[U], y[U], f[U];
  for (int u = 0; u < U; ++u) {
    x[u] = B::load_aligned(px + u * W);
    y[u] = B::load_aligned(py + u * W);
    f[u] = B(T(0));
  }
  for (std::size_t k = 0; k < K; ++k) {
    const T* c = kc + k * kNumConst * W;
    const B mx = B::load_aligned(c + kMx * W), my = B::load_aligned(c + kMy * W);
    const B c11 = B::load_aligned(c + kC11 * W), c12 = B::load_aligned(c + kC12 * W);
    const B c22 = B::load_aligned(c + kC22 * W), w = B::load_aligned(c + kW * W);
    for (int u = 0; u < U; ++u) {
      const B dx = x[u] - mx, dy = y[u] - my;
      const B h = xsimd::fma(dx, xsimd::fma(c12, dy, c11 * dx), (c22 * dy) * dy);
      const B e = fast_exp(h);
      if constexpr (Grad) e.store_aligned(ebuf + (k * U + u) * W);
      f[u] = xsimd::fma(w, e, f[u]);
    }
  }
  B r[U];
  for (int u = 0; u < U; ++u) {
    r[u] = (f[u] - B::load_aligned(pt + u * W)) * B::load_aligned(pm + u * W);
    loss_acc = xsimd::fma(r[u], r[u], loss_acc);
  }
  if constexpr (Grad) {
    for (std::size_t k = 0; k < K; ++k) {
      const T* c = kc + k * kNumConst * W;
      const B mx = B::load_aligned(c + kMx * W), my = B::load_aligned(c + kMy * W);
      T* a = acc + k * kNumAcc * W;
      B sw = B::load_aligned(a + kSw * W), sx = B::load_aligned(a + kSx * W);
      B sy = B::load_aligned(a + kSy * W), sxx = B::load_aligned(a + kSxx * W);
      B sxy = B::load_aligned(a + kSxy * W), syy = B::load_aligned(a + kSyy * W);
      for (int u = 0; u < U; ++u) {
        const B dx = x[u] - mx, dy = y[u] - my;
        const B s = r[u] * B::load_aligned(ebuf + (k * U + u) * W);
        add_moments(s, dx, dy, sw, sx, sy, sxx, sxy, syy);
      }
      sw.store_aligned(a + kSw * W);
      sx.store_aligned(a + kSx * W);
      sy.store_aligned(a + kSy * W);
      sxx.store_aligned(a + kSxx * W);
      sxy.store_aligned(a + kSxy * W);
      syy.store_aligned(a + kSyy * W);
    }
  }
}

// Sums of one window of blocks [b0, b1) (b0 a multiple of kFlushBlocks, b1 - b0 <=
// kFlushBlocks): out[0] = loss sum, out[1 + i] = gradient sum i (K x kNumAcc).
// Windows are the unit of the fixed-order reduction: the total is the in-order sum of
// the windows' doubles, whether the windows were computed by one thread or many.
template <class T, bool Grad>
void window_sums(const PointSet<T>& pts, const T* kc, std::size_t K, std::size_t b0,
                 std::size_t b1, T* ebuf, T* acc, double* out) {
  using B = xsimd::batch<T>;
  constexpr std::size_t W = B::size;
  constexpr int U = 4;  // blocks per iteration (4 beat 2 by ~5-10% on Zen 4, 1 is ~20% slower)
  B loss_acc(T(0));
  if constexpr (Grad)
    for (std::size_t i = 0; i < K * kNumAcc; ++i) B(T(0)).store_aligned(acc + i * W);
  const T* px = pts.x.data();
  const T* py = pts.y.data();
  const T* pt = pts.t.data();
  const T* pm = pts.mask.data();
  std::size_t b = b0;
  for (; b + U <= b1; b += U) {
    const std::size_t o = b * W;
    process_block<T, U, Grad>(px + o, py + o, pt + o, pm + o, kc, K, ebuf, loss_acc, acc);
  }
  for (; b < b1; ++b) {
    const std::size_t o = b * W;
    process_block<T, 1, Grad>(px + o, py + o, pt + o, pm + o, kc, K, ebuf, loss_acc, acc);
  }
  out[0] = xsimd::hadd(loss_acc);
  if constexpr (Grad)
    for (std::size_t i = 0; i < K * kNumAcc; ++i) out[1 + i] = xsimd::hadd(B::load_aligned(acc + i * W));
}

template <class T, bool Grad>
double loss_grad_impl(const PointSet<T>& pts, std::span<const Canonical> kernels,
                      std::span<Canonical> grad, int threads) {
  using B = xsimd::batch<T>;
  constexpr std::size_t W = B::size;
  constexpr int U = 4;
  const std::size_t K = kernels.size();
  const std::size_t padded = pts.x.size();
  if (padded % W != 0 || pts.y.size() != padded || pts.t.size() != padded ||
      pts.mask.size() != padded)
    throw std::invalid_argument("loss_grad_simd: PointSet not padded (use PointSet::from)");
  static_assert(kFlushBlocks % U == 0, "windows must hold whole U-groups");

  // Per-kernel constants as broadcast batches (K x 6), shared by all threads.
  aligned_vector<T> kconst(K * kNumConst * W);
  T* kc = kconst.data();
  for (std::size_t k = 0; k < K; ++k) {
    const Canonical& c = kernels[k];
    const T v[kNumConst] = {T(c.mx),         T(c.my),         T(-0.5 * c.p11),
                            T(-c.p12),       T(-0.5 * c.p22), T(c.w)};
    for (int j = 0; j < kNumConst; ++j) B(v[j]).store_aligned(kc + (k * kNumConst + j) * W);
  }
  const std::size_t nblocks = padded / W;
  const std::size_t nwin = (nblocks + kFlushBlocks - 1) / kFlushBlocks;
  const std::size_t width = 1 + (Grad ? K * kNumAcc : 0);
  std::vector<double> total(width, 0.0);
  // Workspace per thread: e buffer (K x U batches) and accumulators (K x 6 batches).
  const std::size_t ws_size = K * W * (U + (Grad ? kNumAcc : 0));

  if (threads <= 1 || nwin < 2) {
    aligned_vector<T> ws(ws_size, T(0));
    std::vector<double> part(width);
    for (std::size_t w = 0; w < nwin; ++w) {
      window_sums<T, Grad>(pts, kc, K, w * kFlushBlocks, std::min(nblocks, (w + 1) * kFlushBlocks),
                           ws.data(), ws.data() + K * U * W, part.data());
      for (std::size_t i = 0; i < width; ++i) total[i] += part[i];
    }
  } else {
    std::vector<double> parts(nwin * width);
#pragma omp parallel num_threads(threads)
    {
      aligned_vector<T> ws(ws_size, T(0));
#pragma omp for schedule(static)
      for (std::size_t w = 0; w < nwin; ++w)
        window_sums<T, Grad>(pts, kc, K, w * kFlushBlocks,
                             std::min(nblocks, (w + 1) * kFlushBlocks), ws.data(),
                             ws.data() + K * U * W, parts.data() + w * width);
    }
    for (std::size_t w = 0; w < nwin; ++w)  // same order as the serial path
      for (std::size_t i = 0; i < width; ++i) total[i] += parts[w * width + i];
  }

  const double n = static_cast<double>(pts.n);
  if constexpr (Grad)
    for (std::size_t k = 0; k < K; ++k)
      gradient_from_moments(kernels[k], total.data() + 1 + k * kNumAcc, n, grad[k]);
  return total[0] / n;
}

void check_grad_size(std::span<const Canonical> kernels, std::span<Canonical> grad,
                     const char* what) {
  if (!grad.empty() && grad.size() != kernels.size())
    throw std::invalid_argument(std::string(what) + ": grad size " +
                                std::to_string(grad.size()) + " != K " +
                                std::to_string(kernels.size()));
}

}  // namespace

template <class T>
PointSet<T> PointSet<T>::from(std::span<const double> x, std::span<const double> y,
                              std::span<const double> t) {
  if (x.size() != y.size() || x.size() != t.size())
    throw std::invalid_argument("PointSet::from: x, y, t sizes differ (" +
                                std::to_string(x.size()) + ", " + std::to_string(y.size()) +
                                ", " + std::to_string(t.size()) + ")");
  constexpr std::size_t pad = std::max<std::size_t>(64 / sizeof(T), xsimd::batch<T>::size);
  PointSet<T> p;
  p.n = x.size();
  const std::size_t padded = (p.n + pad - 1) / pad * pad;
  p.x.resize(padded);
  p.y.resize(padded);
  p.t.resize(padded);
  p.mask.resize(padded);
  for (std::size_t i = 0; i < padded; ++i) {
    // Padding repeats the last point (finite wherever the data is) with mask 0.
    const std::size_t j = i < p.n ? i : p.n - 1;
    const bool real = i < p.n;
    p.x[i] = p.n ? T(x[j]) : T(0);
    p.y[i] = p.n ? T(y[j]) : T(0);
    p.t[i] = real ? T(t[j]) : T(0);
    p.mask[i] = real ? T(1) : T(0);
  }
  return p;
}

template struct PointSet<float>;
template struct PointSet<double>;

double loss_grad_scalar(const PointSet<double>& pts, std::span<const Canonical> kernels,
                        std::span<Canonical> grad) {
  check_grad_size(kernels, grad, "loss_grad_scalar");
  const std::size_t K = kernels.size();
  const bool want_grad = !grad.empty();
  for (auto& g : grad) g = Canonical{0, 0, 0, 0, 0, 0};
  if (pts.n == 0) return 0.0;
  std::vector<double> e(K);
  double loss = 0;
  for (std::size_t i = 0; i < pts.n; ++i) {
    const double x = pts.x[i], y = pts.y[i];
    double f = 0;
    for (std::size_t k = 0; k < K; ++k) {
      const Canonical& c = kernels[k];
      const double dx = x - c.mx, dy = y - c.my;
      const double q = c.p11 * dx * dx + 2 * c.p12 * dx * dy + c.p22 * dy * dy;
      e[k] = std::exp(-0.5 * q);
      f += c.w * e[k];
    }
    const double r = f - pts.t[i];
    loss += r * r;
    if (!want_grad) continue;
    for (std::size_t k = 0; k < K; ++k) {
      const Canonical& c = kernels[k];
      const double dx = x - c.mx, dy = y - c.my;
      const double re = r * e[k], rwe = re * c.w;
      Canonical& g = grad[k];
      g.w += re;
      g.mx += rwe * (c.p11 * dx + c.p12 * dy);
      g.my += rwe * (c.p12 * dx + c.p22 * dy);
      g.p11 += rwe * dx * dx;
      g.p12 += rwe * dx * dy;
      g.p22 += rwe * dy * dy;
    }
  }
  const double n = static_cast<double>(pts.n);
  for (auto& g : grad) {
    g.w *= 2 / n;
    g.mx *= 2 / n;
    g.my *= 2 / n;
    g.p11 *= -1 / n;
    g.p12 *= -2 / n;
    g.p22 *= -1 / n;
  }
  return loss / n;
}

template <class T>
double loss_grad_simd(const PointSet<T>& pts, std::span<const Canonical> kernels,
                      std::span<Canonical> grad, int threads) {
  check_grad_size(kernels, grad, "loss_grad_simd");
  if (pts.n == 0) {
    for (auto& g : grad) g = Canonical{0, 0, 0, 0, 0, 0};
    return 0.0;
  }
  if (grad.empty()) return loss_grad_impl<T, false>(pts, kernels, grad, threads);
  return loss_grad_impl<T, true>(pts, kernels, grad, threads);
}

template double loss_grad_simd<float>(const PointSet<float>&, std::span<const Canonical>,
                                      std::span<Canonical>, int);
template double loss_grad_simd<double>(const PointSet<double>&, std::span<const Canonical>,
                                       std::span<Canonical>, int);

template <class T>
void exp_simd(std::span<const T> x, std::span<T> out) {
  if (x.size() != out.size()) throw std::invalid_argument("exp_simd: size mismatch");
  using B = xsimd::batch<T>;
  constexpr std::size_t W = B::size;
  std::size_t i = 0;
  for (; i + W <= x.size(); i += W)
    fast_exp(B::load_unaligned(x.data() + i)).store_unaligned(out.data() + i);
  if (i < x.size()) {
    alignas(64) T buf[W] = {};
    std::copy(x.begin() + static_cast<std::ptrdiff_t>(i), x.end(), buf);
    fast_exp(B::load_aligned(buf)).store_aligned(buf);
    std::copy(buf, buf + (x.size() - i), out.begin() + static_cast<std::ptrdiff_t>(i));
  }
}

template void exp_simd<float>(std::span<const float>, std::span<float>);
template void exp_simd<double>(std::span<const double>, std::span<double>);

void predict(std::span<const Canonical> kernels, std::span<const double> x,
             std::span<const double> y, std::span<double> out) {
  if (x.size() != y.size() || out.size() != x.size())
    throw std::invalid_argument("predict: x, y, out sizes differ");
  for (std::size_t i = 0; i < x.size(); ++i) {
    double f = 0;
    for (const Canonical& c : kernels) {
      const double dx = x[i] - c.mx, dy = y[i] - c.my;
      f += c.w * std::exp(-0.5 * (c.p11 * dx * dx + 2 * c.p12 * dx * dy + c.p22 * dy * dy));
    }
    out[i] = f;
  }
}

void basis_matrix(std::span<const Canonical> kernels, std::span<const double> x,
                  std::span<const double> y, std::span<double> phi) {
  const std::size_t n = x.size();
  if (y.size() != n || phi.size() != n * kernels.size())
    throw std::invalid_argument("basis_matrix: need y.size() == x.size() and phi N x K");
  for (std::size_t k = 0; k < kernels.size(); ++k) {
    const Canonical& c = kernels[k];
    double* col = phi.data() + k * n;
    for (std::size_t i = 0; i < n; ++i) {
      const double dx = x[i] - c.mx, dy = y[i] - c.my;
      col[i] = -0.5 * (c.p11 * dx * dx + 2 * c.p12 * dx * dy + c.p22 * dy * dy);
    }
    // The vectorised exp (~2e-16 relative; LM and VarPro build these columns every step).
    exp_simd<double>(std::span<const double>(col, n), std::span<double>(col, n));
  }
}

}  // namespace covfit::rbf
