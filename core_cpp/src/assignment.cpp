#include "smartcity/assignment.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace smartcity {

namespace {

// Square assignment minimizing the total cost (n x n, row-major), shortest augmenting paths with
// dual potentials u (rows) and v (columns), 1-based inside. Writes row -> column into ws.r2c.
void SolveSquare(const std::vector<double>& a, int n, AssignmentWorkspace& ws) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double>&u = ws.u, &v = ws.v, &minv = ws.minv;
  std::vector<int>&p = ws.p, &way = ws.way;
  std::vector<char>& used = ws.used;
  u.assign(n + 1, 0.0);
  v.assign(n + 1, 0.0);
  minv.resize(n + 1);
  p.assign(n + 1, 0);
  way.assign(n + 1, 0);
  used.resize(n + 1);
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
  ws.r2c.assign(n, -1);
  for (int j = 1; j <= n; ++j)
    if (p[j] != 0) ws.r2c[p[j] - 1] = j - 1;
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
  AssignmentWorkspace ws;
  Assignment out;
  SolveAssignmentSparse(edges.data(), edges.size(), rows, cols, limit, ws, out);
  return out;
}

void SolveAssignmentSparse(const AssignmentEdge* edges, size_t count, int rows, int cols, double limit,
                           AssignmentWorkspace& ws, Assignment& out) {
  if (rows < 0 || cols < 0) throw std::invalid_argument("assignment: negative size");
  if (!std::isfinite(limit)) throw std::invalid_argument("assignment: limit must be finite");
  out.row_to_col.assign(rows, -1);
  out.col_to_row.assign(cols, -1);
  const AssignmentEdge* const end = edges + count;

  // Rows are nodes 0..rows-1, columns rows..rows+cols-1. Degree: usable pairs (below the limit).
  const int nodes = rows + cols;
  std::vector<int>& degree = ws.degree;
  degree.assign(nodes, 0);
  size_t usable = 0;
  for (const AssignmentEdge* e = edges; e != end; ++e) {
    if (e->row < 0 || e->row >= rows || e->col < 0 || e->col >= cols)
      throw std::invalid_argument("assignment: pair (" + std::to_string(e->row) + ", " + std::to_string(e->col) +
                                  ") out of range");
    if (!std::isfinite(e->cost)) throw std::invalid_argument("assignment: costs must be finite");
    if (!(e->cost < limit)) continue;
    ++usable;
    ++degree[e->row];
    ++degree[rows + e->col];
  }
  if (usable == 0) return;

  // A pair whose row and column have no other usable pair is a group of its own: matched (its
  // cost is below the limit, cheaper than leaving both unmatched at limit / 2 each). The other
  // usable pairs (`rest`, input order) are joined into groups by union-find over their nodes.
  std::vector<int>&parent = ws.parent, &local = ws.local, &touched = ws.touched, &rest = ws.rest;
  rest.clear();
  for (const AssignmentEdge* e = edges; e != end; ++e) {
    if (!(e->cost < limit)) continue;
    if (degree[e->row] == 1 && degree[rows + e->col] == 1) {
      out.row_to_col[e->row] = e->col;
      out.col_to_row[e->col] = e->row;
    } else {
      rest.push_back(static_cast<int>(e - edges));
    }
  }
  if (rest.empty()) return;
  parent.resize(nodes);
  local.assign(nodes, -1);  // -1: not in a group; then the node's index inside its group
  touched.clear();
  for (const int q : rest) {
    for (const int x : {edges[q].row, rows + edges[q].col}) {
      if (local[x] != -1) continue;
      local[x] = 0;
      parent[x] = x;
      touched.push_back(x);
    }
    parent[Find(parent, edges[q].row)] = Find(parent, rows + edges[q].col);
  }
  // Groups numbered in order of their smallest node; members in node order (rows first, then
  // columns), numbered per group; the group's pairs in input order. Flat lists per group.
  std::sort(touched.begin(), touched.end());
  std::vector<int>&group_of = ws.group_of, &group_of_root = ws.group_of_root;
  group_of.resize(nodes);
  group_of_root.resize(nodes);
  for (const int x : touched) group_of_root[x] = -1;
  std::vector<int>&nrows = ws.nrows, &ncols = ws.ncols;  // per group: rows, columns
  nrows.clear();
  ncols.clear();
  for (const int x : touched) {
    const int root = Find(parent, x);
    if (group_of_root[root] < 0) {
      group_of_root[root] = static_cast<int>(nrows.size());
      nrows.push_back(0);
      ncols.push_back(0);
    }
    const int g = group_of_root[root];
    group_of[x] = g;
    local[x] = x < rows ? nrows[g]++ : ncols[g]++;
  }
  const int groups = static_cast<int>(nrows.size());
  std::vector<int>&node_start = ws.node_start, &edge_start = ws.edge_start, &fill = ws.fill;
  node_start.assign(groups + 1, 0);
  for (int g = 0; g < groups; ++g) node_start[g + 1] = node_start[g] + nrows[g] + ncols[g];
  std::vector<int>& members_of = ws.members;
  members_of.resize(touched.size());
  fill.assign(node_start.begin(), node_start.end() - 1);
  for (const int x : touched) members_of[fill[group_of[x]]++] = x;
  edge_start.assign(groups + 1, 0);
  for (const int q : rest) ++edge_start[group_of[edges[q].row] + 1];
  for (int g = 0; g < groups; ++g) edge_start[g + 1] += edge_start[g];
  std::vector<int>& group_edges = ws.group_edges;
  group_edges.resize(rest.size());
  fill.assign(edge_start.begin(), edge_start.end() - 1);
  for (const int q : rest) group_edges[fill[group_of[edges[q].row]]++] = q;

  std::vector<double>& square = ws.square;
  std::vector<char>& seen = ws.seen;
  for (int g = 0; g < groups; ++g) {
    const int* members = members_of.data() + node_start[g];
    const int n = nrows[g];
    const int m = ncols[g];
    const int* ge = group_edges.data() + edge_start[g];
    const int ne = edge_start[g + 1] - edge_start[g];
    if (n == 1 || m == 1) {
      // One row (or one column) in the group: the optimum is its cheapest pair (the first listed
      // among equals).
      const AssignmentEdge* best = nullptr;
      for (int k = 0; k < ne; ++k) {
        const AssignmentEdge* e = edges + ge[k];
        if (best == nullptr || e->cost < best->cost) best = e;
      }
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
    for (int q = 0; q < ne; ++q) {
      const AssignmentEdge* e = edges + ge[q];
      const size_t at = static_cast<size_t>(local[e->row]) * m + local[rows + e->col];
      if (seen[at]) throw std::invalid_argument("assignment: pair listed twice");
      seen[at] = 1;
      square[static_cast<size_t>(local[e->row]) * k + local[rows + e->col]] = e->cost;
    }
    SolveSquare(square, k, ws);
    for (int i = 0; i < n; ++i) {
      const int j = ws.r2c[i];
      if (j < 0 || j >= m || !seen[static_cast<size_t>(i) * m + j]) continue;  // padding or not a pair
      const int row = members[i], col = members[n + j] - rows;
      out.row_to_col[row] = col;
      out.col_to_row[col] = row;
    }
  }
}

}  // namespace smartcity
