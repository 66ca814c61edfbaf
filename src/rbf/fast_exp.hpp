// The vectorised exp shared by the dense and the local (tiled) kernels. Internal header.
//
// x = n ln2 + r, |r| <= ln2/2 (Cody-Waite: ln2 split in a high part with trailing zero
// bits and a low correction), exp(r) by polynomial, 2^n added to the exponent bits.
#pragma once
#include <cstdint>
#include <limits>

#include <xsimd/xsimd.hpp>

namespace covfit::rbf::detail {

#if defined(__GNUC__)
#define COVFIT_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define COVFIT_ALWAYS_INLINE inline
#endif

// n is rounded with the "shifter" trick: kn = x log2e + 1.5 2^m (m = mantissa bits) puts
// n in the low mantissa bits of kn, so (bits(kn) << m) is n in the exponent field.
template <class T>
struct ExpConstants;

template <>
struct ExpConstants<float> {
  using Int = int32_t;
  static constexpr int kMantissa = 23;
  static constexpr float kShifter = 0x1.8p23f;
  static constexpr float kLog2e = 1.44269504088896341f;
  static constexpr float kLn2Hi = 0.693359375f;  // Cephes C1: 9 significant bits
  static constexpr float kLn2Lo = -2.12194440e-4f;
  static constexpr float kMinX = -87.33654475f;  // ln(FLT_MIN): below -> 0
  static constexpr float kMaxX = 88.72283905f;   // ln(FLT_MAX): above -> inf
};

template <>
struct ExpConstants<double> {
  using Int = int64_t;
  static constexpr int kMantissa = 52;
  static constexpr double kShifter = 0x1.8p52;
  static constexpr double kLog2e = 1.4426950408889634073599;
  static constexpr double kLn2Hi = 6.93145751953125E-1;  // Cephes: exact n * kLn2Hi
  static constexpr double kLn2Lo = 1.42860682030941723212E-6;
  static constexpr double kMinX = -708.3964185322641;  // ln(DBL_MIN)
  static constexpr double kMaxX = 709.782712893384;    // ln(DBL_MAX)
};

// exp(r) - 1 - r = r^2 * poly(r) for |r| <= ln2/2.
template <class B>
COVFIT_ALWAYS_INLINE B exp_poly(const B& r, float) {
  // Cephes expf minimax coefficients (relative error ~1 ulp on |r| <= ln2/2).
  B p(1.9875691500E-4f);
  p = xsimd::fma(p, r, B(1.3981999507E-3f));
  p = xsimd::fma(p, r, B(8.3334519073E-3f));
  p = xsimd::fma(p, r, B(4.1665795894E-2f));
  p = xsimd::fma(p, r, B(1.6666665459E-1f));
  p = xsimd::fma(p, r, B(5.0000001201E-1f));
  return p;
}

template <class B>
COVFIT_ALWAYS_INLINE B exp_poly(const B& r, double) {
  // Taylor to degree 12: truncation r^13/13! < 2e-16 on |r| <= ln2/2. Estrin-style split
  // in two halves to shorten the dependency chain.
  const B r2 = r * r;
  B lo(1.0 / 720);  // 1/2 .. 1/6! : degrees 0..4 of poly (coefficients 1/(j+2)!)
  lo = xsimd::fma(lo, r, B(1.0 / 120));
  lo = xsimd::fma(lo, r, B(1.0 / 24));
  lo = xsimd::fma(lo, r, B(1.0 / 6));
  lo = xsimd::fma(lo, r, B(1.0 / 2));
  B hi(1.0 / 479001600);  // 1/12!
  hi = xsimd::fma(hi, r, B(1.0 / 39916800));
  hi = xsimd::fma(hi, r, B(1.0 / 3628800));
  hi = xsimd::fma(hi, r, B(1.0 / 362880));
  hi = xsimd::fma(hi, r, B(1.0 / 40320));
  hi = xsimd::fma(hi, r, B(1.0 / 5040));
  // poly = lo + r^5 hi
  const B r5 = r2 * r2 * r;
  return xsimd::fma(hi, r5, lo);
}

template <class T, class A>
COVFIT_ALWAYS_INLINE xsimd::batch<T, A> fast_exp(const xsimd::batch<T, A>& x) {
  using B = xsimd::batch<T, A>;
  using C = ExpConstants<T>;
  using I = xsimd::batch<typename C::Int, A>;
  const B kn = xsimd::fma(x, B(C::kLog2e), B(C::kShifter));
  const B n = kn - B(C::kShifter);
  B r = xsimd::fnma(n, B(C::kLn2Hi), x);
  r = xsimd::fnma(n, B(C::kLn2Lo), r);
  const B p = exp_poly(r, T{});
  const B e = xsimd::fma(p, r * r, r) + B(T(1));
  const I scale = xsimd::bitwise_cast<I>(kn) << C::kMantissa;
  B y = xsimd::bitwise_cast<B>(xsimd::bitwise_cast<I>(e) + scale);
  y = xsimd::select(x < B(C::kMinX), B(T(0)), y);
  y = xsimd::select(x > B(C::kMaxX), B(std::numeric_limits<T>::infinity()), y);
  return y;
}

}  // namespace covfit::rbf::detail
