// Local evaluation of the RBF loss and gradient: points sorted into spatial tiles once,
// every kernel paired only with the tiles (and, inside a tile, the 32-point blocks) its
// ellipse of non-negligible values overlaps. SIMD inside a block, as in kernels.hpp.
//
// Culling rule (cull_tol = tol, scale s = rms of the data values, tau = tol * s): kernel k
// is dropped at x when q_k(x) >= Q_k = 2 ln(max(|w_k|, s) / tau), i.e. where
//   |w_k| exp(-q/2) < tau   and   exp(-q/2) < tol.
// The second condition (the max with s) keeps the weight gradient of small-weight kernels
// honest: sum r exp(-q/2) does not shrink with |w|. tol = 0 drops nothing (exact).
// `cull_error_bound` states how far the result can be from the dense evaluation.
//
// Gridded data (rows of equally spaced points) can skip exp: along a column q is
// quadratic in the row index, so e(r+1) = e(r) R(r), R(r+1) = R(r) G with G constant per
// kernel. Tiles are kTileRows rows high, so a recurrence runs at most kTileRows - 1 steps
// from an exact exp (its anchor) - the re-anchoring interval is kTileRows points.
//
// Determinism: tiles are evaluated in any order by any number of threads, but every
// (tile, kernel) pair writes its own sums, and those are added in tile order afterwards,
// so results are bitwise the same for any thread count.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "covfit/rbf/kernels.hpp"
#include "covfit/rbf/model.hpp"

namespace covfit::rbf {

// A regular grid of values: cell (i, j) (row i, column j) sits at (x0 + j dx, y0 + i dy);
// values are row-major (ny x nx); NaN marks a masked cell (no data).
struct Grid {
  std::size_t nx = 0, ny = 0;
  double x0 = 0, y0 = 0, dx = 1, dy = 1;
  std::vector<double> values;
};

inline constexpr std::size_t kBlockPoints = 32;  // points per block (a grid row segment)
inline constexpr std::size_t kTileRows = 16;     // grid tiles: 16 rows x 32 columns
inline constexpr std::size_t kTilePoints = kBlockPoints * kTileRows;  // max points per tile

template <class T>
struct TiledPoints {
  std::size_t n = 0;           // real (unmasked) points
  double rms = 0;              // sqrt(mean t^2) over real points (the cull scale s)
  bool gridded = false;        // tiles are kTileRows rows of one grid (recurrence possible)
  double row_step = 0;         // grid: dy between consecutive rows of a tile
  // Tiles: points [offset[t], offset[t+1]) (a multiple of kBlockPoints), in blocks of
  // kBlockPoints; bounding box of tile and of every block (of its real points; a block
  // with no real point has an empty box, lo > hi).
  std::vector<std::size_t> offset;
  std::vector<double> tx0, tx1, ty0, ty1;   // per tile
  std::vector<double> bx0, bx1, by0, by1;   // per block (global block index = offset/32)
  // Bins: a uniform nbx x nby grid over [gx0, gx0 + nbx gw) x [gy0, gy0 + nby gh); bin b
  // holds tiles [bin_tiles[b], bin_tiles[b+1]). Used to find a kernel's candidate tiles.
  std::size_t nbx = 0, nby = 0;
  double gx0 = 0, gy0 = 0, gw = 1, gh = 1;
  std::vector<std::size_t> bin_tiles;
  aligned_vector<T> x, y, t, mask;          // SoA, size offset.back()
  std::vector<std::int64_t> index;          // source index of every slot (-1: padding)

  std::size_t tiles() const { return offset.empty() ? 0 : offset.size() - 1; }

  // Scattered points: binned (about kTilePoints per bin), Morton order inside a bin,
  // bins split into tiles of at most kTilePoints.
  static TiledPoints from_points(std::span<const double> x, std::span<const double> y,
                                 std::span<const double> t);
  // A grid: tiles of kTileRows x kBlockPoints cells; NaN cells get mask 0. `index` then
  // counts only unmasked cells, in row-major order.
  static TiledPoints from_grid(const Grid& g);
};

struct LocalOptions {
  double cull_tol = 0;      // see above; 0 = no culling
  bool recurrence = true;   // use the grid recurrence when the points are gridded
  int threads = 1;          // tiles shared out over OpenMP threads
};

struct LocalStats {
  std::size_t tile_pairs = 0;    // (tile, kernel) pairs that passed the overlap test
  std::size_t point_pairs = 0;   // (point slot, kernel) pairs evaluated (32 per block)
  std::size_t recurrent = 0;     // of these, evaluated by the grid recurrence
};

// Loss and canonical gradient (may be empty) of the culled model, as loss_grad_simd.
template <class T>
double loss_grad_local(const TiledPoints<T>& pts, std::span<const Canonical> kernels,
                       std::span<Canonical> grad, const LocalOptions& opt,
                       LocalStats* stats = nullptr);

// The (tile, kernel) pairs the culling rule above keeps, as CSR: tile t meets kernels
// ks[begin[t] .. begin[t + 1]) (ascending). A kernel is kept for a tile when its region
// {q < Q_k} meets the tile's bounding box (tiles without real points get none). Used by
// LM / VarPro to build Jacobian blocks only where a kernel is not negligible.
template <class T>
void tile_kernel_pairs(const TiledPoints<T>& pts, std::span<const Canonical> kernels, double tol,
                       std::vector<std::size_t>& begin, std::vector<std::uint32_t>& ks);

// The cull threshold Q_k on q for one kernel (+inf when tol = 0 or the kernel has no
// finite weight).
double cull_q(double w, double tol, double scale);

// Stated bound on |dense - local| for the loss and every canonical gradient component,
// given the kernels, tol, the cull scale s and the loss the local evaluation returned.
// With tau = tol s, eps_k = tau / max(|w_k|, s) (the largest exp(-q/2) dropped for k),
// lambda_k = smallest eigenvalue of P_k, D = sum_k |w_k| eps_k (bounds the model error at
// any point) and R = sqrt(local loss) (bounds the mean |residual|):
//   loss:       2 R D + D^2
//   b_j(k) = D c_j / lambda_k^(j/2) + (R + D) eps_k (max(Q_k, j) / lambda_k)^(j/2), j = 0,1,2,
//   with c_0 = 1, c_1 = e^-1/2, c_2 = 2/e (sup of exp(-q/2) |d|^j over the plane), then
//   w: 2 b_0;  mx: 2|w|(|p11|+|p12|) b_1;  my: 2|w|(|p12|+|p22|) b_1;
//   p11, p22: |w| b_2;  p12: 2|w| b_2.
// (A kernel that is not positive definite is never culled; it adds nothing to D.)
struct CullBound {
  double loss = 0;
  std::vector<Canonical> grad;
};
CullBound cull_error_bound(std::span<const Canonical> kernels, double tol, double scale,
                           double local_loss);

}  // namespace covfit::rbf
