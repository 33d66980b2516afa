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
  std::vector<AssignmentEdge> edges;
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      const double c = cost[static_cast<size_t>(i) * cols + j];
      if (!std::isfinite(c)) throw std::invalid_argument("assignment: costs must be finite");
      if (c < limit) edges.push_back({i, j, c});
    }
  return SolveAssignmentSparse(edges, rows, cols, limit);
}

Assignment SolveAssignmentSparse(const std::vector<AssignmentEdge>& edges, int rows, int cols, double limit) {
  if (rows < 0 || cols < 0) throw std::invalid_argument("assignment: negative size");
  if (!std::isfinite(limit)) throw std::invalid_argument("assignment: limit must be finite");
  Assignment out;
  out.row_to_col.assign(rows, -1);
  out.col_to_row.assign(cols, -1);

  // Groups: rows (0..rows-1) and columns (rows..rows+cols-1) joined by a pair below the limit.
  std::vector<int> parent(rows + cols);
  std::iota(parent.begin(), parent.end(), 0);
  std::vector<char> has_edge(rows + cols, 0);
  size_t usable = 0;
  for (const AssignmentEdge& e : edges) {
    if (e.row < 0 || e.row >= rows || e.col < 0 || e.col >= cols)
      throw std::invalid_argument("assignment: pair (" + std::to_string(e.row) + ", " + std::to_string(e.col) +
                                  ") out of range");
    if (!std::isfinite(e.cost)) throw std::invalid_argument("assignment: costs must be finite");
    if (!(e.cost < limit)) continue;
    ++usable;
    has_edge[e.row] = has_edge[rows + e.col] = 1;
    parent[Find(parent, e.row)] = Find(parent, rows + e.col);
  }
  if (usable == 0) return out;
  // Members of each group, ordered by group root: one sort instead of a vector per group.
  std::vector<std::pair<int, int>> members;  // (root, index); index < rows: a row, else a column
  for (int x = 0; x < rows + cols; ++x)
    if (has_edge[x]) members.emplace_back(Find(parent, x), x);
  std::sort(members.begin(), members.end());
  // Each row's and column's position inside its group.
  std::vector<int> local(rows + cols, -1), group_of(rows + cols, -1);
  std::vector<std::pair<size_t, size_t>> groups;  // [begin, end) in members
  for (size_t begin = 0; begin < members.size();) {
    size_t end = begin;
    int nr = 0, nc = 0;
    for (; end < members.size() && members[end].first == members[begin].first; ++end) {
      const int x = members[end].second;
      local[x] = x < rows ? nr++ : nc++;
      group_of[x] = static_cast<int>(groups.size());
    }
    groups.emplace_back(begin, end);
    begin = end;
  }
  // The usable pairs of each group.
  std::vector<std::vector<const AssignmentEdge*>> group_edges(groups.size());
  for (const AssignmentEdge& e : edges)
    if (e.cost < limit) group_edges[group_of[e.row]].push_back(&e);

  std::vector<double> square;
  std::vector<int> gr, gc;
  std::vector<char> seen;
  for (size_t g = 0; g < groups.size(); ++g) {
    gr.clear();
    gc.clear();
    for (size_t k = groups[g].first; k < groups[g].second; ++k) {
      const int x = members[k].second;
      (x < rows ? gr : gc).push_back(x < rows ? x : x - rows);
    }
    const int n = static_cast<int>(gr.size()), m = static_cast<int>(gc.size());
    const std::vector<const AssignmentEdge*>& ge = group_edges[g];
    if (n == 1 || m == 1) {
      // One row (or one column) in the group: the optimum is its cheapest pair.
      const AssignmentEdge* best = nullptr;
      for (const AssignmentEdge* e : ge)
        if (best == nullptr || e->cost < best->cost) best = e;
      out.row_to_col[best->row] = best->col;
      out.col_to_row[best->col] = best->row;
      continue;
    }
    // Extended square matrix of size n + m: [[C, L/2], [L/2, 0]]; a row or column matched into the
    // padding is unmatched and pays limit / 2; a pair that is not listed costs 2 L (never chosen).
    const int k = n + m;
    square.assign(static_cast<size_t>(k) * k, 0.0);
    for (int i = 0; i < k; ++i)
      for (int j = 0; j < k; ++j)
        if (i < n && j < m) {
          square[static_cast<size_t>(i) * k + j] = 2 * std::fabs(limit) + 1.0;
        } else if (i < n || j < m) {
          square[static_cast<size_t>(i) * k + j] = limit / 2;
        }
    seen.assign(static_cast<size_t>(n) * m, 0);
    for (const AssignmentEdge* e : ge) {
      const size_t at = static_cast<size_t>(local[e->row]) * m + local[rows + e->col];
      if (seen[at]) throw std::invalid_argument("assignment: pair listed twice");
      seen[at] = 1;
      square[static_cast<size_t>(local[e->row]) * k + local[rows + e->col]] = e->cost;
    }
    const std::vector<int> r2c = SolveSquare(square, k);
    for (int i = 0; i < n; ++i) {
      const int j = r2c[i];
      if (j < 0 || j >= m || !seen[static_cast<size_t>(i) * m + j]) continue;  // padding or not a pair
      out.row_to_col[gr[i]] = gc[j];
      out.col_to_row[gc[j]] = gr[i];
    }
  }
  return out;
}

}  // namespace smartcity
