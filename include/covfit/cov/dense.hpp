// Direct n x n evaluations of the loss and its gradient (MATH.md), O(n^2 m + n m^2).
// They exist to check the reduced formulas (tests) and for small problems where someone
// wants the literal definition; production paths use linearized.hpp.
#pragma once
#include "covfit/cov/matrix.hpp"

namespace covfit::cov {

// J A: subtract each column's mean (J = I - 11^T/n).
Matrix centre_rows(const Matrix& A);
// L(W) = 1/2 ||S - X^T (I+W)^T J (I+W) X||^2 + lambda/2 ||W||^2.
double loss_dense(const Matrix& X, const Matrix& S, const Matrix& W, double lambda);
// L_lin(W) = 1/2 ||S - X^T X - X^T W^T J X - X^T J W X||^2 + lambda/2 ||W||^2.
double loss_linearized_dense(const Matrix& X, const Matrix& S, const Matrix& W, double lambda);
// grad L(W) = -2 J (I+W) X E X^T + lambda W, E = S - X^T (I+W)^T J (I+W) X. (n, n)
Matrix grad_dense(const Matrix& X, const Matrix& S, const Matrix& W, double lambda);

}  // namespace covfit::cov
