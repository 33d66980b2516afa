#include "smartcity/assignment.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

namespace smartcity {

namespace {

// Square assignment minimizing the total cost (n x n, row-major), shortest augmenting paths with
// dual potentials u (rows) and v (columns), 1-based inside. Returns row -> column.
std::vector<int> SolveSquare(const std::vector<double>& a, int n) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> u(n + 1, 0.0), v(n + 1, 0.0), minv(n + 1);
  std::vector<int> p(n + 1, 0), way(n + 1, 0);
  std::vector<char> used(n + 1);
  for (int i = 1; i <= n; ++i) {
    p[0] = i;
    int j0 = 0;
    std::fill(minv.begin(), minv.end(), inf);
    std::fill(used.begin(), used.end(), 0);
    do {
      used[j0] = 1;
      const int i0 = p[j0];
      double delta = inf;
      int j1 = 0;
      const double* row = &a[static_cast<size_t>(i0 - 1) * n];
      for (int j = 1; j <= n; ++j) {
        if (used[j]) continue;
        const double cur = row[j - 1] - u[i0] - v[j];
        if (cur < minv[j]) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      for (int j = 0; j <= n; ++j) {
        if (used[j]) {
          u[p[j]] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (p[j0] != 0);
    do {
      const int j1 = way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while (j0 != 0);
  }
  std::vector<int> row_to_col(n, -1);
  for (int j = 1; j <= n; ++j)
    if (p[j] != 0) row_to_col[p[j] - 1] = j - 1;
  return row_to_col;
}

int Find(std::vector<int>& parent, int x) {
  while (parent[x] != x) x = parent[x] = parent[parent[x]];
  return x;
}

}  // namespace

Assignment SolveAssignment(const std::vector<double>& cost, int rows, int cols, double limit) {
  if (rows < 0 || cols < 0) throw std::invalid_argument("assignment: negative size");
  if (cost.size() != static_cast<size_t>(rows) * static_cast<size_t>(cols))
    throw std::invalid_argument("assignment: cost has " + std::to_string(cost.size()) + " entries, expected " +
                                std::to_string(rows) + " x " + std::to_string(cols));
  if (!std::isfinite(limit)) throw std::invalid_argument("assignment: limit must be finite");
  for (double c : cost)
    if (!std::isfinite(c)) throw std::invalid_argument("assignment: costs must be finite");

  Assignment out;
  out.row_to_col.assign(rows, -1);
  out.col_to_row.assign(cols, -1);

  // Groups: rows (0..rows-1) and columns (rows..rows+cols-1) joined by a cost below the limit.
  std::vector<int> parent(rows + cols);
  std::iota(parent.begin(), parent.end(), 0);
  std::vector<char> has_edge(rows + cols, 0);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j)
      if (cost[static_cast<size_t>(i) * cols + j] < limit) {
        has_edge[i] = has_edge[rows + j] = 1;
        parent[Find(parent, i)] = Find(parent, rows + j);
      }
  std::vector<std::vector<int>> group_rows(rows + cols), group_cols(rows + cols);
  for (int i = 0; i < rows; ++i)
    if (has_edge[i]) group_rows[Find(parent, i)].push_back(i);
  for (int j = 0; j < cols; ++j)
    if (has_edge[rows + j]) group_cols[Find(parent, rows + j)].push_back(j);

  std::vector<double> square;
  for (int g = 0; g < rows + cols; ++g) {
    const std::vector<int>& gr = group_rows[g];
    const std::vector<int>& gc = group_cols[g];
    if (gr.empty()) continue;
    // Extended square matrix of size n + m: [[C, L/2], [L/2, 0]]; a row or column matched into the
    // padding is unmatched and pays limit / 2.
    const int n = static_cast<int>(gr.size()), m = static_cast<int>(gc.size()), k = n + m;
    square.assign(static_cast<size_t>(k) * k, 0.0);
    for (int i = 0; i < k; ++i)
      for (int j = 0; j < k; ++j) {
        double c = 0.0;
        if (i < n && j < m) {
          c = cost[static_cast<size_t>(gr[i]) * cols + gc[j]];
        } else if (i < n || j < m) {
          c = limit / 2;
        }
        square[static_cast<size_t>(i) * k + j] = c;
      }
    const std::vector<int> r2c = SolveSquare(square, k);
    for (int i = 0; i < n; ++i) {
      const int j = r2c[i];
      if (j < 0 || j >= m) continue;
      if (cost[static_cast<size_t>(gr[i]) * cols + gc[j]] > limit) continue;  // never optimal; guards ties
      out.row_to_col[gr[i]] = gc[j];
      out.col_to_row[gc[j]] = gr[i];
    }
  }
  return out;
}

}  // namespace smartcity
